"""Per-graph work schedule of the Triton kernels: the shared row split, packed for Triton.

Every program of the forward and backward kernels takes one *work item*: a destination row
``i`` and a contiguous chunk ``[start, end)`` of its CSR entries, for a block of graphs. The
cut of long rows into nearly equal chunks is ``ops/_graph_plan.split_rows`` (shared with the
``cuda`` backend); here the items are packed as ``(row, start, end, slot)`` and ordered
longest first, so the long chunks start early and the short ones fill the tail.

The schedule depends only on the CSR, so it is cached per graph (``ops/_graph_cache.py``);
building it reads ``indptr`` on the host once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rstg_fast.ops._graph_cache import per_graph
from rstg_fast.ops._graph_plan import split_rows


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
    if chunk is None:
        chunk = default_chunk(indptr.numel() - 1, int(indptr[-1]))
    cut = split_rows(indptr, chunk)
    lengths = cut.item_end - cut.item_begin
    order = np.argsort(-lengths, kind="stable")  # longest first; rows stay in order per length
    items = np.stack([cut.item_node, cut.item_begin, cut.item_end, cut.item_slot], axis=1)[order]
    merges = np.stack([cut.split_node, cut.split_ptr[:-1], np.diff(cut.split_ptr)], axis=1)
    pack = lambda a: torch.from_numpy(a.astype(np.int32)).to(indptr.device)  # noqa: E731 - local shorthand
    return Plan(pack(items), pack(merges), cut.slots, int(chunk), int(lengths.max(initial=0)))


@per_graph
def _cached_plan(indptr: torch.Tensor, indices: torch.Tensor, chunk: int) -> Plan:
    return build_plan(indptr, chunk)


def get_plan(indptr: torch.Tensor, indices: torch.Tensor, chunk: int | None = None) -> Plan:
    """Cached :func:`build_plan` (one host read of ``indptr`` per graph and chunk size)."""
    if chunk is None:
        chunk = default_chunk(indptr.numel() - 1, indices.numel())
    return _cached_plan(indptr, indices, chunk)
