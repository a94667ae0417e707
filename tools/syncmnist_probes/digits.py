"""How well can a per-frame backbone name one digit of the *test* pool? (session 7 probe)

The session-6 run of record names the digits of a video only 87.6 % of the time, about the
square of its motion warm-up's single-digit accuracy (93.6 %). This trains a backbone on the
single-digit task of ``pretrain.py`` (one train-pool digit pasted on the 100 x 100 canvas,
resized to 64 x 64; max over space, linear to 10) and measures it on digits of the disjoint
test pool, so variants (width, resolution, augmentation, steps) can be compared.

    python tools/syncmnist_probes/digits.py --arch base --channels 32 --steps 2000 --augment 1

``--elastic S`` (session 14) also bends each training digit by a random smooth displacement
field after the affine move; it did not name test-pool digits better (docs/syncmnist.md), so it
stays here and not in the product.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from explore import PerFrame, conv
from torch import nn

from rstg_fast.data.augment import affine_digits
from rstg_fast.data.mnist import digit_pool
from rstg_fast.data.syncmnist import CANVAS, DIGIT, paste_digits, resize_frames
from rstg_fast.experiments.syncmnist.model import ConvBackbone

ELASTIC_ALPHA = 34.0  # pixels, at --elastic 1: Simard et al. 2003's elastic distortion of MNIST digits
ELASTIC_SIGMA = 4.0  # pixels: the Gaussian that smooths the random displacement field


def elastic_digits(images: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """``(n, 28, 28)`` uint8 digits -> the same digits bent by a random smooth displacement field
    (uniform in ``[-1, 1]`` per pixel and axis, smoothed by a Gaussian of ``ELASTIC_SIGMA`` pixels,
    scaled by ``strength x ELASTIC_ALPHA`` pixels), uint8."""
    n, size = len(images), images.shape[-1]
    field = torch.from_numpy(rng.uniform(-1, 1, (n * 2, 1, size, size)).astype(np.float32))
    radius = int(3 * ELASTIC_SIGMA)
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / ELASTIC_SIGMA) ** 2)
    taps /= taps.sum()
    field = F.conv2d(field, taps.view(1, 1, 1, -1), padding=(0, radius))  # separable Gaussian, zero-padded
    field = F.conv2d(field, taps.view(1, 1, -1, 1), padding=(radius, 0))
    shift = field.view(n, 2, size, size).permute(0, 2, 3, 1) * (strength * ELASTIC_ALPHA * 2 / size)
    identity = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), [n, 1, size, size], align_corners=False)
    x = torch.from_numpy(images).float()[:, None]
    out = F.grid_sample(x, identity + shift, align_corners=False, padding_mode="zeros")
    return out[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def frames(split: str, n: int, rng: np.random.Generator, strength: float = 0.0, elastic: float = 0.0):
    pool = digit_pool(split)
    idx = rng.integers(0, len(pool.labels), n)
    pos = rng.integers(0, CANVAS - DIGIT + 1, (n, 2))
    digits = pool.images[idx]
    if strength > 0:
        digits = affine_digits(digits, rng, strength)
    if elastic > 0:
        digits = elastic_digits(digits, rng, elastic)
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    paste_digits(canvas, (np.arange(n)[:, None, None],), pos, digits)
    x = torch.from_numpy(resize_frames(canvas)).float().div_(255.0)[:, None, None]
    return x, torch.from_numpy(pool.labels[idx]).long()


def hires(channels: int) -> PerFrame:
    """A stride-1 first conv: 64 -> 32 -> 16 -> 8 -> 6 (``explore.py``'s per-frame blocks)."""
    half, q = channels // 2, max(channels // 4, 4)
    pool = nn.MaxPool2d(2)
    layers = [*conv(1, q, 3, 1, 1), pool, *conv(q, half, 3, 1, 1), pool, *conv(half, channels, 3, 1, 1), pool]
    return PerFrame(nn.Sequential(*layers, *conv(channels, channels, 3)))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", choices=("base", "hires"), default="base")
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--augment", type=float, default=0.0, help="affine strength (1: +-12 deg, +-15 %% scale)")
    p.add_argument("--elastic", type=float, default=0.0, help="elastic strength (1: alpha 34, sigma 4 pixels)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--cosine", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    net = ConvBackbone(a.channels) if a.arch == "base" else hires(a.channels)
    head = nn.Linear(a.channels, 10)
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / a.steps)) if a.cosine else 1.0
    )
    rng = np.random.default_rng(a.seed)
    t0, hits = time.time(), 0.0
    for step in range(a.steps):
        x, y = frames("train", 64, rng, a.augment, a.elastic)
        logits = head(net(x).amax((2, 3, 4)))
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hits += (logits.argmax(1) == y).float().mean().item()
        if (step + 1) % 500 == 0:
            print(f"step {step + 1} train-window {hits / 500:.3f} {time.time() - t0:.0f}s", flush=True)
            hits = 0.0
    train_s = time.time() - t0
    net.eval()
    out = {"args": vars(a), "train_s": round(train_s, 1)}
    with torch.no_grad():
        for split in ("train", "test"):
            erng = np.random.default_rng(12345)
            correct = 0
            for _ in range(16):
                x, y = frames(split, 256, erng)
                correct += (head(net(x).amax((2, 3, 4))).argmax(1) == y).sum().item()
            out[split] = correct / 4096
        x, _ = frames("test", 160, np.random.default_rng(1))
        t1 = time.time()
        for _ in range(5):
            net(x)
        out["ms_per_160_frames"] = round((time.time() - t1) / 5 * 1000, 1)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
