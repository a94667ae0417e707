"""Does an auxiliary "which digits are present" loss on RSTG's output help it name the digits?
(session 7 probe)

The session-7 run of record names the digits of 89.4 % of its test videos although its frozen
backbones recognise single digits at ~97 %, and videos whose digits never touch are named no
better than with session 6's weaker backbones: the loss is after the backbones. This takes the
two frozen, warmed-up backbones from a run's checkpoint, trains a fresh RSTG and head on fresh
training videos (``common.train``: constant lr after a 200-step ramp), with ``--aux W`` adding
``W`` x a multi-label presence loss of a linear head on RSTG's output (thrown away at test),
and prints the windowed accuracy / named / pair-given-digits and the test line.

    python tools/syncmnist_probes/aux.py --checkpoint runs/record7/checkpoint.pt --aux 1 --minutes 15
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from common import add_loop_arguments, test, train
from torch import nn

from rstg_fast.data.shards import to_tensor
from rstg_fast.experiments.syncmnist.pretrain import digit_presence
from rstg_fast.experiments.syncmnist.train import build_model, load_trained


class KeepsRSTGOutput(nn.Module):
    """The run's model with a fresh RSTG and head on its frozen backbones; keeps RSTG's output
    of the last forward pass for the presence head."""

    def __init__(self, checkpoint: str) -> None:
        super().__init__()
        trained, cfg = load_trained(checkpoint)
        torch.manual_seed(0)
        self.net = build_model(cfg)
        self.net.backbone.load_state_dict(trained.backbone.state_dict())
        self.net.backbone.requires_grad_(False)
        self.presence = nn.Linear(cfg.node_dim, 10)
        self.vec = None

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.net.backbone(videos)
        self.vec = self.net.rstg(features)
        return self.net.classifier(self.vec)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--aux", type=float, default=0.0, help="weight of the presence loss on RSTG's output")
    add_loop_arguments(p, minutes=15, seed=7)
    a = p.parse_args()
    torch.set_num_threads(1)
    model = KeepsRSTGOutput(a.checkpoint)

    def presence_loss(batch) -> torch.Tensor:
        return a.aux * F.binary_cross_entropy_with_logits(model.presence(model.vec), digit_presence(batch.digits))

    pixels = lambda batch: to_tensor(batch.videos)  # noqa: E731
    steps = train(model, pixels, a, presence_loss if a.aux else None)
    print(f"aux {a.aux}", flush=True)
    test(model, pixels, steps, videos=1024)


if __name__ == "__main__":
    main()
