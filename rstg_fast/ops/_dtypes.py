"""Dtype rules shared by ``message_attention`` and its backends."""

from __future__ import annotations

import torch


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype for inputs of ``dtype``, also the dtype of ``lse``: float64 for
    float64 inputs, float32 for everything else (half-precision inputs accumulate in float32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32
