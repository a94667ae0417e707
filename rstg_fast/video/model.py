"""C2D / I3D ResNet-50 classifiers with RSTG blocks placed by a :class:`Placement`.

``state_dict`` keys: the trunk's are torchvision's ResNet-50 names (``conv1.weight``,
``layer3.2.bn1.running_mean``, ``fc.weight`` ...), RSTG-to-map blocks live under
``graphs.<stage>.`` and the RSTG-to-vec head under ``vec_graph.``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rstg_fast.video.placement import Placement, parse_placement
from rstg_fast.video.resnet3d import RESNET50_BLOCKS, STAGE_NAMES, VideoResNet

# (in_channels, readout) -> module; readout is "map" or "vec".
GraphFactory = Callable[[int, str], nn.Module]


def rstg_factory(**rstg_kwargs: Any) -> GraphFactory:
    """A factory building ``rstg_fast.RSTG(in_channels, readout=..., **rstg_kwargs)``.

    Imported lazily so the backbone works on its own (e.g. for weight conversion).
    """
    if "readout" in rstg_kwargs or "in_channels" in rstg_kwargs:
        raise ValueError("rstg_kwargs must not set in_channels or readout: the placement decides them")

    def build(in_channels: int, readout: str) -> nn.Module:
        from rstg_fast import RSTG  # noqa: PLC0415 (lazy: RSTG pulls in the op backends)

        return RSTG(in_channels, readout=readout, **rstg_kwargs)

    return build


class VideoClassifier(VideoResNet):
    """C2D or I3D ResNet(-50) + RSTG, ``(B, 3, T, H, W) -> (B, num_classes)`` logits.

    Args:
        arch, base_width, blocks, pool2, stride_in_1x1: the trunk, see :class:`VideoResNet`.
        num_classes: 174 for Something-Something v1.
        placement: where RSTG goes (:class:`Placement` or its text, e.g. ``"res3-4"``).
        rstg: keyword arguments of ``rstg_fast.RSTG`` (``node_dim``, ``backend``, ...),
            shared by every block; ignored when ``graph_factory`` is given.
        graph_factory: ``(in_channels, readout) -> nn.Module`` to build each block
            (tests inject their own; the default builds ``rstg_fast.RSTG``).
        dropout: before the classifier (0.5 in Non-local).

    An RSTG-to-map block returns ``(B, C, T, H, W)`` like its input and is the identity
    at initialisation (docs/design.md §1), so it can be dropped into a pretrained trunk.
    RSTG-to-vec returns ``(B, node_dim)``; the classifier then reads ``node_dim`` features,
    taken from the block's ``node_dim`` attribute (or ``rstg["node_dim"]``, default 512).
    """

    def __init__(
        self,
        arch: str = "i3d",
        num_classes: int = 174,
        placement: Placement | str = "none",
        *,
        base_width: int = 64,
        blocks: Sequence[int] = RESNET50_BLOCKS,
        pool2: bool = False,
        stride_in_1x1: bool = False,
        rstg: Mapping[str, Any] | None = None,
        graph_factory: GraphFactory | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(arch, base_width, blocks, pool2, stride_in_1x1)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.placement = parse_placement(placement)
        factory = graph_factory or rstg_factory(**dict(rstg or {}))
        channels = dict(zip(STAGE_NAMES, self.stage_channels, strict=True))
        self.graphs = nn.ModuleDict({s: factory(channels[s], "map") for s in self.placement.maps})
        self.vec_graph: nn.Module | None = None
        feat = self.out_channels
        if self.placement.vec:
            self.vec_graph = factory(self.out_channels, "vec")
            feat = int(getattr(self.vec_graph, "node_dim", (rstg or {}).get("node_dim", 512)))
        self.dropout = nn.Dropout(float(dropout))
        self.fc = nn.Linear(feat, int(num_classes))
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk with the map blocks: ``(B, 3, T, H, W) -> (B, C5, T', H/32, W/32)``."""
        x = self.stem(x)
        for name in STAGE_NAMES:
            x = self.stage(name)(x)
            if name in self.graphs:
                x = self.graphs[name](x)
            x = self.after_stage(name, x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W) -> (B, num_classes)`` logits."""
        x = self.forward_features(x)
        x = self.vec_graph(x) if self.vec_graph is not None else x.mean(dim=(2, 3, 4))
        return self.fc(self.dropout(x))


def build_video_model(
    arch: str = "i3d", num_classes: int = 174, placement: Placement | str = "none", **kwargs: Any
) -> VideoClassifier:
    """Shorthand for :class:`VideoClassifier` (the full ResNet-50 unless widths are given)."""
    return VideoClassifier(arch, num_classes, placement, **kwargs)
