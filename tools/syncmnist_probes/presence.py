"""How well can frozen backbones name a video's digits? (session 8 probe)

Prints, on videos of the test digit pool, the share whose top-k scored digits (k = the
video's digit count) are all present ("all_present") and whose top-2 are both present.
With ``--warm-up S`` it warms up a fresh naming backbone of ``--channels`` channels for S
steps of the product's naming warm-up (``pretrain.py``) and scores it with the warm-up's own
head (per position, max over space, mean over time), on test-pool videos and on unseen
training-pool videos (the gap is the 4,000-digit training pool's share of the error): warm-ups
compared on test digits rather than on their training-pool running hit rate. With ``--steps
N`` (and with ``--checkpoint``, a trained run's frozen ``main`` and ``naming`` backbones) it
also trains a fresh linear head per feature set for N steps of 32 training-pool videos (same
pooling, AdamW 3e-3 on a cosine to 0); at 800 steps two such heads differed by 10 points on
the same backbone, so those rows are rough. ``--augment-copies K`` (session 10) warms up with the
product's ``--naming-augment K`` (the 4,000 training digits and K random affine copies of
each): does augmentation lift the names on the test pool? ``--deeper`` (the product's
``--naming-depth 4``) and ``--last-channels N`` (session 13): is the naming backbone short of
depth or of width?

    python tools/syncmnist_probes/presence.py --warm-up 6000 --channels 64 --steps 0 --videos 2048
    python tools/syncmnist_probes/presence.py --warm-up 15000 --channels 64 --steps 0 --videos 2048 --augment-copies 15
    python tools/syncmnist_probes/presence.py --checkpoint runs/record7/checkpoint.pt
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import naming_warm_up
from torch import nn

from rstg_fast.data.shards import to_tensor
from rstg_fast.data.syncmnist import SyncMNISTBatch, generate
from rstg_fast.experiments.syncmnist.config import SyncMNISTConfig
from rstg_fast.experiments.syncmnist.model import ConvBackbone, _norm
from rstg_fast.experiments.syncmnist.pretrain import digit_presence, warm_up_lr
from rstg_fast.experiments.syncmnist.train import load_trained

PROBE_STREAMS = 1 << 41  # training-pool videos no run or warm-up draws


def trained_backbones(checkpoint: str) -> tuple[dict[str, nn.Module], SyncMNISTConfig]:
    """A trained run's frozen backbones by name, and the configuration their videos follow."""
    model, cfg = load_trained(checkpoint)
    bb = model.backbone
    if not hasattr(bb, "naming"):
        return {"main": bb}, cfg
    return {k: v for k, v in (("main", bb.main), ("naming", bb.naming)) if v is not None}, cfg


def warmed_up_naming(a: argparse.Namespace) -> tuple[ConvBackbone, nn.Linear, SyncMNISTConfig]:
    """A fresh naming backbone after ``a.warm_up`` steps of the product's naming warm-up, its
    warm-up head (10 classes + the step) and the configuration it used."""
    cfg = SyncMNISTConfig.preset_config("quick", channels=a.channels, seed=a.seed, naming_augment=a.augment_copies)
    torch.manual_seed(a.seed)
    naming = ConvBackbone(a.channels, motion=True, depth=4 if a.deeper else 3)
    out = a.last_channels or a.channels
    if a.last_channels:  # the last conv (at 8 x 8 -> 6 x 6) and its norm this wide
        parts = list(naming.layers)
        parts[-3:-1] = [nn.Conv2d(a.channels, out, 3, bias=False), _norm(out)]
        naming.layers = nn.Sequential(*parts)
    head, seconds, last = naming_warm_up(naming, out, cfg, a.warm_up)
    print(json.dumps(dict(warm_up=a.warm_up, channels=a.channels, deeper=a.deeper, out=out, s=seconds, last_hits=last)))
    return naming, head, cfg


def features(backbones: dict[str, nn.Module], batch: SyncMNISTBatch) -> dict[str, torch.Tensor]:
    """Each backbone's ``(B, T, HW, C)`` features, and all of them side by side."""
    x = to_tensor(batch.videos)
    with torch.no_grad():
        out = {k: b(x).permute(0, 2, 3, 4, 1).flatten(2, 3) for k, b in backbones.items()}
    if len(out) > 1:
        out["both"] = torch.cat(list(out.values()), -1)
    return out


