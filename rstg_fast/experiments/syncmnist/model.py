"""The paper's SyncMNIST model: a 3-layer conv backbone, RSTG (RSTG-to-vec), a linear classifier.

Backbone, per frame (weights shared over time), for ``64 x 64`` grey frames:

    conv 4x4 stride 2 (1 -> c/2), ReLU, max-pool 2      64 -> 32 -> 16
    conv 3x3 (c/2 -> c), ReLU, max-pool 2               16 -> 8
    conv 3x3 valid (c -> c), ReLU                        8 -> 6

giving the ``(B, c, T, 6, 6)`` volume of the canonical ``syncmnist`` shape (docs/design.md §5).

With ``motion=True`` each frame enters as two channels, the frame and its difference to the
previous frame (zero for the first), so the per-frame features can carry the digits' motion
(docs/syncmnist.md, "What the relation needs": RSTG learns which pair moves together within
a few thousand steps from per-digit velocity features, and at a crawl from positions alone).
Each conv is followed by GroupNorm (per-sample statistics, so data-parallel training equals
one process; batch norm would not).
The strided first layer keeps the backbone cheap on a CPU (about 6x less time than a
stride-1 first layer at 64 x 64, measured on this 2-core machine).
"""

from __future__ import annotations

import torch
from torch import nn

from rstg_fast.data.syncmnist import NUM_CLASSES
from rstg_fast.experiments.syncmnist.config import BACKBONE_DEPTHS
from rstg_fast.modules import RSTG
from rstg_fast.modules.norm import GlobalBatchNorm


def _norm(channels: int) -> nn.GroupNorm:
    # per-sample statistics (unlike batch norm), so DDP equals one process; without a norm the
    # default init shrinks the mostly-black frames to near-constant features and RSTG's
    # output barely depends on the video at the start of training
    # (the convs before it have no bias: the norm would cancel it, leaving a parameter whose
    # gradient is rounding noise, which Adam turns into full-size random steps)
    return nn.GroupNorm(min(8, channels), channels)


def with_difference_to_previous(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B, 2C, T, H, W)``: ``x`` and each frame's difference to the
    previous one (zero for the first), along channels."""
    return torch.cat([x, torch.cat([torch.zeros_like(x[:, :, :1]), x.diff(dim=2)], 2)], 1)


def _conv_block(
    in_channels: int, out_channels: int, kernel: int, *, stride: int = 1, padding: int = 0, pool: bool = False
) -> list[nn.Module]:
    """Conv (no bias: see ``_norm``), GroupNorm, max-pool 2 if ``pool``, ReLU. In
    place: GroupNorm's and max-pool's backward do not read their outputs."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False)
    return [conv, _norm(out_channels), *([nn.MaxPool2d(2)] if pool else []), nn.ReLU(inplace=True)]


