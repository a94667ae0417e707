"""Argument checks shared by the model and its stages (kept apart from ``base.py``, which
imports the stages: the stages check their own arguments too). Integers are checked by
:mod:`rstg_fast._args`, as in the graph and data code."""

from __future__ import annotations

import math
import numbers

from rstg_fast._args import integer, positive_int

__all__ = ["attention_scale", "choice", "integer", "positive_int"]


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
