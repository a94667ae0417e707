"""Random affine (and elastic) copies of MNIST digits: more training digits for a warm-up that learns to
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
ELASTIC_ALPHA = 34.0  # pixels, at strength 1: Simard et al. 2003's elastic distortion of MNIST digits
ELASTIC_SIGMA = 4.0  # pixels: the Gaussian that smooths the random displacement field


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


def augmented_pool(pool: DigitPool, copies: int, seed: int, elastic: float = 0.0) -> DigitPool:
    """``pool`` followed by ``copies`` random affine copies of each of its digits (drawn once,
    deterministically from ``seed``): ``(copies + 1) x`` the digits, the labels repeated.
    ``elastic`` > 0 also bends each copy by :func:`elastic_digits` of that strength."""
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    if not elastic >= 0:
        raise ValueError(f"elastic must be >= 0, got {elastic}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7, copies]))

    def copy() -> np.ndarray:
        moved = affine_digits(pool.images, rng)
        return elastic_digits(moved, rng, elastic) if elastic else moved

    images = [pool.images] + [copy() for _ in range(copies)]
    return DigitPool(np.concatenate(images), np.tile(pool.labels, copies + 1))
