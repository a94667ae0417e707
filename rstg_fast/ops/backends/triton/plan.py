"""Per-graph work schedule of the Triton kernels, computed once on the host and cached.

Every program of the forward and backward kernels takes one *work item*: a destination row
``i`` and a contiguous chunk ``[start, end)`` of its CSR entries, for a block of graphs.
Rows longer than ``chunk`` edges are split into nearly equal chunks so that a skewed row
(the 1x1 node of ``huge`` has 1,038 sources, the median node 8) is spread over several
programs instead of serialising one; the chunks' partial results are merged with their
log-sum-exps (flash-decoding's split-K). Items are ordered longest first, so the long
chunks start early and the short ones fill the tail.

The schedule depends only on the CSR, so it is cached per graph (keyed on the ``indices``
tensor, its version counter and ``indptr``); building it reads ``indptr`` on the host once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rstg_fast.ops._graph_cache import graph_cache


@dataclass(frozen=True)
class Plan:
    """A work schedule for one CSR graph.

    Attributes:
        items: ``(n_items, 4)`` int32 on the graph's device: ``(row, start, end, slot)``;
            ``slot`` is -1 for a whole row (results stored in place) or the index of the
            partial-result slot of a split chunk.
        merges: ``(n_split_rows, 3)`` int32: ``(row, first_slot, num_slots)``.
        num_slots: number of partial-result slots (0 when no row is split).
        chunk: the longest chunk, in edges.
        max_len: the longest item, in edges.
    """

    items: torch.Tensor
    merges: torch.Tensor
    num_slots: int
    chunk: int
    max_len: int

    @property
    def num_items(self) -> int:
        return int(self.items.shape[0])


def default_chunk(num_nodes: int, num_edges: int) -> int:
    """Longest chunk before a row is split: twice the mean degree (a power of two), at least 32.

    The ``paper`` graph (degrees 4..13) is never split; at ``huge`` (mean 16.6) rows above
    64 edges are.
    """
    mean = max(1, -(-num_edges // max(num_nodes, 1)))
    return max(32, 1 << (2 * mean - 1).bit_length())


def build_plan(indptr: torch.Tensor, chunk: int | None = None) -> Plan:
    """The schedule of a CSR graph; ``chunk=0`` (or negative) disables splitting."""
    ptr = indptr.detach().to("cpu", torch.int64).tolist()
    n, e = len(ptr) - 1, ptr[-1]
    if chunk is None:
        chunk = default_chunk(n, e)
    items: list[tuple[int, int, int, int]] = []
    merges: list[tuple[int, int, int]] = []
    slots = 0
    for row in range(n):
        start, end = ptr[row], ptr[row + 1]
        deg = end - start
        if chunk <= 0 or deg <= chunk:
            items.append((row, start, end, -1))  # an empty row too: its program writes O = 0, lse = -inf
            continue
        parts = -(-deg // chunk)
        merges.append((row, slots, parts))
        for p in range(parts):  # nearly equal chunks
            items.append((row, start + deg * p // parts, start + deg * (p + 1) // parts, slots))
            slots += 1
    items.sort(key=lambda it: it[1] - it[2])  # longest first; stable, so rows stay in order per length
    device = indptr.device
    items_t = torch.tensor(items, dtype=torch.int32).reshape(-1, 4).to(device)
    merges_t = torch.tensor(merges, dtype=torch.int32).reshape(-1, 3).to(device)
    max_len = max((it[2] - it[1] for it in items), default=0)
    return Plan(items_t, merges_t, slots, int(chunk), max_len)


def get_plan(indptr: torch.Tensor, indices: torch.Tensor, chunk: int | None = None) -> Plan:
    """Cached :func:`build_plan` (one host read of ``indptr`` per graph and chunk size)."""
    if chunk is None:
        chunk = default_chunk(indptr.numel() - 1, indices.numel())
    return graph_cache.get(indptr, indices, ("triton_plan", chunk), lambda: build_plan(indptr, chunk))


def transpose_csr(indptr: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR by source, ``(indptr_t, indices_t)``: the destinations of each source (duplicates kept)."""
    n = indptr.numel() - 1
    dst = torch.repeat_interleave(
        torch.arange(n, device=indptr.device), indptr[1:] - indptr[:-1], output_size=indices.numel()
    )
    order = torch.sort(indices, stable=True).indices
    indptr_t = torch.zeros(n + 1, dtype=torch.int64, device=indptr.device)
    indptr_t[1:] = torch.cumsum(torch.bincount(indices, minlength=n), 0)
    return indptr_t, dst[order].contiguous()


def get_transposed(indptr: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached :func:`transpose_csr`; the returned tensors stay alive as long as ``indices``."""
    return graph_cache.get(indptr, indices, "transposed", lambda: transpose_csr(indptr, indices))
