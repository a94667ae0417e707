"""Argument checks shared by the model and its stages (kept apart from ``base.py``, which
imports the stages: the stages check their own arguments too)."""

from __future__ import annotations

import math
import numbers


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def choice(name: str, value, allowed: tuple):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def attention_scale(value) -> float | None:
    """``attention_scale``: None (the default ``1 / sqrt(message_dim / heads)``) or a finite float > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"attention_scale must be None or a finite number > 0, got {value!r}")
    return float(value)
