"""Pieces of RSTG that the reference and the fast model share verbatim: the MLPs, the update
function (per scale or shared), and the two readouts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rstg_fast.pooling import paint_nodes


class MLP(nn.Sequential):
    """``layers`` linear layers, each followed by ReLU: ``in_dim -> out_dim (-> out_dim)``."""

    def __init__(self, in_dim: int, out_dim: int, layers: int) -> None:
        mods: list[nn.Module] = []
        for k in range(layers):
            mods += [nn.Linear(in_dim if k == 0 else out_dim, out_dim), nn.ReLU()]
        super().__init__(*mods)


class Update(nn.Module):
    """``v_i' = MLP_u([v_i | g_i])``; with ``scale_sizes`` (nodes per scale, in node order) each
    scale gets its own MLP (``scalewise_update``).

    Shapes: ``v (G, N, node_dim)``, ``g (G, N, message_dim)`` -> ``(G, N, node_dim)``.
    """

    def __init__(self, node_dim: int, message_dim: int, layers: int, scale_sizes: list[int] | None = None) -> None:
        super().__init__()
        self.scale_sizes = list(scale_sizes) if scale_sizes is not None else None
        count = len(self.scale_sizes) if self.scale_sizes is not None else 1
        self.mlps = nn.ModuleList(MLP(node_dim + message_dim, node_dim, layers) for _ in range(count))

    def forward(self, v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        vg = torch.cat([v, g], -1)
        if self.scale_sizes is None:
            return self.mlps[0](vg)
        # nodes are numbered scale by scale, so each scale is one contiguous slice
        return torch.cat([mlp(part) for mlp, part in zip(self.mlps, vg.split(self.scale_sizes, 1), strict=True)], 1)


def vec_readout(v: torch.Tensor, time_readout: str) -> torch.Tensor:
    """RSTG-to-vec: ``(B, T, N, D)`` -> ``(B, D)``, mean (or last step) over time, sum over nodes."""
    per_time = v[:, -1] if time_readout == "last" else v.mean(1)
    return per_time.sum(1)


class MapReadout(nn.Module):
    """RSTG-to-map: ``x + scale * LayerNorm_C(paint(proj(v)))``; the identity at initialisation.

    ``proj`` maps each node ``node_dim -> C``; painting sums the scales; the LayerNorm over
    channels has no affine part (the zero-initialised per-channel ``scale`` is the gain).
    """

    def __init__(self, node_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(node_dim, channels)
        self.scale = nn.Parameter(torch.zeros(channels))

    def forward(self, v: torch.Tensor, x: torch.Tensor, paint: torch.Tensor) -> torch.Tensor:
        """``v (B, T', N, D)`` with ``T'`` = T or 1 (broadcast), ``x (B, C, T, H, W)`` -> like ``x``."""
        H, W = x.shape[-2:]
        m = paint_nodes(self.proj(v), paint, H, W)  # (B, C, T', H, W)
        m = F.layer_norm(m.movedim(1, -1), (m.shape[1],)).movedim(-1, 1)
        return x + self.scale.view(1, -1, 1, 1, 1) * m
