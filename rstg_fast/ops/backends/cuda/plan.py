"""Work plan of the ``cuda`` backend (the shared row split, packed for the kernels) and its
launch limits.

The kernels (``csrc/cuda/message_attention_*.cu``) process *items*: a node's edge list cut
into pieces of at most ``CHUNK`` edges by ``ops/_graph_plan.split_rows`` (shared with the
``triton`` backend). A node with more edges (the 1x1 node of the default scales, every coarse
node of ``huge``) is *split*: its items write float32 partials to consecutive *slots*, merged
afterwards in slot order (with their log-sum-exps in the forward). :func:`plan_for` packs the
split as int32 device arrays, once per graph (cached), for the CSR by destination and for its
transpose by source (the deterministic backward's source-major pass).

Everything here mirrors constants and formulas of ``csrc/cuda/message_attention_common.cuh``
(``make_layout``, ``check_limits``); a change there must be made here too.
"""

from __future__ import annotations

import numpy as np
import torch

from rstg_fast.ops._graph_cache import per_graph
from rstg_fast.ops._graph_plan import split_rows, transpose_csr

THREADS = 128
TN = 64  # output columns per tensor-core tile
TK = 32  # W2 slice along the reduction; Hd and D are padded to it
BG = 8  # graphs per task
CHUNK = 32  # most edges per item
PAD_BYTES = 16
SMEM_CAP = 160 * 1024  # bytes of shared memory per block the kernels may use


def pad32(x: int) -> int:
    return (x + 31) // 32 * 32


def _align128(b: int) -> int:
    return (b + 127) // 128 * 128


def smem_bytes(backward: bool, elem_size: int, Hd: int, D: int, A: int, heads: int, has_w2: bool) -> int:
    """Dynamic shared memory of one block (mirror of ``make_layout`` in the CUDA header)."""
    pad = PAD_BYTES // elem_size
    tm = 16 if elem_size == 4 else 32
    ldh = pad32(Hd) + pad
    ldw, ldb, ldz, ldd = TK + pad, TN + pad, TN + 4, pad32(D) + pad
    w2_elems = max(TN * ldw, TK * ldb)
    sizes = [tm * ldh * elem_size, w2_elems * elem_size if has_w2 else 0, tm * ldz * 4 if has_w2 else 0, tm * 16]
    if not backward:
        sizes += [BG * D * 4, BG * CHUNK * heads * 4, BG * heads * 4]
    else:
        sizes += [
            tm * ldd * elem_size if has_w2 else 0,
            THREADS * heads * 4,
            tm * heads * 4,
            tm * heads * 4,
            BG * Hd * 4,
            BG * A * 4,
        ]
    return sum(_align128(s) for s in sizes)


def check_launch_limits(
    G: int, N: int, E: int, Hd: int, D: int, A: int, heads: int, elem_size: int, has_w2: bool
) -> None:
    """Raise ValueError for shapes the CUDA kernels do not support (before any launch).

    The same rules are enforced again by the C++ launchers (``check_limits``).
    """
    # The C++ launchers' own precondition, mirrored. Through the op it never fires: ops/_checks.py
    # rejects zero widths for every backend, and cuda/launch.py returns before this for G or N = 0.
    if min(G, N, Hd, D, A, heads) < 1:
        raise ValueError(
            f"cuda backend needs positive G, N, Hd, D, A, heads, got G={G} N={N} Hd={Hd} D={D} A={A} heads={heads}"
        )
    if max(G, N, E) >= 2**31 - 1:
        raise ValueError(f"cuda backend needs G, N and E below 2^31, got G={G} N={N} E={E}")
    need = max(
        smem_bytes(False, elem_size, Hd, D, A, heads, has_w2), smem_bytes(True, elem_size, Hd, D, A, heads, has_w2)
    )
    if max(Hd, D, A) > 2**20 or need > SMEM_CAP:
        raise ValueError(
            f"cuda backend: shared memory per block would be {need} bytes, over the kernel limit of {SMEM_CAP} "
            f"(Hd={Hd}, D={D}, A={A}, heads={heads}, {8 * elem_size}-bit); use a smaller width or the triton backend"
        )
    if (N * CHUNK + E) // CHUNK * ((G + BG - 1) // BG) >= 2**31 - 1:
        raise ValueError(f"cuda backend: too many tasks for one launch (G={G}, N={N}, E={E})")


_PLAN_FIELDS = ("item_node", "item_begin", "item_end", "item_slot", "other", "split_node", "split_ptr")


class DevicePlan:
    """One orientation's plan as int32 device tensors (fields of ``Plan`` in the CUDA header)."""

    def __init__(self, indptr: np.ndarray, other: np.ndarray, device: torch.device) -> None:
        cut = split_rows(indptr, CHUNK)
        arrays = {f: getattr(cut, f) for f in _PLAN_FIELDS if f != "other"}
        arrays["other"] = other
        int32 = {f: np.ascontiguousarray(arrays[f], dtype=np.int32) for f in _PLAN_FIELDS}
        self.tensors = {f: torch.from_numpy(a).to(device) for f, a in int32.items()}
        self.items = int(cut.item_node.size)
        self.splits = int(cut.split_node.size)
        self.slots = cut.slots

    def args(self, prefix: str) -> dict[str, int]:
        out = {prefix + f: t.data_ptr() for f, t in self.tensors.items()}
        out.update({prefix + "items": self.items, prefix + "splits": self.splits, prefix + "slots": self.slots})
        return out


@per_graph
def plan_for(indptr: torch.Tensor, indices: torch.Tensor, by_source: bool) -> DevicePlan:
    """The cached plan of a graph (by destination, or transposed by source)."""
    ip, ix = indptr.cpu(), indices.cpu()
    if by_source:
        ip, ix = transpose_csr(ip, ix)
    return DevicePlan(ip.numpy(), ix.numpy(), indices.device)
