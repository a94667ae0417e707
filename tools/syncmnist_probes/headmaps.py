"""SyncMNIST probe (session 13): does RSTG learn the relation faster when it also sees the naming
warm-up head's maps, per-class presence and per-class velocity, as the oracle's input was?

The naming warm-up (``pretrain.py``) trains a per-position linear head (10 class logits + a
2-channel step) on the naming backbone; the oracle table (docs/syncmnist.md) found per-class
velocity maps the input RSTG learns the relation from fastest (95.8 % at 3,500 steps). Here the
frozen backbone's features get, per position, ``sigmoid(class logit)`` (10 maps) and that times
the predicted step (20 maps) appended; arms trained one after the other on the same warm-up and
the same batches: ``features`` (the product), ``features+maps``, ``maps`` alone.

    python tools/syncmnist_probes/headmaps.py --warm-up 2000 --steps 3000 --arms features,features+maps
"""

from __future__ import annotations

import argparse
import json

import torch
from common import ProbeNet, add_common_arguments, naming_warm_up, test, train
from torch import nn

from rstg_fast.data.shards import to_tensor
from rstg_fast.experiments.syncmnist.config import SyncMNISTConfig
from rstg_fast.experiments.syncmnist.model import ConvBackbone


class WithHeadMaps(nn.Module):
    """``(B, 1, T, 64, 64)`` -> the frozen backbone's ``(B, C, T, h, w)`` features and/or the
    head's 30 maps: ``sigmoid(class logits)`` (10) and each times the predicted step (20)."""

    def __init__(self, backbone: nn.Module, head: nn.Linear, features: bool, maps: bool) -> None:
        super().__init__()
        self.backbone, self.head, self.features, self.maps = backbone, head, features, maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x)
        out = [f] if self.features else []
        if self.maps:
            m = self.head(f.permute(0, 2, 3, 4, 1))  # (B, T, h, w, 12)
            p = m[..., :10].sigmoid()
            v = (p[..., :, None] * m[..., None, 10:]).flatten(-2)  # (B, T, h, w, 20)
            out.append(torch.cat([p, v], -1).permute(0, 4, 1, 2, 3))
        return torch.cat(out, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(p)
    p.add_argument("--warm-up", type=int, default=2000, help="naming warm-up steps (the product's)")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--augment-copies", type=int, default=0)
    p.add_argument("--arms", default="features,features+maps")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = SyncMNISTConfig.preset_config("quick", channels=a.channels, seed=a.seed, naming_augment=a.augment_copies)
    bb = ConvBackbone(a.channels, motion=True)
    head, seconds, last = naming_warm_up(bb, a.channels, cfg, a.warm_up)
    print(json.dumps(dict(warm_up=a.warm_up, s=seconds, last_hits=last)), flush=True)
    bb.eval().requires_grad_(False)
    head.requires_grad_(False)
    pixels = lambda batch: to_tensor(batch.videos)  # noqa: E731
    for arm in a.arms.split(","):
        torch.manual_seed(a.seed)
        inputs = WithHeadMaps(bb, head, "features" in arm, "maps" in arm)
        print(json.dumps(dict(arm=arm)), flush=True)
        net = ProbeNet(inputs, a.channels * ("features" in arm) + 30 * ("maps" in arm), a)
        test(net, pixels, train(net, pixels, a))


if __name__ == "__main__":
    main()
