"""Helpers for the model tests: tiny configurations, reference/fast pairs, random weights."""

from __future__ import annotations

import torch

import rstg_fast
import rstg_fast.reference
from rstg_fast.modules.base import SCHEDULES  # noqa: F401  (re-exported for the model tests)

TINY = dict(node_dim=16, message_dim=24)


def randomize(model: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """Fresh random values in every parameter (incl. the zero-initialised map scale and gather
    bias, and LayerNorm affine), so no term can hide behind an initial zero or one."""
    with torch.no_grad():
        for p in model.parameters():
            scale = 0.5 if p.dim() < 2 else p.shape[-1] ** -0.5
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * scale)
    return model


def make(cls, in_channels: int = 12, *, seed: int = 0, dtype=torch.float64, **kwargs) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = cls(in_channels, **{**TINY, **kwargs}).to(dtype)
    return randomize(model, g)


def pair(in_channels: int = 12, *, seed: int = 0, **kwargs):
    """(reference, fast) float64 models with the same random weights (loaded ref -> fast)."""
    ref = make(rstg_fast.reference.RSTG, in_channels, seed=seed, **kwargs)
    fast = rstg_fast.RSTG(in_channels, **{**TINY, **kwargs}).double()
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def video(B: int = 2, C: int = 12, T: int = 3, H: int = 6, W: int = 6, *, seed: int = 1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, C, T, H, W, generator=g, dtype=torch.float64).to(dtype)
