"""Does the task's own gradient name the digits better? (session 14 probe)

A run of record names its test videos' digits about as well as its frozen naming backbone's
warm-up does (docs/syncmnist.md): the names are set before RSTG trains. This takes a trained
``--no-main-backbone`` run, scores it on test-pool videos, trains it on for ``--steps`` steps of
fresh training videos (``common.train``: AdamW at ``--lr`` after a 200-step ramp, clipping at
5) with the naming backbone's last ``--tune`` convs (and their GroupNorms) trainable beside RSTG
and its head, and scores it again. ``--tune 0`` keeps the backbone frozen, as the product does:
the arm to compare with at the same steps and learning rate.

    python tools/syncmnist_probes/tune.py --checkpoint runs/record14/checkpoint.pt --tune 1 --steps 3000
"""

from __future__ import annotations

import argparse

import torch
from common import add_loop_arguments, test, train
from torch import nn

from rstg_fast.data.shards import to_tensor
from rstg_fast.experiments.syncmnist.train import load_trained


class NoGrad(nn.Sequential):
    """Layers run without autograd: the frozen front of the naming backbone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return super().forward(x)


def tuned_run(checkpoint: str, tune: int) -> nn.Module:
    """A trained ``--no-main-backbone`` run, trainable but for its naming backbone's layers
    before the last ``tune`` convs, which run frozen under ``no_grad`` (the product's
    ``ConvBackbone.forward`` around them)."""
    net, _ = load_trained(checkpoint)
    backbone = net.backbone
    if getattr(backbone, "main", None) is not None or not hasattr(backbone, "naming"):
        raise SystemExit(f"--checkpoint {checkpoint}: not a --no-main-backbone run")
    layers = list(backbone.naming.layers)
    convs = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d)]
    if not 0 <= tune <= len(convs):
        raise SystemExit(f"--tune must be in [0, {len(convs)}], got {tune}")
    cut = convs[-tune] if tune else len(layers)
    net.train().requires_grad_(True)
    backbone.requires_grad_(False)
    backbone.naming.layers = nn.Sequential(NoGrad(*layers[:cut]), *layers[cut:])
    nn.Sequential(*layers[cut:]).requires_grad_(True)
    return net


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--tune", type=int, default=1, help="the naming backbone's last convs to train (0: none)")
    p.add_argument("--videos", type=int, default=4096, help="test videos scored before and after")
    add_loop_arguments(p, minutes=60, seed=7)
    p.set_defaults(steps=3000, lr=1e-4)
    a = p.parse_args()
    torch.set_num_threads(1)
    model = tuned_run(a.checkpoint, a.tune)
    pixels = lambda batch: to_tensor(batch.videos)  # noqa: E731
    test(model, pixels, 0, videos=a.videos)
    model.train()
    steps = train(model, pixels, a)
    print(f"tune {a.tune} lr {a.lr}", flush=True)
    test(model, pixels, steps, videos=a.videos)


if __name__ == "__main__":
    main()
