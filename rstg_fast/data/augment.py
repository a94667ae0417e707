"""Random affine copies of MNIST digits: more training digits for a warm-up that learns to
name them (``rstg-fast syncmnist --naming-augment``; the 4,000-digit embedded training pool
is what limits naming on the test pool, docs/syncmnist.md)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from rstg_fast.data.mnist import DigitPool

MAX_ROTATION_DEG = 12.0  # at strength 1; the session-7 probe's ranges (tools/syncmnist_probes/digits.py)
MAX_SCALE = 0.15
MAX_SHEAR = 0.25


def affine_digits(images: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """``(n, 28, 28)`` uint8 digits -> the same digits rotated, scaled and sheared at random
    (uniform within ``strength`` x the ranges above, about the image centre), uint8."""
    n = len(images)
    angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, n) * strength * math.pi / 180
    scale = 1 + rng.uniform(-MAX_SCALE, MAX_SCALE, n) * strength
    shear = rng.uniform(-MAX_SHEAR, MAX_SHEAR, n) * strength
    cos, sin = np.cos(angle), np.sin(angle)
    theta = np.zeros((n, 2, 3), dtype=np.float32)  # output -> input sampling coordinates
    theta[:, 0, 0] = cos / scale
    theta[:, 0, 1] = (-sin + shear) / scale
    theta[:, 1, 0] = sin / scale
    theta[:, 1, 1] = cos / scale
    x = torch.from_numpy(images).float()[:, None]
    grid = F.affine_grid(torch.from_numpy(theta), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    return out[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def augmented_pool(pool: DigitPool, copies: int, seed: int) -> DigitPool:
    """``pool`` followed by ``copies`` random affine copies of each of its digits (drawn once,
    deterministically from ``seed``): ``(copies + 1) x`` the digits, the labels repeated."""
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7, copies]))
    images = [pool.images] + [affine_digits(pool.images, rng) for _ in range(copies)]
    return DigitPool(np.concatenate(images), np.tile(pool.labels, copies + 1))
