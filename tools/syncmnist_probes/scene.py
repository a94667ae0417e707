"""SyncMNIST probe: the motion backbone warmed up on whole training videos with dense targets
(per-class box occupancy and box * velocity at the 6 x 6 map, the oracle's maps), then frozen,
then RSTG on pixels; see README.md."""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from common import add_common_arguments, train_and_test_on_pixels
from oracle import oracle_maps

from rstg_fast.data.shards import to_tensor
from rstg_fast.data.syncmnist import generate
from rstg_fast.experiments.syncmnist.model import ConvBackbone


def warm_up(
    bb: torch.nn.Module, channels: int, steps: int, vel_weight: float, seed: int, bs: int, ce: bool = False
) -> None:
    head = torch.nn.Conv2d(channels, 30, 1)
    opt = torch.optim.AdamW(list(bb.parameters()) + list(head.parameters()), lr=3e-3, weight_decay=1e-4)
    t0 = time.time()
    w = torch.ones(30)
    w[10:] = vel_weight
    w = w.view(1, 30, 1, 1, 1)
    run = 0.0
    for step in range(steps):
        batch = generate(bs, 3, "train", seed + 7, stream=step)
        target = oracle_maps(batch, 6, True, False)  # (n, 30, T, 6, 6)
        f = bb(to_tensor(batch.videos))  # (n, C, T, 6, 6)
        b, c, t, h, ww = f.shape
        pred = head(f.transpose(1, 2).reshape(b * t, c, h, ww)).reshape(b, t, 30, h, ww).transpose(1, 2)
        if ce:
            occ_t = target[:, :10]
            bg = (1 - occ_t.sum(1, keepdim=True)).clamp_min(0)
            dist = torch.cat([occ_t, bg], 1)
            dist = dist / dist.sum(1, keepdim=True)
            logits = torch.cat([pred[:, :10], pred[:, 20:21]], 1)
            vel_t = torch.stack([target[:, 10:20].sum(1), target[:, 20:30].sum(1)], 1)
            loss = -(dist * logits.log_softmax(1)).sum(1).mean() + vel_weight * F.mse_loss(pred[:, 10:12], vel_t) * 10
            pred = pred.detach().clone()
            pred[:, :10] = logits.softmax(1)[:, :10]
            pred[:, 10:] = 0
        else:
            loss = ((pred - target) ** 2 * w).mean() * 30
        opt.zero_grad()
        loss.backward()
        opt.step()
        run += loss.item()
        if (step + 1) % 100 == 0:
            with torch.no_grad():
                occ = F.mse_loss(pred[:, :10], target[:, :10]).item() / max(target[:, :10].var().item(), 1e-9)
                vel = F.mse_loss(pred[:, 10:], target[:, 10:]).item() / max(target[:, 10:].var().item(), 1e-9)
            print(
                f"warm-up {step + 1} t={time.time() - t0:.0f}s loss {run / 100:.4f}"
                f" occ rel-mse {occ:.3f} vel rel-mse {vel:.3f}",
                flush=True,
            )
            run = 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(p)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--pretrain", type=int, default=1000)
    p.add_argument("--pretrain-bs", type=int, default=8)
    p.add_argument("--vel-weight", type=float, default=5.0)
    p.add_argument("--ce", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    bb = ConvBackbone(a.channels, motion=True)
    warm_up(bb, a.channels, a.pretrain, a.vel_weight, a.seed, a.pretrain_bs, a.ce)
    train_and_test_on_pixels(bb, a.channels, a, freeze=True)


if __name__ == "__main__":
    main()
