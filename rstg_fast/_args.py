"""Integer arguments, checked the same way everywhere (graph, model, data).

A count or a size given as ``3.7`` is a caller's mistake: it is refused with a ``ValueError``
naming the argument, never truncated by ``int()``. Python ints, numpy integers and 0-d
integer tensors are accepted (they come out of ``np.arange``, ``argparse`` or a config) and
returned as Python ints; bools are refused although ``bool`` is an ``int`` subclass.
"""

from __future__ import annotations

import operator

import numpy as np
import torch


def as_index(value) -> int | None:
    """``value`` as a Python int if it is a Python, numpy or 0-d torch integer (not a bool),
    else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, torch.Tensor) and (value.dim() != 0 or value.dtype == torch.bool):
        return None
    try:
        return operator.index(value)  # refuses floats, float tensors and numpy floats
    except TypeError:
        return None


def integer(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int in ``[minimum, maximum]`` (either bound optional), else a
    ``ValueError`` naming ``name`` and saying what was received."""
    out = as_index(value)
    if out is None or (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        if minimum is not None and maximum is not None:
            want = f"an int in [{minimum}, {maximum}]"
        elif minimum == 0:
            want = "a non-negative int"
        elif minimum == 1:
            want = "a positive int"
        elif minimum is not None:
            want = f"an int >= {minimum}"
        elif maximum is not None:
            want = f"an int <= {maximum}"
        else:
            want = "an int"
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return out


def positive_int(name: str, value) -> int:
    """``value`` as a Python int >= 1, else a ``ValueError`` naming ``name``."""
    return integer(name, value, minimum=1)
