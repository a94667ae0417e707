"""SyncMNIST probe: the motion backbone warmed up on whole training videos with per-digit
targets through attention pooling (multi-label presence from max over space; each present
digit's step from its class-attention-weighted mean), then frozen, then RSTG; see README.md."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from common import add_common_arguments, single_digit_warm_up, train_and_test_on_pixels
from oracle import oracle_maps

from rstg_fast.data.shards import to_tensor
from rstg_fast.data.syncmnist import MAX_STEP, generate
from rstg_fast.experiments.syncmnist.model import ConvBackbone


class Beside(torch.nn.Module):
    """Two backbones on the same videos, their features concatenated along channels."""

    def __init__(self, first: torch.nn.Module, second: torch.nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.first(x), self.second(x)], 1)


def warm_up(bb, channels, steps, vel_weight, seed, bs, lr, dense=False):
    head = torch.nn.Conv2d(channels, 12, 1)
    opt = torch.optim.AdamW(list(bb.parameters()) + list(head.parameters()), lr=lr, weight_decay=1e-4)
    t0, run, hits, err = time.time(), 0.0, 0.0, 0.0
    for step in range(steps):
        batch = generate(bs, 3, "train", seed + 7, stream=step)
        n = batch.digits.shape[0]
        f = bb(to_tensor(batch.videos))[:, :, 1:]  # frames with a previous one: (n, C, 9, h, w)
        b, c, t, h, w = f.shape
        maps = head(f.transpose(1, 2).reshape(b * t, c, h, w)).flatten(2)  # (bt, 12, hw)
        cls = maps[:, :10]
        presence = torch.zeros(n, 10)
        presence[np.arange(n)[:, None], torch.from_numpy(batch.digits)] = 1
        presence = presence.repeat_interleave(t, 0)
        loss_cls = F.binary_cross_entropy_with_logits(cls.amax(2), presence)
        if dense:  # class-agnostic velocity at every cell: sum over digits of box * step
            vel = oracle_maps(batch, h, True, True)[:, 10:12, 1:]  # (n, 2, 9, h, w)
            vel_map = maps[:, 10:].reshape(b, t, 2, h * w).transpose(1, 2).reshape(b, 2, t, h, w)
            loss_step = F.mse_loss(vel_map, vel) * 50
            shown = loss_step.item()  # logged as "vel mse*50"
        else:  # each present digit's step through its class attention
            step_pred = torch.einsum("bcs,bds->bcd", cls.softmax(2), maps[:, 10:])  # (bt, 10, 2)
            steps_true = np.diff(batch.coords, axis=1) / MAX_STEP  # (n, 9, k, 2)
            target = torch.zeros(n, t, 10, 2)
            rows = np.arange(n)[:, None, None]
            target[rows, np.arange(t)[None, :, None], batch.digits[:, None, :]] = torch.from_numpy(steps_true).float()
            mask = presence[:, :, None]
            loss_step = ((step_pred - target.reshape(b * t, 10, 2)) ** 2 * mask).sum() / mask.sum() / 2
            shown = loss_step.item() ** 0.5 * MAX_STEP  # logged as "step rmse", canvas pixels
        loss = loss_cls * 10 + vel_weight * loss_step
        opt.zero_grad()
        loss.backward()
        opt.step()
        run += loss.item()
        hits += presence.gather(1, cls.amax(2).topk(3, 1).indices).mean().item()
        err += shown
        if (step + 1) % 100 == 0:
            measure = f"vel mse*50 {err / 100:.4f}" if dense else f"step rmse {err / 100:.2f}px"
            print(f"warm-up {step + 1} t={time.time() - t0:.0f}s loss {run / 100:.4f} top3 {hits / 100:.3f} {measure}",
                  flush=True)  # fmt: skip
            run, hits, err = 0.0, 0.0, 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(p)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--single", type=int, default=0, help="single-digit motion warm-up steps first")
    p.add_argument("--pretrain", type=int, default=1000)
    p.add_argument("--pretrain-bs", type=int, default=8)
    p.add_argument("--pretrain-lr", type=float, default=3e-3)
    p.add_argument("--vel-weight", type=float, default=5.0)
    p.add_argument("--dense", action="store_true", help="dense class-agnostic velocity regression")
    p.add_argument(
        "--beside",
        type=int,
        default=0,
        help="a second frozen backbone, warmed up by the single-digit motion warm-up for this many steps,"
        " its features concatenated with this one's",
    )
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    bb = ConvBackbone(a.channels, motion=True)
    if a.single:
        single_digit_warm_up(bb, a.channels, a.single, a.seed)
    warm_up(bb, a.channels, a.pretrain, a.vel_weight, a.seed, a.pretrain_bs, a.pretrain_lr, a.dense)
    if a.beside:
        motion = ConvBackbone(a.channels, motion=True)
        single_digit_warm_up(motion, a.channels, a.beside, a.seed)
        bb = Beside(bb, motion)
    train_and_test_on_pixels(bb, a.channels * (2 if a.beside else 1), a, freeze=True)


if __name__ == "__main__":
    main()
