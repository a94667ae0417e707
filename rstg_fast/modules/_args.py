"""Argument checks shared by the model and its stages (kept apart from ``base.py``, which
imports the stages: the stages check their own arguments too). Integers are checked by
:mod:`rstg_fast._args`, as in the graph and data code."""

from __future__ import annotations

import math
import numbers

import numpy as np

from rstg_fast._args import integer, positive_int

__all__ = ["attention_scale", "choice", "flag", "integer", "layer_count", "positive_int"]


def choice(name: str, value, allowed: tuple):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def flag(name: str, value) -> bool:
    """A switch: a Python or numpy bool, returned as ``bool``. Anything else is refused: a
    truthiness test would turn ``scalewise_update="no"`` into True without a word (the
    model-level fuzzing found that)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def layer_count(name: str, value) -> int:
    """``send_layers`` / ``update_layers``: an int in [1, 2]. An int check first, so ``2.0`` or
    ``True`` are refused like every other integer argument (``value in (1, 2)`` let them in)."""
    return integer(name, value, minimum=1, maximum=2)


def attention_scale(value) -> float | None:
    """``attention_scale``: None (the default ``1 / sqrt(message_dim / heads)``) or a finite float > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"attention_scale must be None or a finite number > 0, got {value!r}")
    return float(value)
