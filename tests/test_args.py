"""rstg_fast._args: integers accepted as Python ints, refused rather than truncated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rstg_fast._args import as_index, integer, positive_int

INTEGERS = [3, np.int64(3), np.int32(3), np.uint8(3), torch.tensor(3), torch.tensor(3, dtype=torch.int32)]
NOT_INTEGERS = [
    3.0, 3.7, np.float64(3.0), torch.tensor(3.0), torch.tensor([3]), torch.tensor(True), True, np.bool_(True),
    "3", None, [3],
]  # fmt: skip


@pytest.mark.parametrize("value", INTEGERS, ids=lambda v: f"{type(v).__name__}")
def test_integers_come_back_as_python_ints(value):
    for got in (as_index(value), integer("n", value), positive_int("n", value)):
        assert got == 3 and type(got) is int


@pytest.mark.parametrize("value", NOT_INTEGERS, ids=repr)
def test_non_integers_are_refused_with_the_name(value):
    assert as_index(value) is None
    with pytest.raises(ValueError, match=r"^num_digits must be an int, got "):
        integer("num_digits", value)
    with pytest.raises(ValueError, match=r"^num_digits must be a positive int, got "):
        positive_int("num_digits", value)


@pytest.mark.parametrize(
    "kwargs,value,message",
    [
        (dict(minimum=1), 0, "n must be a positive int, got 0"),
        (dict(minimum=0), -1, "n must be a non-negative int, got -1"),
        (dict(minimum=2), 1, "n must be an int >= 2, got 1"),
        (dict(maximum=9), 10, "n must be an int <= 9, got 10"),
        (dict(minimum=2, maximum=10), 11, r"n must be an int in \[2, 10\], got 11"),
        (dict(minimum=2, maximum=10), np.int64(1), r"n must be an int in \[2, 10\], got "),
    ],
)
def test_bounds(kwargs, value, message):
    with pytest.raises(ValueError, match=message):
        integer("n", value, **kwargs)
    lo, hi = kwargs.get("minimum"), kwargs.get("maximum")
    inside = lo if lo is not None else hi
    assert integer("n", inside, **kwargs) == inside  # the bounds themselves are allowed
