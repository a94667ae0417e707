"""Work plans derived from a graph's CSR, shared by the ``cuda`` and ``triton`` launchers.

Both GPU backends give each program one *item*: a node's edge list, or a piece of it. A row
longer than ``chunk`` edges is cut into ``ceil(degree / chunk)`` nearly equal pieces (sizes
differ by at most one), whose partial results go to consecutive *slots* and are merged
afterwards in slot order (flash-decoding's split-K; the 1x1 node of ``huge`` has 1,038
sources, the median node 8). :func:`split_rows` computes that cut once, as numpy arrays; each
launcher packs it as its kernels want it (``backends/cuda/plan.py``: seven int32 arrays;
``backends/triton/plan.py``: ``(row, start, end, slot)`` items, longest first). The
deterministic backward passes also need the CSR by source, :func:`transpose_csr`.

Everything here is cached per graph through ``ops/_graph_cache.py`` (:func:`per_graph`),
under its one invalidation rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rstg_fast.ops._graph_cache import per_graph


@dataclass(frozen=True)
class RowSplit:
    """The items of one CSR orientation, int64 host arrays (item order: by node, then piece)."""

    item_node: np.ndarray  # (items,) owner node (row)
    item_begin: np.ndarray  # (items,) first edge position of the item
    item_end: np.ndarray  # (items,) one past its last edge position
    item_slot: np.ndarray  # (items,) partial-result slot, -1 for a whole row
    split_node: np.ndarray  # (splits,) rows cut into several items
    split_ptr: np.ndarray  # (splits + 1,) slot range of each split row

    @property
    def slots(self) -> int:
        return int(self.split_ptr[-1])


def split_rows(indptr: np.ndarray | torch.Tensor, chunk: int) -> RowSplit:
    """Cut the rows of a CSR (``indptr (N + 1,)``) into items of at most ``chunk`` edges.

    ``chunk <= 0`` cuts nothing. Every row gets at least one item (an empty row one empty item,
    so its outputs are written); the items of a row are consecutive and cover its edges in order.
    """
    if isinstance(indptr, torch.Tensor):
        indptr = indptr.detach().to("cpu", torch.int64).numpy()
    indptr = np.asarray(indptr, dtype=np.int64)
    n = indptr.size - 1
    deg = np.diff(indptr)
    nchunk = np.maximum(1, -(-deg // chunk)) if chunk > 0 else np.ones(n, dtype=np.int64)
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
    return RowSplit(item_node, begin, end, item_slot, split_node, split_ptr)


def transpose_csr(indptr: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR by source, ``(indptr_t (N + 1,), indices_t (E,))`` int64 on the graph's device:
    the destinations of each source, ascending (a stable sort), duplicates kept."""
    n = indptr.numel() - 1
    dst = torch.repeat_interleave(
        torch.arange(n, device=indptr.device), indptr[1:] - indptr[:-1], output_size=indices.numel()
    )
    order = torch.sort(indices, stable=True).indices
    indptr_t = torch.zeros(n + 1, dtype=torch.int64, device=indptr.device)
    indptr_t[1:] = torch.cumsum(torch.bincount(indices, minlength=n), 0)
    return indptr_t, dst[order].contiguous()


@per_graph
def transposed(indptr: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached :func:`transpose_csr`; the tensors stay alive as long as the graph does."""
    return transpose_csr(indptr, indices)
