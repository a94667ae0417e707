"""Exact area pooling of a feature map onto the RSTG nodes, and its transpose ("paint").

A node's feature is the area average of its cell of the ``H x W`` map (TensorFlow's
``resize_area``, docs/design.md §1): resizing ``in_size -> out_size`` averages, for output cell
``o``, the input span ``[o * in / out, (o + 1) * in / out)``, where an input pixel that the
span only partly covers counts with the covered fraction. The 2-D resize is separable, so
every node is one row of a dense ``(N, H * W)`` matrix, and pooling every scale at once is a
single matmul. It equals ``adaptive_avg_pool2d`` only when the sizes divide.

Painting (RSTG-to-map) uses the same matrix transposed, scaled per scale so that every
pixel's weights within one scale sum to 1: a node's value lands on each pixel of its cell
with the fraction of that pixel the cell covers (see docs/model.md for why not the bare
transpose).
"""

from __future__ import annotations

import torch

from rstg_fast.graph import Scales, check_scales


def area_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """``(out_size, in_size)`` float64 weights of a 1-D area resize; rows sum to 1.

    Entry ``[o, i]`` is the length of ``[i, i + 1) ∩ [o * in / out, (o + 1) * in / out)``
    divided by the span length ``in / out``. Computed in integers (lengths times ``out``), so
    the weights are exact rationals rounded once.
    """
    in_size, out_size = int(in_size), int(out_size)
    if in_size < 1:
        raise ValueError(f"in_size must be a positive int, got {in_size}")
    if out_size < 1:
        raise ValueError(f"out_size must be a positive int, got {out_size}")
    o = torch.arange(out_size, dtype=torch.int64)[:, None]
    i = torch.arange(in_size, dtype=torch.int64)[None, :]
    # overlap length times out_size: pixel [i*out, (i+1)*out) vs span [o*in, (o+1)*in)
    lo = torch.maximum(i * out_size, o * in_size)
    overlap = (torch.minimum((i + 1) * out_size, (o + 1) * in_size) - lo).clamp_min(0)
    return overlap.to(torch.float64) / in_size


def pooling_matrix(scales: Scales, height: int, width: int) -> torch.Tensor:
    """``(N, H * W)`` float64: row ``n`` is node ``n``'s area weights over the flattened map.

    Nodes are numbered scale by scale, row-major inside a scale (as ``rstg_fast.graph``).
    Each row sums to 1.
    """
    scales = check_scales(scales)
    rows = []
    for sh, sw in scales:
        ay, ax = area_matrix(height, sh), area_matrix(width, sw)  # (sh, H), (sw, W)
        rows.append(torch.einsum("ry,cx->rcyx", ay, ax).reshape(sh * sw, height * width))
    return torch.cat(rows)


def paint_matrix(scales: Scales, height: int, width: int) -> torch.Tensor:
    """``(H * W, N)`` float64: the transpose of :func:`pooling_matrix`, each scale's block
    multiplied by its cell area ``H * W / (sh * sw)``.

    Entry ``[p, n]`` is the fraction of pixel ``p`` that node ``n``'s cell covers, so for every
    pixel the weights of one scale sum to 1 and the scales contribute equally.
    """
    scales = check_scales(scales)
    pool = pooling_matrix(scales, height, width)
    area = torch.cat([torch.full((sh * sw,), height * width / (sh * sw), dtype=torch.float64) for sh, sw in scales])
    return (pool * area[:, None]).t().contiguous()


def pool_nodes(x: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Pool a ``(B, C, T, H, W)`` map to the nodes: ``(B, T, N, C)``.

    ``pool`` is :func:`pooling_matrix` ``(N, H * W)`` in ``x``'s dtype and device.
    """
    B, C, T, H, W = x.shape
    if pool.shape[1] != H * W:
        raise ValueError(f"pool must have shape (N, H * W) = (N, {H * W}), got {tuple(pool.shape)}")
    flat = x.permute(0, 2, 1, 3, 4).reshape(B, T, C, H * W)
    return torch.matmul(flat, pool.t()).transpose(-1, -2)  # (B, T, N, C)


def paint_nodes(v: torch.Tensor, paint: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Paint node values ``(B, T, N, C)`` back onto the map: ``(B, C, T, H, W)``, scales summed.

    ``paint`` is :func:`paint_matrix` ``(H * W, N)`` in ``v``'s dtype and device.
    """
    B, T, N, C = v.shape
    if paint.shape != (height * width, N):
        raise ValueError(f"paint must have shape (H * W, N) = ({height * width}, {N}), got {tuple(paint.shape)}")
    out = torch.matmul(paint, v)  # (B, T, H*W, C)
    return out.permute(0, 3, 1, 2).reshape(B, C, T, height, width)


__all__ = ["area_matrix", "pooling_matrix", "paint_matrix", "pool_nodes", "paint_nodes"]
