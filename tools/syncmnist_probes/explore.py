"""SyncMNIST probes on pixels: a backbone (the project's, a motion one, or two variants), its
warm-up, optional coordinate moments / temporal difference, then RSTG; see README.md."""

from __future__ import annotations

import argparse

import torch
from common import add_common_arguments, single_digit_warm_up, train_and_test_on_pixels
from torch import nn

from rstg_fast.experiments.syncmnist.model import ConvBackbone


class PerFrame(nn.Module):
    """``layers`` applied to every frame: ``(B, C, T, H, W)`` -> ``(B, C', T, H', W')``."""

    def __init__(self, layers: nn.Sequential) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = self.layers(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


def conv(cin: int, cout: int, *args) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, *args, bias=False), nn.GroupNorm(min(8, cout), cout), nn.ReLU()]


def backbone(name: str, c: int) -> nn.Module:
    h = c // 2
    if name in ("quick", "motion"):  # the project's (motion: [frame, frame difference] in)
        return ConvBackbone(c, motion=name == "motion")
    if name == "fine":  # no max-pool: a 16 x 16 map
        return PerFrame(
            nn.Sequential(*conv(1, h, 4, 2, 1), *conv(h, c, 3, 1, 1), nn.AvgPool2d(2), *conv(c, c, 3, 1, 1))
        )
    if name == "pool":  # stride-1 first conv, two max-pools
        return PerFrame(
            nn.Sequential(
                *conv(1, h, 3, 1, 1), nn.MaxPool2d(2), *conv(h, c, 3, 1, 1), nn.MaxPool2d(2), *conv(c, c, 3, 1, 1)
            )
        )
    raise ValueError(f"--backbone must be quick, motion, fine or pool, got {name!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(p)
    p.add_argument("--backbone", default="quick", help="quick, motion, fine or pool")
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--pretrain", type=int, default=300, help="warm-up steps (motion: the two-frame warm-up)")
    p.add_argument("--freeze", action="store_true", help="freeze the backbone after its warm-up")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    bb = backbone(a.backbone, a.channels)
    if a.pretrain:
        single_digit_warm_up(bb, a.channels, a.pretrain, a.seed)
    train_and_test_on_pixels(bb, a.channels, a, freeze=a.freeze)


if __name__ == "__main__":
    main()
