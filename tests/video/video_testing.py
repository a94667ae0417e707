"""Helpers for the video tests: tiny trunks, a functional 2D ResNet oracle, a placement probe."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TINY = {"base_width": 4, "blocks": (1, 1, 1, 1)}


def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so loading/inflating is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def to_2d_state_dict(model_3d: nn.Module) -> dict[str, torch.Tensor]:
    """A torchvision-style (4-D convs) state_dict from a C2D model (every conv has kt == 1)."""
    out = {}
    for k, v in model_3d.state_dict().items():
        if v.dim() == 5:
            assert v.shape[2] == 1, k
            v = v[:, :, 0]
        out[k] = v.clone()
    return out


def resnet2d_features(sd: dict[str, torch.Tensor], x: torch.Tensor, blocks, eps: float = 1e-5) -> torch.Tensor:
    """An independent 2D ResNet (v1.5, eval-mode BN) written from the state_dict alone.

    ``x (B, 3, H, W) -> (B, C5, H/32, W/32)``: the oracle for C2D/I3D loading.
    """

    def bn(t, p):
        return F.batch_norm(t, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                            False, 0.0, eps)

    x = F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for s, n in enumerate(blocks):
        for b in range(n):
            p = f"layer{s + 1}.{b}"
            stride = 2 if (b == 0 and s > 0) else 1
            out = F.relu(bn(F.conv2d(x, sd[p + ".conv1.weight"]), p + ".bn1"))
            out = F.relu(bn(F.conv2d(out, sd[p + ".conv2.weight"], stride=stride, padding=1), p + ".bn2"))
            out = bn(F.conv2d(out, sd[p + ".conv3.weight"]), p + ".bn3")
            if p + ".downsample.0.weight" in sd:
                x = bn(F.conv2d(x, sd[p + ".downsample.0.weight"], stride=stride), p + ".downsample.1")
            x = F.relu(out + x)
    return x


class MapProbe(nn.Module):
    """A stand-in graph block obeying the RSTG-to-map contract (identity at init: a
    zero-initialised per-channel scale on a 1x1x1 conv), recording the shapes it sees."""

    def __init__(self, in_channels: int, readout: str, node_dim: int = 6) -> None:
        super().__init__()
        self.in_channels, self.readout, self.node_dim, self.seen = in_channels, readout, node_dim, []
        self.proj = nn.Conv3d(in_channels, in_channels if readout == "map" else node_dim, 1)
        self.scale = nn.Parameter(torch.zeros(in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == self.in_channels
        self.seen.append(tuple(x.shape))
        if self.readout == "vec":
            return self.proj(x).mean(dim=(2, 3, 4))
        return x + self.scale.view(1, -1, 1, 1, 1) * self.proj(x)
