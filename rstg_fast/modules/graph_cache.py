"""Per-size graph tensors of an RSTG model, built lazily and cached.

The edges (integer cells) and the pooling/painting weights (area resize) depend on the
feature map's ``H x W``, which the constructor does not know. The first forward at a new
size builds them once and stores them as non-persistent buffers of a child module
(``model.graphs.sizes["HxW"]``): they follow ``.to(device/dtype)``, stay out of ``state_dict``,
and are reused by every later call at that size.

Under ``torch.compile`` a size not yet cached is built at trace time by
:func:`_graph_constants` (``assume_constant_result``: the tensors become graph constants),
which needs static spatial sizes (compile with ``dynamic=False`` if the size changes).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import nn

from rstg_fast.graph import Graph, grid_graph
from rstg_fast.pooling import paint_matrix, pooling_matrix

_NAMES = ("indptr", "indices", "src", "dst", "pool", "paint")


class SizeGraph(NamedTuple):
    """The graph tensors of one map size: ``indptr (N+1,)``, ``indices (E,)`` (CSR by
    destination, for the fused op); ``src, dst (E,)`` (edge list, for the reference);
    ``pool (N, H*W)`` and ``paint (H*W, N)`` (:mod:`rstg_fast.pooling`)."""

    indptr: torch.Tensor
    indices: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor
    pool: torch.Tensor
    paint: torch.Tensor


# The pooling and painting matrices are dense (N x H*W float64: 117 MB at 1024 x 1024), so
# both this host cache and a model's cache keep only a few sizes.
MAX_SIZES = 8


@functools.lru_cache(maxsize=4)
def _graph_cpu(scales: tuple[tuple[int, int], ...], height: int, width: int) -> tuple[torch.Tensor, ...]:
    g = grid_graph(scales, height, width)
    src, dst = g.edge_index()
    return g.indptr, g.indices, src, dst, pooling_matrix(scales, height, width), paint_matrix(scales, height, width)


def _graph_constants(scales: tuple[tuple[int, int], ...], height: int, width: int) -> tuple[torch.Tensor, ...]:
    return tuple(t.clone() for t in _graph_cpu(scales, height, width))


# What `torch.compiler.assume_constant_result` does (the whole of its implementation in
# torch 2.4-2.13), without importing torch._dynamo: that import costs seconds and would make
# `import rstg_fast` slow. tests/modules/test_model.py compiles with fullgraph=True, so a torch
# release that changes the mechanism fails loudly there.
_graph_constants._dynamo_marked_constant = True  # type: ignore[attr-defined]


def static_size(n: int) -> int:
    """``n`` as a Python int, also when ``torch.compile`` traces it as a symbolic size.

    Dynamo marks a dimension dynamic once a function recompiles for another size (two RSTG
    instances share one ``forward``), but the graph tensors are built for concrete sizes. A
    Python comparison on a symbolic size installs a guard and returns a plain bool, so a
    bisection turns ``n`` into a constant with ~25 range guards that together mean ``n == value``:
    the compiled graph is then specialised to this size, as with ``dynamic=False``.
    (``int()`` keeps the size symbolic under dynamo, and ``guard_int`` cannot be traced.)
    """
    if not torch.compiler.is_compiling():
        return int(n)
    low, high = 0, 1 << 25  # sizes up to 32 M
    if n >= high:
        raise ValueError(f"spatial size must be < {high}, got {n}")
    while high - low > 1:
        mid = (low + high) // 2
        if n >= mid:
            low = mid
        else:
            high = mid
    return low


def size_graph(graph: Graph, like: torch.Tensor) -> SizeGraph:
    """The :class:`SizeGraph` of a :func:`rstg_fast.graph.grid_graph` result, on ``like``'s device
    (float tensors in its dtype): to run a stage on its own."""
    tensors = _graph_cpu(graph.scales, graph.height, graph.width)
    return SizeGraph(*_converted(tensors, like))


class GraphTensors(nn.Module):
    """The :class:`SizeGraph` of one map size, as non-persistent buffers."""

    def __init__(self, tensors: tuple[torch.Tensor, ...]) -> None:
        super().__init__()
        for name, t in zip(_NAMES, tensors, strict=True):
            self.register_buffer(name, t, persistent=False)


class GraphCache(nn.Module):
    """``ModuleDict``-backed cache ``"HxW" -> GraphTensors`` for fixed ``scales``, least
    recently used first out beyond ``max_sizes`` sizes (a stream of odd input sizes must not
    grow memory without bound)."""

    def __init__(self, scales: tuple[tuple[int, int], ...], max_sizes: int = MAX_SIZES) -> None:
        super().__init__()
        self.scales = scales
        self.max_sizes = max_sizes
        self.sizes = nn.ModuleDict()

    def get(self, height: int, width: int, like: torch.Tensor) -> SizeGraph:
        """The graph for ``height x width`` on ``like``'s device, float tensors in its dtype."""
        key = f"{height}x{width}"
        if key in self.sizes:
            g = self.sizes[key]
            if g.pool.device == like.device and g.pool.dtype == like.dtype:
                if not torch.compiler.is_compiling() and next(reversed(self.sizes.keys())) != key:
                    self.sizes[key] = self.sizes.pop(key)  # most recently used last
                return SizeGraph(*(getattr(g, n) for n in _NAMES))
        if torch.compiler.is_compiling():
            return SizeGraph(*_converted(_graph_constants(self.scales, height, width), like))
        # Built (or rebuilt, for another dtype or device) from the exact float64 values, never
        # converted from another dtype's copy: float32 pooling weights widened to float64 are
        # ~1e-9 off (the positional maps' error, which model-level fuzzing found). Built
        # outside inference mode: cached under torch.inference_mode() they would be inference
        # tensors, unusable by every later call that records autograd.
        with torch.inference_mode(False):
            g = GraphTensors(_converted(tuple(t.clone() for t in _graph_cpu(self.scales, height, width)), like))
        if key in self.sizes:
            del self.sizes[key]
        self.sizes[key] = g
        while len(self.sizes) > self.max_sizes:
            self.sizes.pop(next(iter(self.sizes.keys())))
        return SizeGraph(*(getattr(g, n) for n in _NAMES))

    def _apply(self, fn, recurse=True):
        # .double(), .to(...), .cuda(): keep every cached size in the new dtype and device,
        # but rebuilt from the exact values, not converted from its current dtype.
        super()._apply(fn, recurse)
        for key, g in list(self.sizes.items()):
            height, width = (int(v) for v in key.split("x"))
            exact = tuple(t.clone() for t in _graph_cpu(self.scales, height, width))
            self.sizes[key] = GraphTensors(_converted(exact, g.pool))
        return self


def _converted(ts: tuple[torch.Tensor, ...], like: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(like.device, like.dtype if t.is_floating_point() else t.dtype) for t in ts)
