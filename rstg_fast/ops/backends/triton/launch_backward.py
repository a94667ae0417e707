"""Launcher of the backward: workspace, the two schedules, grids, the final reductions."""

from __future__ import annotations

import torch
import triton

from rstg_fast.ops._dtypes import acc_dtype
from rstg_fast.ops._graph_plan import transposed
from rstg_fast.ops.backends.triton import configs
from rstg_fast.ops.backends.triton.backward_kernel import _backward_kernel, _weight_grad_kernel
from rstg_fast.ops.backends.triton.launch_forward import (
    attention_block,
    dot_dtype,
    input_precision,
    scale_tensor,
    tl_acc,
)
from rstg_fast.ops.backends.triton.plan import Plan, get_plan


def weight_grad_splits(num_tiles: int, column_blocks: int, device: torch.device) -> int:
    """Programs along the edges for ``dW2``: enough to fill the GPU about four times over."""
    if configs.INTERPRETED or device.type != "cuda":
        return max(1, min(num_tiles, 2))
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(num_tiles, -(-4 * sms // max(column_blocks, 1)), 1024))


def backward_with_plans(dO, S, R, Q, K, W2, b2, indices, O, lse, heads, scale, dest: Plan, source=None):
    """Gradients ``(dS, dR, dQ, dK, dW2, db2)``.

    ``source=None``: one destination-major pass that atomically adds ``dS``/``dK`` to the
    sources (fast, not bitwise deterministic). ``source=(indices_t, plan_t)``: a second,
    source-major pass over the transposed CSR owns ``dS``/``dK`` (deterministic when neither
    plan splits rows).
    """
    G, N, Hd = S.shape
    A = Q.shape[2]
    D = W2.shape[0] if W2 is not None else Hd
    acc = acc_dtype(S.dtype)
    # One zeroed float32 (float64) workspace for the four node gradients: one memset.
    sizes = [G * N * Hd, G * N * Hd, G * N * A, G * N * A]
    work = torch.zeros(sum(sizes), dtype=acc, device=S.device)
    # Widths spelled out: a view with -1 is ambiguous when G or N is 0.
    dR_w, dS_w, dQ_w, dK_w = (t.view(G, N, w) for t, w in zip(torch.split(work, sizes), (Hd, Hd, A, A), strict=True))
    dW2 = db2 = None
    if G * N:  # no graphs or no nodes: no output, all gradients zero
        w2 = W2 if W2 is not None else S
        bias = b2 if b2 is not None else S
        common = dict(
            HEADS=heads, HAS_W2=W2 is not None, BH=max(16, triton.next_power_of_2(Hd)),
            BA=attention_block(A, heads), ACC=tl_acc(S.dtype), DOT=dot_dtype(S.dtype),
            INPUT_PRECISION=input_precision(S.dtype),
        )  # fmt: skip
        passes = [(indices, dest, False, source is None, (dR_w, dQ_w))]
        if source is not None:
            passes.append((source[0], source[1], True, False, (dS_w, dK_w)))
        sc = scale_tensor(float(scale), S.dtype, S.device)
        for idx, plan, transposed, scatter, (own_h, own_a) in passes:
            _backward_kernel[lambda meta, p=plan: (p.num_items, triton.cdiv(G, meta["BG"]))](
                S, R, Q, K, w2, bias, idx, plan.items, dO, lse, O, own_h, own_a, dS_w, dK_w,
                G, N, Hd, D, A, sc, TRANSPOSED=transposed, SCATTER=scatter, **common,
            )  # fmt: skip
        if W2 is not None:
            dW2, db2 = _weight_grad(dO, S, R, Q, K, W2, b2, indices, lse, heads, sc, dest)
    elif W2 is not None:
        dW2, db2 = torch.zeros_like(W2), torch.zeros_like(b2)
    return dS_w.to(S.dtype), dR_w.to(S.dtype), dQ_w.to(S.dtype), dK_w.to(S.dtype), dW2, db2


def _weight_grad(dO, S, R, Q, K, W2, b2, indices, lse, heads, sc: torch.Tensor, plan: Plan):
    G, N, Hd = S.shape
    A, D = Q.shape[2], W2.shape[0]
    acc = acc_dtype(S.dtype)
    col_blocks = heads * triton.cdiv(D // heads, 32)
    splits = weight_grad_splits(plan.num_items * triton.cdiv(G, 4), col_blocks, S.device)
    dW2_part = torch.empty((splits, D, Hd), dtype=acc, device=S.device)
    db2_part = torch.empty((splits, D), dtype=acc, device=S.device)
    _weight_grad_kernel[lambda meta: (heads * triton.cdiv(D // heads, meta["BD"]), splits)](
        S, R, Q, K, W2, b2, indices, plan.items, dO, lse, dW2_part, db2_part,
        G, N, Hd, D, A, plan.num_items, sc,
        SPLITS=splits, HEADS=heads, BH=max(16, triton.next_power_of_2(Hd)), BA=attention_block(A, heads),
        ACC=tl_acc(S.dtype), DOT=dot_dtype(S.dtype), INPUT_PRECISION=input_precision(S.dtype),
    )  # fmt: skip
    return dW2_part.sum(0).to(W2.dtype), db2_part.sum(0).to(b2.dtype)


def backward(dO, S, R, Q, K, W2, b2, indptr, indices, O, lse, heads, scale):
    """The backend contract's backward (see ``rstg_fast.ops.backends``).

    Under ``torch.use_deterministic_algorithms(True)`` it takes the two-pass path with
    unsplit rows: no floating-point atomics, bitwise reproducible (about twice the work).
    """
    if torch.are_deterministic_algorithms_enabled():
        indptr_t, indices_t = transposed(indptr, indices)
        dest = get_plan(indptr, indices, chunk=0)
        source = (indices_t, get_plan(indptr_t, indices_t, chunk=0))
        return backward_with_plans(dO, S, R, Q, K, W2, b2, indices, O, lse, heads, scale, dest, source)
    return backward_with_plans(dO, S, R, Q, K, W2, b2, indices, O, lse, heads, scale, get_plan(indptr, indices))