def digit_scores(head: Callable[[torch.Tensor], torch.Tensor], feats: torch.Tensor) -> torch.Tensor:
    """``(B, T, HW, C)`` -> ``(B, 10)``: per position, max over space, mean over time (the naming
    warm-up's pooling)."""
    return head(feats)[..., :10].amax(2).mean(1)


def rates(backbones: dict, heads: dict, cfg: SyncMNISTConfig, videos: int, split: str = "test") -> dict[str, dict]:
    """Per head, on ``videos`` videos of ``split`` (``train``: training-pool videos no run,
    warm-up or probe head draws): the share whose top-k scored digits (k = the video's digit
    count) are all present, and whose top-2 are both present."""
    all_k, top2 = {k: 0.0 for k in heads}, {k: 0.0 for k in heads}
    bs = 128
    for c in range(-(-videos // bs)):
        stream = c if split == "test" else 2 * PROBE_STREAMS + c
        batch = generate(min(bs, videos - c * bs), cfg.digits, split, cfg.seed, stream=stream, source=cfg.source)
        feats, target = features(backbones, batch), digit_presence(batch.digits)
        for k, head in heads.items():
            with torch.no_grad():
                scores = digit_scores(head, feats[k])
            all_k[k] += (target.gather(1, scores.topk(cfg.digits, 1).indices).sum(1) == cfg.digits).sum().item()
            top2[k] += (target.gather(1, scores.topk(2, 1).indices).sum(1) == 2).sum().item()
    return {
        k: {"videos": videos, "all_present": round(all_k[k] / videos, 4), "top2_present": round(top2[k] / videos, 4)}
        for k in heads
    }


def linear_probe_heads(backbones: dict, cfg: SyncMNISTConfig, steps: int) -> dict[str, nn.Linear]:
    """A fresh linear presence head per feature set, trained ``steps`` steps of 32 videos on the
    frozen features (AdamW on the warm-ups' cosine)."""
    one = generate(1, cfg.digits, "train", cfg.seed, stream=PROBE_STREAMS, source=cfg.source)
    heads = {k: nn.Linear(f.shape[-1], 10) for k, f in features(backbones, one).items()}
    opts = {k: torch.optim.AdamW(h.parameters()) for k, h in heads.items()}
    for step in range(steps):
        batch = generate(32, cfg.digits, "train", cfg.seed, stream=PROBE_STREAMS + step, source=cfg.source)
        feats, target = features(backbones, batch), digit_presence(batch.digits)
        for k, head in heads.items():
            for group in opts[k].param_groups:
                group["lr"] = warm_up_lr(step, steps)
            loss = F.binary_cross_entropy_with_logits(digit_scores(head, feats[k]), target)
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
    return heads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="")
    p.add_argument("--warm-up", type=int, default=6000, help="without --checkpoint: naming warm-up steps")
    p.add_argument("--channels", type=int, default=32, help="without --checkpoint: the naming backbone's channels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=800, help="steps of the linear probe (32 videos each; 0: none)")
    p.add_argument("--videos", type=int, default=1024, help="test videos")
    p.add_argument("--deeper", action="store_true", help="a naming backbone of 4 convs (--naming-depth 4)")
    p.add_argument("--last-channels", type=int, default=0, help="the naming backbone's last conv this wide")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--augment-copies", type=int, default=0, help="the warm-up's --naming-augment")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.checkpoint:
        backbones, cfg = trained_backbones(a.checkpoint)
    else:
        naming, head, cfg = warmed_up_naming(a)
        backbones = {"naming": naming}
        for split in ("test", "train"):
            rate = rates(backbones, {"naming": head}, cfg, a.videos, split)["naming"]
            print(json.dumps({"features": "naming, the warm-up's own head", "split": split, **rate}))
    for b in backbones.values():
        b.eval().requires_grad_(False)
    if a.steps:
        for k, rate in rates(backbones, linear_probe_heads(backbones, cfg, a.steps), cfg, a.videos).items():
            print(json.dumps({"features": f"{k}, a linear probe ({a.steps} steps)", **rate}))


if __name__ == "__main__":
    main()
