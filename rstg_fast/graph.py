"""The RSTG graph: multi-scale grid nodes, the overlap/neighbour edge rule, positional maps.

Rules (docs/design.md §1): scale ``(sh, sw)`` cuts an ``H x W`` map into cells of integer size
``H // sh`` by ``W // sw`` starting at 0. Nodes are numbered scale by scale, row-major in a
scale. Nodes ``i != j`` are connected both ways when their cells overlap or share a side
(``dx >= 0 and dy >= 0 and not dx == dy == 0``); a shared corner alone is not an edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rstg_fast._args import as_index, positive_int

Scales = Sequence[tuple[int, int]]


@dataclass(frozen=True)
class Graph:
    """One static graph shared by every frame of every video.

    Attributes:
        scales: the grids, e.g. ``((3, 3), (2, 2), (1, 1))``.
        height, width: the feature-map size the cells were cut from.
        num_nodes: ``N``.
        regions: ``(N, 4)`` int64 ``(y0, y1, x0, x1)`` cell of each node (ends exclusive).
        scale_of_node: ``(N,)`` int64 index into ``scales``.
        indptr: ``(N + 1,)`` int64 CSR by destination.
        indices: ``(E,)`` int64 sources of each destination, ascending.
    """

    scales: tuple[tuple[int, int], ...]
    height: int
    width: int
    num_nodes: int
    regions: torch.Tensor
    scale_of_node: torch.Tensor
    indptr: torch.Tensor
    indices: torch.Tensor

    @property
    def num_edges(self) -> int:
        return int(self.indices.numel())

    def degrees(self) -> torch.Tensor:
        """``(N,)`` number of sources of each destination."""
        return self.indptr[1:] - self.indptr[:-1]

    def edge_index(self) -> torch.Tensor:
        """``(2, E)`` ``[source; destination]`` in CSR order (PyG's convention)."""
        dst = torch.repeat_interleave(torch.arange(self.num_nodes), self.degrees())
        return torch.stack([self.indices, dst])


def check_scales(scales: Scales) -> tuple[tuple[int, int], ...]:
    try:
        pairs = [(sh, sw) for sh, sw in scales]
    except (TypeError, ValueError):
        raise ValueError(f"scales must be a sequence of (rows, cols) pairs, got {scales!r}") from None
    out = tuple((as_index(sh), as_index(sw)) for sh, sw in pairs)
    if not out or any(sh is None or sw is None or sh < 1 or sw < 1 for sh, sw in out):
        raise ValueError(f"scales must be a non-empty sequence of positive int (rows, cols), got {scales!r}")
    return out


def grid_regions(scales: Scales, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer cells of every node: ``regions (N, 4)`` and ``scale_of_node (N,)``."""
    scales = check_scales(scales)
    height, width = positive_int("height", height), positive_int("width", width)
    for sh, sw in scales:
        if height < sh or width < sw:
            raise ValueError(
                f"scale ({sh}, {sw}) needs a map of at least {sh} x {sw}, got height={height}, width={width}"
            )
    rows, owner = [], []
    for s, (sh, sw) in enumerate(scales):
        ch, cw = height // sh, width // sw
        for r in range(sh):
            for c in range(sw):
                rows.append((r * ch, (r + 1) * ch, c * cw, (c + 1) * cw))
                owner.append(s)
    return torch.tensor(rows, dtype=torch.int64), torch.tensor(owner, dtype=torch.int64)


def _adjacency(regions: torch.Tensor, self_loops: bool) -> torch.Tensor:
    """``(N, N)`` bool, ``adj[i, j]`` = edge from source j to destination i."""
    y0, y1, x0, x1 = regions.unbind(1)
    dy = torch.minimum(y1[:, None], y1[None, :]) - torch.maximum(y0[:, None], y0[None, :])
    dx = torch.minimum(x1[:, None], x1[None, :]) - torch.maximum(x0[:, None], x0[None, :])
    adj = (dx >= 0) & (dy >= 0) & ~((dx == 0) & (dy == 0))
    adj.fill_diagonal_(self_loops)
    return adj


def grid_graph(scales: Scales, height: int, width: int, self_loops: bool = False) -> Graph:
    """Build the RSTG graph of ``scales`` over an ``height x width`` feature map.

    >>> g = grid_graph(((3, 3), (2, 2), (1, 1)), 6, 6)
    >>> g.num_nodes, g.num_edges
    (14, 90)
    """
    scales = check_scales(scales)
    height, width = positive_int("height", height), positive_int("width", width)
    if not isinstance(self_loops, (bool, np.bool_)):
        raise ValueError(f"self_loops must be a bool, got {self_loops!r}")
    regions, scale_of_node = grid_regions(scales, height, width)
    adj = _adjacency(regions, bool(self_loops))
    degrees = adj.sum(1)
    indptr = torch.zeros(len(regions) + 1, dtype=torch.int64)
    indptr[1:] = torch.cumsum(degrees, 0)
    indices = adj.nonzero()[:, 1].contiguous()  # row-major: grouped by destination, sources ascending
    return Graph(scales, height, width, len(regions), regions, scale_of_node, indptr, indices)


def positional_maps(graph: Graph | Scales, dim_map: int = 6, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Fixed Gaussian position maps, ``(N, dim_map**2)`` in ``dtype`` (float32 by default;
    the model asks for float64, see :class:`~rstg_fast.modules.space_base.SpaceStageBase`).

    Each node's ``dim_map x dim_map`` map is cut into cells by the integer rule
    (``dim_map // sh`` by ``dim_map // sw``); inside the node's cell the value at ``(y, x)``
    is ``exp(-((y - cy)^2 + (x - cx)^2) / (2 * 2^2))`` around the cell centre, zero outside.
    The maps depend on the scales and ``dim_map`` only, not on the feature-map size.
    """
    scales = graph.scales if isinstance(graph, Graph) else check_scales(graph)
    dim_map = positive_int("dim_map", dim_map)
    if any(dim_map < max(sh, sw) for sh, sw in scales):
        raise ValueError(f"dim_map must be at least the largest scale side, got dim_map={dim_map} for scales {scales}")
    regions, _ = grid_regions(scales, dim_map, dim_map)
    ys = torch.arange(dim_map, dtype=torch.float64)
    maps = torch.zeros(len(regions), dim_map, dim_map, dtype=torch.float64)
    for n, (y0, y1, x0, x1) in enumerate(regions.tolist()):
        # centre of the integer cell [y0, y1) x [x0, x1) in map-cell coordinates
        cy, cx = (y0 + y1 - 1) / 2.0, (x0 + x1 - 1) / 2.0
        g = torch.exp(-((ys[:, None] - cy) ** 2 + (ys[None, :] - cx) ** 2) / (2 * 2.0**2))
        inside = torch.zeros(dim_map, dim_map, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        maps[n] = torch.where(inside, g, torch.zeros(()))
    return maps.reshape(len(regions), dim_map * dim_map).to(dtype)


__all__ = ["Graph", "grid_graph", "grid_regions", "positional_maps", "check_scales"]