class ConvBackbone(nn.Module):
    """``(B, 1, T, 64, 64)`` -> ``(B, channels, T, 6, 6)``; ``motion``: the input of frame ``t`` is
    ``[x_t, x_t - x_{t-1}]``. ``depth`` convs: 3, or 4 with one more 3 x 3 conv (and its norm and
    ReLU) at 8 x 8 before the last (``--naming-depth 4``: a naming warm-up's test-pool names +0.8
    and +0.1 points on two seeds, session 13; docs/syncmnist.md)."""

    def __init__(self, channels: int = 64, motion: bool = False, depth: int = 3) -> None:
        super().__init__()
        if depth not in BACKBONE_DEPTHS:
            raise ValueError(f"depth must be one of {BACKBONE_DEPTHS}, got {depth}")
        half = max(channels // 2, 1)
        self.channels = channels
        self.motion = motion
        # max-pool before ReLU: the two commute exactly (both monotone), values and gradients bit
        # for bit, and the ReLU then runs on a quarter of the map (the frozen forward 1.4x,
        # session 13). The parameterless modules swap places only: the ``state_dict`` keys of
        # every earlier run (one flat Sequential, its indices unchanged).
        layers = [
            *_conv_block(2 if motion else 1, half, 4, stride=2, padding=1, pool=True),
            *_conv_block(half, channels, 3, padding=1, pool=True),
        ]
        if depth == 4:  # at 8 x 8, the size kept
            layers += _conv_block(channels, channels, 3, padding=1)
        layers += _conv_block(channels, channels, 3)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.motion:
            x = with_difference_to_previous(x)
        b, c, t, h, w = x.shape
        # channels-last frames: on a CPU, max-pool in NCHW costs 6x its channels-last time and
        # was 40 % of the frozen backbone's forward (2-core VM: 120 -> 86 ms for 16 videos; the
        # trainer 9.8 -> 13.4 steps/s; docs/syncmnist.md, "Channels-last backbone", session 12)
        frames = x.transpose(1, 2).reshape(b * t, c, h, w).contiguous(memory_format=torch.channels_last)
        y = self.layers(frames)
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


class SideBySide(nn.Module):
    """Two backbones on the same videos, their features concatenated along channels:
    ``(B, 1, T, 64, 64)`` -> ``(B, channels + naming_channels, T, 6, 6)``. ``main`` takes the
    ``--pretrain-steps`` warm-up (motion or digit); ``naming`` is a motion backbone of
    ``naming_channels`` (default ``channels``) that takes the naming warm-up on whole videos
    (``pretrain.py``; docs/syncmnist.md, "Two frozen backbones side by side").
    ``main=False`` (``--no-main-backbone``): the naming backbone alone (``main`` is ``None``),
    ``(B, naming_channels, T, 6, 6)``. ``naming_depth``: the naming backbone's conv layers."""

    def __init__(
        self, channels: int, motion: bool, naming_channels: int = 0, main: bool = True, naming_depth: int = 3
    ) -> None:
        super().__init__()
        self.main = ConvBackbone(channels, motion) if main else None
        self.naming = ConvBackbone(naming_channels or channels, motion=True, depth=naming_depth)
        self.channels = (self.main.channels if main else 0) + self.naming.channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.main is None:
            return self.naming(x)
        return torch.cat([self.main(x), self.naming(x)], 1)


def make_backbone(
    channels: int, motion: bool, naming: bool, naming_channels: int = 0, main: bool = True, naming_depth: int = 3
) -> nn.Module:
    """One ``ConvBackbone``, or with ``naming`` a :class:`SideBySide` pair (its naming backbone
    ``naming_channels`` wide, 0: ``channels``, of ``naming_depth`` convs; ``main=False``: the
    naming backbone alone); its ``.channels`` are its output channels."""
    if naming:
        return SideBySide(channels, motion, naming_channels, main, naming_depth)
    return ConvBackbone(channels, motion)


def batch_standardised_head(dim: int, num_classes: int = NUM_CLASSES) -> nn.Sequential:
    """``(B, dim)`` -> ``(B, num_classes)`` logits: each feature standardised over the batch,
    then linear (why: :class:`SyncMNISTNet`)."""
    return nn.Sequential(GlobalBatchNorm(dim), nn.Linear(dim, num_classes))


class SyncMNISTNet(nn.Module):
    """``(B, 1, T, 64, 64)`` float videos in ``[0, 1]`` -> ``(B, NUM_CLASSES)`` logits (46).

    ``naming``: a second backbone beside the first (:class:`SideBySide`), ``naming_channels``
    wide (0: ``channels``), of ``naming_depth`` convs; ``main_backbone=False``: that naming
    backbone alone. ``rstg_kwargs`` go to :class:`rstg_fast.RSTG` (``node_dim``, ``message_dim``,
    ``iterations``, ``schedule``, ``positional``, ``backend``, ...).
    """

    def __init__(
        self,
        channels: int = 64,
        num_classes: int = NUM_CLASSES,
        motion: bool = False,
        naming: bool = False,
        naming_channels: int = 0,
        main_backbone: bool = True,
        naming_depth: int = 3,
        **rstg_kwargs: object,
    ) -> None:
        super().__init__()
        self.backbone = make_backbone(channels, motion, naming, naming_channels, main_backbone, naming_depth)
        self.rstg = RSTG(self.backbone.channels, readout="vec", **rstg_kwargs)
        dim = self.rstg_dim(rstg_kwargs)
        # RSTG-to-vec's output is mostly a video-independent vector: its spread over a batch is
        # ~1 % of its size at init and ~0.01 % after a little training (measured; the stacked
        # recurrent stages shrink differences between videos), and a plain linear classifier
        # then sat at chance. Standardising each feature over the batch fixes that
        # (docs/syncmnist.md); a LayerNorm over features does not, it keeps the common part.
        self.classifier = batch_standardised_head(dim, num_classes)

    @staticmethod
    def rstg_dim(rstg_kwargs: dict) -> int:
        return int(rstg_kwargs.get("node_dim", 512))

    def forward(self, videos: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """``features``: the backbone's output for ``videos``, when computed already (a frozen
        backbone, run ahead in the trainer's data thread)."""
        return self.classifier(self.rstg(self.backbone(videos) if features is None else features))


class ConvLSTMNet(nn.Module):
    """The paper's Conv+LSTM baseline: the same backbone, its features averaged over space, an
    LSTM over time, the last hidden state to the same batch-standardised linear classifier.
    ``(B, 1, T, 64, 64)`` -> ``(B, NUM_CLASSES)``. ``input_norm="batch"`` standardises the
    averaged features (as RSTG's ``input_norm`` does its input), so the two models differ only
    in what lies between the backbone and the classifier."""

    def __init__(
        self,
        channels: int = 64,
        num_classes: int = NUM_CLASSES,
        motion: bool = False,
        hidden: int = 512,
        input_norm: str = "batch",
        naming: bool = False,
        naming_channels: int = 0,
        main_backbone: bool = True,
        naming_depth: int = 3,
    ) -> None:
        super().__init__()
        self.backbone = make_backbone(channels, motion, naming, naming_channels, main_backbone, naming_depth)
        features = self.backbone.channels
        self.input_norm = GlobalBatchNorm(features) if input_norm == "batch" else nn.Identity()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.classifier = batch_standardised_head(hidden, num_classes)

    def forward(self, videos: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        f = (self.backbone(videos) if features is None else features).mean((3, 4))  # (B, C, T)
        b, c, t = f.shape
        f = self.input_norm(f.transpose(1, 2).reshape(b * t, c)).reshape(b, t, c)
        _, (h, _) = self.lstm(f)
        return self.classifier(h[-1])
