"""ResNet-50 for video, in plain PyTorch: C2D (2D per frame) and I3D (inflated 3x1x1).

Layout is the Non-local paper's ResNet-50 video baseline (Wang et al., CVPR 2018, Table 1)
with the temporal kernels of its I3D_{3x1x1} variant, as also used by "Videos as
Space-Time Region Graphs" (Wang & Gupta 2018) and by RSTG:

===========  ======================  ==========================  =======================
stage        C2D kernel (T x H x W)   I3D kernel                  output for 32x224x224
===========  ======================  ==========================  =======================
conv1        1x7x7, stride 1,2,2      5x7x7, stride 1,2,2         32 x 112 x 112
pool1        max 3x3x3, stride 2,2,2  same                        16 x 56 x 56
res2 (x3)    bottleneck               3x1x1 on conv1 of every     16 x 56 x 56
                                      block
res3 (x4)    bottleneck               3x1x1 on blocks 0, 2        16 x 28 x 28
res4 (x6)    bottleneck               3x1x1 on blocks 0, 2, 4     16 x 14 x 14
res5 (x3)    bottleneck               3x1x1 on block 1            16 x 7 x 7
head         mean over T, H, W; dropout; fc
===========  ======================  ==========================  =======================

Two deliberate differences from Non-local's Table 1, both written down in docs/video.md:
the spatial stride of a stage sits on the 3x3 conv (ResNet "v1.5", as torchvision's
ImageNet weights expect; ``stride_in_1x1=True`` gives Non-local's v1) and pool2 (the
3x1x1 temporal max pool after res2) is off by default (``pool2=True`` restores it), so
res3/res4 keep 16 time steps for a 32-frame clip: the graph runs on 16 steps, as in the
paper. C2D is the same network with every temporal kernel 1, so its only temporal mixing
is pool1's max (and pool2's, if on) and the final mean.

All convs are ``Conv3d`` on ``(B, C, T, H, W)``; parameter names equal torchvision's
ResNet-50 (``layer1.0.conv1.weight`` ...), with 5-D conv weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

STAGE_NAMES = ("res2", "res3", "res4", "res5")
RESNET50_BLOCKS = (3, 4, 6, 3)
ARCHS = ("c2d", "i3d")


def temporal_kernel(arch: str, stage: int, block: int) -> int:
    """Temporal size of the first 1x1 conv of ``block`` in ``stage`` (0 = res2 .. 3 = res5).

    I3D_{3x1x1} of Non-local: res2 every block, res3/res4 even blocks, res5 odd blocks.
    """
    if arch == "c2d":
        return 1
    if stage == 0:
        return 3
    if stage in (1, 2):
        return 3 if block % 2 == 0 else 1
    return 3 if block % 2 == 1 else 1


class Bottleneck(nn.Module):
    """1x1 (or kt x1x1) -> 3x3 -> 1x1 x4, plus the shortcut.

    The spatial stride sits on the 3x3 conv (ResNet v1.5, torchvision) or, with
    ``stride_in_1x1=True``, on the first conv (ResNet v1: Caffe2 / Non-local checkpoints).
    Shapes: ``(B, in_ch, T, H, W) -> (B, 4 * planes, T, H / stride, W / stride)``.
    """

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, kt: int, stride_in_1x1: bool = False) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        s1, s2 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv3d(in_ch, planes, (kt, 1, 1), stride=(1, s1, s1), padding=(kt // 2, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), stride=(1, s2, s2), padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_ch, out_ch, 1, stride=(1, stride, stride), bias=False), nn.BatchNorm3d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class VideoResNet(nn.Module):
    """The convolutional trunk (no head): stem, pool1, res2..res5.

    Args:
        arch: ``"c2d"`` or ``"i3d"``.
        base_width: channels of conv1 and res2's bottleneck width (64 for ResNet-50); every
            stage doubles it. Small values make tests fast.
        blocks: blocks per stage, ``(3, 4, 6, 3)`` for ResNet-50.
        pool2: add Non-local's 3x1x1 temporal max pool (stride 2) after res2.
        stride_in_1x1: spatial stride on each stage's first 1x1 conv (ResNet v1, for
            Caffe2 / Non-local weights) instead of the 3x3 (v1.5, torchvision weights).
        in_channels: input channels (3 for RGB).

    ``stage_channels[i]`` is the output width of ``STAGE_NAMES[i]`` (256..2048 for R-50).
    """

    def __init__(
        self,
        arch: str = "i3d",
        base_width: int = 64,
        blocks: Sequence[int] = RESNET50_BLOCKS,
        pool2: bool = False,
        stride_in_1x1: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
        blocks = tuple(int(b) for b in blocks)
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"blocks must be 4 positive integers (res2..res5), got {blocks}")
        if int(base_width) < 1:
            raise ValueError(f"base_width must be >= 1, got {base_width}")
        self.arch, self.base_width, self.blocks, self.pool2 = arch, int(base_width), blocks, bool(pool2)
        self.stride_in_1x1 = bool(stride_in_1x1)
        w = self.base_width
        kt = 5 if arch == "i3d" else 1
        self.conv1 = nn.Conv3d(in_channels, w, (kt, 7, 7), stride=(1, 2, 2), padding=(kt // 2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        self.pool2_layer = nn.MaxPool3d((3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)) if pool2 else None
        in_ch, self.stage_channels = w, []
        for s, n in enumerate(blocks):
            planes = w * 2**s
            layer = []
            for b in range(n):
                stride = 2 if (b == 0 and s > 0) else 1
                layer.append(Bottleneck(in_ch, planes, stride, temporal_kernel(arch, s, b), self.stride_in_1x1))
                in_ch = planes * Bottleneck.expansion
            setattr(self, f"layer{s + 1}", nn.Sequential(*layer))
            self.stage_channels.append(in_ch)
        self.out_channels = in_ch
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stage(self, name: str) -> nn.Sequential:
        """The ``nn.Sequential`` of ``"res2".."res5"``."""
        return getattr(self, f"layer{STAGE_NAMES.index(name) + 1}")

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W) -> (B, base_width, ceil(T / 2), H / 4, W / 4)``."""
        if x.dim() != 5:
            raise ValueError(f"x must have shape (B, C, T, H, W), got {tuple(x.shape)}")
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def after_stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Extra trunk ops between stages (pool2 after res2 when enabled)."""
        if name == "res2" and self.pool2_layer is not None:
            return self.pool2_layer(x)
        return x
