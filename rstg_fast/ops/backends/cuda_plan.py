"""Host-side work plan of the ``cuda`` backend, and its launch limits (pure functions).

The kernels (``csrc/cuda/message_attention_*.cu``) process *items*: a node's edge list cut
into pieces of at most ``CHUNK`` edges, balanced (sizes differ by at most one). A node with
more edges (the 1x1 node of the default scales, every coarse node of ``huge``) is *split*:
its items write float32 partials to consecutive *slots*, merged afterwards in slot order
(with their log-sum-exps in the forward). The plan is built once per graph on the host and
cached by ``cuda.py``; the same function serves the CSR by destination and its transpose by
source (the deterministic backward's source-major pass).

Everything here mirrors constants and formulas of ``csrc/cuda/message_attention_common.cuh``
(``make_layout``, ``check_limits``); a change there must be made here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    # rejects zero widths for every backend, and cuda.py returns before this for G or N = 0.
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


@dataclass(frozen=True)
class PlanArrays:
    """One orientation's plan as int32 host arrays (see the module docstring)."""

    item_node: np.ndarray  # (items,) owner node
    item_begin: np.ndarray  # (items,) first position in `other`
    item_end: np.ndarray  # (items,) one past the last position
    item_slot: np.ndarray  # (items,) partial slot, -1 for a whole row
    other: np.ndarray  # (E,) other end of each edge
    split_node: np.ndarray  # (splits,) nodes cut into several items
    split_ptr: np.ndarray  # (splits + 1,) slot range of each split node

    @property
    def slots(self) -> int:
        return int(self.split_ptr[-1])


def build_plan(indptr: np.ndarray, other: np.ndarray, chunk: int = CHUNK) -> PlanArrays:
    """Cut the rows of a CSR (``indptr (N+1,)``, ``other (E,)``) into items of <= ``chunk`` edges.

    Every node gets at least one item (an empty row gets one empty item, so its outputs are
    written). Items of one node are consecutive and cover its edges in order.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    n = indptr.size - 1
    deg = np.diff(indptr)
    nchunk = np.maximum(1, -(-deg // chunk))
    item_node = np.repeat(np.arange(n, dtype=np.int64), nchunk)
    first_item = np.cumsum(nchunk) - nchunk
    k = np.arange(item_node.size, dtype=np.int64) - first_item[item_node]
    d, c = deg[item_node], nchunk[item_node]
    begin = indptr[item_node] + d * k // c
    end = indptr[item_node] + d * (k + 1) // c
    split = nchunk > 1
    split_node = np.flatnonzero(split)
    split_ptr = np.zeros(split_node.size + 1, dtype=np.int64)
    split_ptr[1:] = np.cumsum(nchunk[split_node])
    slot_base = np.full(n, -1, dtype=np.int64)
    slot_base[split_node] = split_ptr[:-1]
    item_slot = np.where(split[item_node], slot_base[item_node] + k, -1)
    i32 = lambda a: np.ascontiguousarray(a, dtype=np.int32)  # noqa: E731 - local shorthand
    return PlanArrays(i32(item_node), i32(begin), i32(end), i32(item_slot), i32(other), i32(split_node), i32(split_ptr))


def transpose_csr(indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR by source: ``(t_indptr (N+1,), t_other (E,))`` with the destination of each edge.

    A stable sort keeps each source's destinations ascending (and duplicates as separate edges).
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    n = indptr.size - 1
    dst = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    order = np.argsort(indices, kind="stable")
    t_indptr = np.zeros(n + 1, dtype=np.int64)
    t_indptr[1:] = np.cumsum(np.bincount(indices, minlength=n))
    return t_indptr, dst[order]
