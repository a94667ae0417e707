"""Work plan of the ``cuda`` backend (the shared row split, packed for the kernels) and its
launch limits.

The kernels (``csrc/cuda/message_attention_*.cu``) process *items*: a node's edge list cut
into pieces of at most ``chunk`` (32) edges by ``ops/_graph_plan.split_rows`` (shared with the
``triton`` backend). A node with more edges (the 1x1 node of the default scales, every coarse
node of ``huge``) is *split*: its items write float32 partials to consecutive *slots*, merged
afterwards in slot order (with their log-sum-exps in the forward). :func:`plan_for` packs the
split as int32 device arrays, once per graph (cached), for the CSR by destination and for its
transpose by source (the deterministic backward's source-major pass).

The tile sizes, the shared-memory layout and the launch limits are the C++ ones
(``csrc/cuda/ma_layout.h``), read from the module, which exposes them on every build: nothing
here copies them.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from rstg_fast._ext import require_extension
from rstg_fast.ops._graph_cache import per_graph
from rstg_fast.ops._graph_plan import split_rows, transpose_csr


@functools.cache
def limits() -> dict[str, int]:
    """The kernels' constants (``csrc/cuda/ma_layout.h``): ``threads``, ``tile_n``, ``tile_k``
    (``Hd`` and ``D`` are padded to it), ``graphs_per_task``, ``chunk`` (most edges per item),
    ``pad_bytes``, ``smem_cap`` (bytes of shared memory per block)."""
    return dict(require_extension().cuda_limits)


def pad32(x: int) -> int:
    """``x`` rounded up to the kernels' reduction slice (``tile_k``, 32), as ``pad32`` in C++."""
    k = limits()["tile_k"]
    return -(-x // k) * k


def smem_bytes(backward: bool, elem_size: int, Hd: int, D: int, A: int, heads: int, has_w2: bool) -> int:
    """Dynamic shared memory of one block (``make_layout`` in C++)."""
    return require_extension().cuda_smem_bytes(backward, elem_size, Hd, D, A, heads, has_w2)


def check_launch_limits(
    G: int, N: int, E: int, Hd: int, D: int, A: int, heads: int, elem_size: int, has_w2: bool
) -> None:
    """Raise ValueError for shapes the CUDA kernels do not support, before any allocation: the
    C++ launchers' own check (``check_limits``), called through the module.

    Through the op the positivity rule never fires: ops/_checks.py rejects zero widths for every
    backend, and cuda/launch.py returns before this for G or N = 0.
    """
    require_extension().cuda_check_launch_limits(G, N, E, Hd, D, A, heads, elem_size, has_w2)


_PLAN_FIELDS = ("item_node", "item_begin", "item_end", "item_slot", "other", "split_node", "split_ptr")


class DevicePlan:
    """One orientation's plan as int32 device tensors (fields of ``Plan`` in the CUDA header)."""

    def __init__(self, indptr: np.ndarray, other: np.ndarray, device: torch.device) -> None:
        cut = split_rows(indptr, limits()["chunk"])
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
