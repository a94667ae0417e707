"""Which frozen backbone's features does RSTG need? (session 9 probe)

Takes the two frozen, warmed-up backbones of a run's checkpoint (motion and naming), trains a
fresh RSTG and head (the run's widths) on the features of ``--features both`` (the product),
``naming`` or ``motion`` alone, on fresh training videos (``common.train``: constant lr after a
200-step ramp) for ``--steps`` steps, and prints the windowed accuracy / named /
pair-given-digits and the test line. The naming warm-up also learns each digit's step, so the
naming backbone alone may carry the motion that the relation is read from; if it does, its
data-thread time (the training step's bottleneck with a 64-channel naming backbone) could go
to a wider naming backbone instead.

    python tools/syncmnist_probes/features.py --checkpoint runs/record9/checkpoint.pt --features naming --steps 4000
"""

from __future__ import annotations

import argparse

import torch
from common import add_loop_arguments, test, train
from torch import nn

from rstg_fast.data.shards import to_tensor
from rstg_fast.experiments.syncmnist.model import batch_standardised_head
from rstg_fast.experiments.syncmnist.train import load_trained, rstg_kwargs
from rstg_fast.modules import RSTG


class FrozenFeatures(nn.Module):
    """A fresh RSTG-to-vec and head (the run's settings) on the chosen frozen backbones."""

    def __init__(self, checkpoint: str, features: str) -> None:
        super().__init__()
        trained, cfg = load_trained(checkpoint)
        parts = {"both": [trained.backbone], "naming": [trained.backbone.naming], "motion": [trained.backbone.main]}
        self.backbones = nn.ModuleList(parts[features]).requires_grad_(False).eval()
        channels = sum(b.channels for b in self.backbones)
        torch.manual_seed(0)
        self.rstg = RSTG(channels, readout="vec", **rstg_kwargs(cfg))
        self.classifier = batch_standardised_head(cfg.node_dim)

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = torch.cat([b(videos) for b in self.backbones], 1)
        return self.classifier(self.rstg(features))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--features", choices=("both", "naming", "motion"), default="both")
    add_loop_arguments(p, minutes=60, seed=7)
    p.set_defaults(steps=4000)
    a = p.parse_args()
    torch.set_num_threads(1)
    model = FrozenFeatures(a.checkpoint, a.features)
    pixels = lambda batch: to_tensor(batch.videos)  # noqa: E731
    steps = train(model, pixels, a)
    print(f"features {a.features}", flush=True)
    test(model, pixels, steps, videos=1024)


if __name__ == "__main__":
    main()
