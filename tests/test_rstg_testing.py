"""The shared tolerance helper: it fails past the bound and names the worst elements by their
own (unravelled) indices, also when the expected tensor has infinite entries."""

from __future__ import annotations

import pytest
import torch
from rstg_testing import assert_close


def test_failure_names_the_worst_elements_by_their_own_indices():
    e = torch.randn(3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    e[0, 0, 0] = float("inf")  # masked out: indices must still be those of the full tensor
    a = e.float()
    a[2, 1, 3] += 1.0
    a[1, 3, 4] -= 0.5
    with pytest.raises(AssertionError, match=r"worst \[2, 1, 3\] got .*, \[1, 3, 4\] got "):
        assert_close(a, e, None, "O")
    assert_close(e.float(), e, None, "O")  # float32 rounding alone is within the floor
