"""Launchers of the ``cuda`` backend: limits, allocation, dispatch to ``rstg_fast._C``.

Checks the kernels' limits (``plan.py``), takes the cached per-graph work plan, allocates
outputs and float32 scratch, and calls ``_C.message_attention_{forward,backward}_cuda`` with
their named fields (``MaArgs``, ``csrc/message_attention_args.h``) on PyTorch's current
stream. No host synchronisation per call once a graph's plan is cached.
"""

from __future__ import annotations

import functools

import torch

from rstg_fast._ext import require_extension
from rstg_fast.ops.backends._kernel_args import addr, op_fields
from rstg_fast.ops.backends.cuda.plan import check_launch_limits, limits, pad32, plan_for

W2_SLOT_BUDGET = 128 * 2**20  # bytes of dW2 partial slots at most (caps the persistent grid)


def _multiprocessors(device: torch.device) -> int:
    return _multiprocessors_of(device.index if device.index is not None else torch.cuda.current_device())


@functools.cache
def _multiprocessors_of(index: int) -> int:
    return int(torch.cuda.get_device_properties(index).multi_processor_count)


def persistent_blocks(device: torch.device, tasks: int, D: int, Hd: int, has_w2: bool) -> int:
    """Blocks of the persistent backward grid: two per SM, capped by the work and the dW2 slots' memory."""
    blocks = 2 * _multiprocessors(device)
    if has_w2:
        blocks = min(blocks, max(1, W2_SLOT_BUDGET // (pad32(D) * pad32(Hd) * 4)))
    return max(1, min(blocks, tasks, 65535))


def _check(fields: dict[str, int | float], dtype: torch.dtype, has_w2: bool) -> None:
    # dtype and device were checked by ops/_checks.py against the BackendSpec; the kernel's
    # own launch limits (shared memory per block) are the backend's to check.
    G, N, E, Hd, D, A, heads = (fields[k] for k in ("G", "N", "E", "Hd", "D", "A", "heads"))
    check_launch_limits(G, N, E, Hd, D, A, heads, torch.empty(0, dtype=dtype).element_size(), has_w2)


def forward(S, R, Q, K, W2, b2, indptr, indices, heads, scale):
    """Backend contract (see ``rstg_fast.ops.backends``): ``(O (G, N, D), lse (G, N, heads) float32)``."""
    args = op_fields(S, R, Q, K, W2, b2, indices, heads, scale)
    G, N, D = args["G"], args["N"], args["D"]
    O = S.new_empty((G, N, D))
    lse = S.new_empty((G, N, heads), dtype=torch.float32)
    if G == 0 or N == 0:
        return O, lse
    _check(args, S.dtype, W2 is not None)
    plan = plan_for(indptr, indices, by_source=False)
    o_part = S.new_empty((plan.slots, G, D), dtype=torch.float32) if plan.slots else None
    lse_part = S.new_empty((plan.slots, G, heads), dtype=torch.float32) if plan.slots else None
    args.update(plan.args("d_"))
    args.update(
        stream=torch.cuda.current_stream(S.device).cuda_stream,
        O=O.data_ptr(), lse=lse.data_ptr(), o_part=addr(o_part), lse_part=addr(lse_part),
    )  # fmt: skip
    with torch.cuda.device(S.device):
        require_extension().message_attention_forward_cuda(args)
    return O, lse


def backward(dO, S, R, Q, K, W2, b2, indptr, indices, O, lse, heads, scale):
    """Backend contract: ``(dS, dR, dQ, dK, dW2 | None, db2 | None)`` in the input dtype."""
    args = op_fields(S, R, Q, K, W2, b2, indices, heads, scale)
    G, N, Hd, D, A = args["G"], args["N"], args["Hd"], args["D"], args["A"]
    dS, dR, dQ, dK = (torch.empty_like(t) for t in (S, R, Q, K))
    dW2 = torch.empty_like(W2) if W2 is not None else None
    db2 = torch.empty_like(b2) if b2 is not None else None
    if G == 0 or N == 0:
        for t in (dW2, db2):
            if t is not None:
                t.zero_()
        return dS, dR, dQ, dK, dW2, db2
    _check(args, S.dtype, W2 is not None)
    deterministic = torch.are_deterministic_algorithms_enabled()
    f32 = {"dtype": torch.float32, "device": S.device}
    dplan = plan_for(indptr, indices, by_source=False)
    splan = plan_for(indptr, indices, by_source=True) if deterministic else None
    bg = limits()["graphs_per_task"]
    groups = (G + bg - 1) // bg
    tasks = max(dplan.items, splan.items if splan is not None else 0) * groups
    blocks = persistent_blocks(S.device, tasks, D, Hd, W2 is not None)
    keep = {
        "delta": torch.empty((G, N, heads), **f32),
        "d_part_h": torch.empty((dplan.slots, G, Hd), **f32) if dplan.slots else None,
        "d_part_qk": torch.empty((dplan.slots, G, A), **f32) if dplan.slots else None,
        "w2_slots": torch.zeros((blocks, pad32(D), pad32(Hd)), **f32) if W2 is not None else None,
        "b2_slots": torch.zeros((blocks, pad32(D)), **f32) if W2 is not None else None,
    }
    if deterministic:
        keep["s_part_h"] = torch.empty((splan.slots, G, Hd), **f32) if splan.slots else None
        keep["s_part_qk"] = torch.empty((splan.slots, G, A), **f32) if splan.slots else None
    else:
        keep["acc_dS"] = torch.zeros((G, N, Hd), **f32)
        keep["acc_dK"] = torch.zeros((G, N, A), **f32)
    args.update(dplan.args("d_"))
    if splan is not None:
        args.update(splan.args("s_"))
    args.update({name: addr(t) for name, t in keep.items()})
    args.update(
        stream=torch.cuda.current_stream(S.device).cuda_stream, deterministic=int(deterministic), blocks=blocks,
        dO=dO.data_ptr(), O=O.data_ptr(), lse=lse.data_ptr(),
        dS=dS.data_ptr(), dR=dR.data_ptr(), dQ=dQ.data_ptr(), dK=dK.data_ptr(), dW2=addr(dW2), db2=addr(db2),
    )  # fmt: skip
    with torch.cuda.device(S.device):
        require_extension().message_attention_backward_cuda(args)
    return dS, dR, dQ, dK, dW2, db2
