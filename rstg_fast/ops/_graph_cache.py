"""What the op derives from a graph's CSR, and the one rule for caching it.

Every value computed from ``(indptr, indices)`` (the content check, the int64 copy of an
int32 graph, the CUDA and Triton work plans, the transposed CSR) is cached here, under one
invalidation rule: an entry belongs to the *pair* of tensors (by identity) and is valid while
both are alive and their version counters are unchanged. Inference tensors have no version
counter, so nothing derived from them is cached (it is recomputed on every call).

The kernels themselves never read a CSR that was not checked: :func:`checked_csr` checks CPU
graphs on every call (O(N + E), microseconds beside the kernels; an edit made behind the
version counter, through ``.data`` or ``.numpy()``, is therefore seen) and gives CUDA kernels
a private copy of the graph, checked once (a check there needs a host synchronisation, which
the launch-bound shapes cannot pay per call). So a stale cache can make CUDA use the graph as
it was when checked, but never read out of bounds.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Hashable
from typing import TypeVar

import torch
from torch.utils.weak import WeakIdKeyDictionary

T = TypeVar("T")


def version(t: torch.Tensor) -> int | None:
    """``t``'s version counter, or None for an inference tensor (which has none)."""
    return None if t.is_inference() else t._version


class GraphCache:
    """Values derived from a CSR graph, per ``(indptr, indices)`` pair and key."""

    def __init__(self) -> None:
        # indices -> (indices version, indptr version, weakref(indptr), {key: value})
        self._entries = WeakIdKeyDictionary()

    def get(self, indptr: torch.Tensor, indices: torch.Tensor, key: Hashable, build: Callable[[], T]) -> T:
        """The cached ``build()`` for this graph and ``key`` (built on a miss)."""
        versions = (version(indices), version(indptr))
        if None in versions:
            return build()
        entry = self._entries.get(indices)
        if entry is None or entry[:2] != versions or entry[2]() is not indptr:
            entry = (*versions, weakref.ref(indptr), {})
            self._entries[indices] = entry
        values = entry[3]
        if key not in values:
            values[key] = build()
        return values[key]

    def clear(self) -> None:
        self._entries = WeakIdKeyDictionary()


graph_cache = GraphCache()


def per_graph(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn(indptr, indices, *args, **kwargs)`` cached in :data:`graph_cache` under its name and
    the other arguments (flash-linear-attention's ``tensor_cache`` on ``prepare_chunk_indices``,
    for graphs). The other arguments must be hashable; ``.uncached`` is ``fn`` itself.
    """
    name = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def cached(indptr: torch.Tensor, indices: torch.Tensor, *args: Hashable, **kwargs: Hashable) -> T:
        key = (name, args, tuple(kwargs.items()))
        return graph_cache.get(indptr, indices, key, lambda: fn(indptr, indices, *args, **kwargs))

    cached.uncached = fn
    return cached


_CSR_MESSAGES = {
    0: "indptr must start at 0, got indptr[0] = {v}",
    1: "indptr must end at E = len(indices) = {e}, got indptr[-1] = {v}",
    2: "indptr must be non-decreasing, but indptr[{w} + 1] < indptr[{w}]",
    3: "indices must lie in [0, N) = [0, {n}), got indices[{w}] = {v}",
}


def check_csr_contents(indptr: torch.Tensor, indices: torch.Tensor) -> None:
    """Raise ValueError naming the argument and the first bad position unless ``indptr`` is
    0 .. E and non-decreasing and every index lies in ``[0, N)``. int64 contiguous tensors.

    Runs the C++ (or CUDA) checker of ``rstg_fast._C`` when built, else the same checks in
    PyTorch. Not cached: see :func:`checked_csr`.
    """
    n, e = indptr.numel() - 1, indices.numel()
    from rstg_fast._ext import extension

    ext = extension()
    if ext is not None and indptr.device.type == "cpu":
        code, where = ext.check_csr_cpu(indptr.data_ptr(), indices.data_ptr(), n, e)
    elif ext is not None and indptr.device.type == "cuda" and ext.with_cuda:
        stream = torch.cuda.current_stream(indptr.device).cuda_stream
        code, where = ext.check_csr_cuda(indptr.data_ptr(), indices.data_ptr(), n, e, stream)
    else:
        code, where = _check_csr_torch(indptr, indices)
    if code >= 0:
        value = {0: lambda: indptr[0], 1: lambda: indptr[-1], 2: lambda: 0, 3: lambda: indices[where]}[code]()
        raise ValueError(_CSR_MESSAGES[code].format(v=int(value), e=e, w=where, n=n))


def _check_csr_torch(indptr: torch.Tensor, indices: torch.Tensor) -> tuple[int, int]:
    n, e = indptr.numel() - 1, indices.numel()
    if int(indptr[0]) != 0:
        return 0, 0
    if int(indptr[-1]) != e:
        return 1, n
    bad = (indptr[1:] < indptr[:-1]).nonzero()
    if bad.numel():
        return 2, int(bad[0])
    bad = ((indices < 0) | (indices >= n)).nonzero()
    if bad.numel():
        return 3, int(bad[0])
    return -1, 0


def _int64(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.int64).contiguous()


@per_graph
def _private_checked(indptr: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # one copy each (int32 widened, strided made contiguous), owned by the cache
    ip = indptr.to(torch.int64, copy=True, memory_format=torch.contiguous_format)
    ix = indices.to(torch.int64, copy=True, memory_format=torch.contiguous_format)
    check_csr_contents(ip, ix)
    return ip, ix


def checked_csr(indptr: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int64 contiguous ``(indptr, indices)`` with checked contents, for the kernels.

    CPU: the caller's graph (int32 widened), checked now. CUDA: a private checked copy,
    cached per graph (the module docstring says why). Shapes and dtypes were checked before.
    """
    if indptr.device.type != "cuda":
        indptr, indices = _int64(indptr), _int64(indices)
        check_csr_contents(indptr, indices)
        return indptr, indices
    return _private_checked(indptr, indices)
