"""The shared test helpers: the tolerance helper fails past the bound and names the worst
elements by their own (unravelled) indices, also when the expected tensor has infinite
entries; the determinism switch restores what it found."""

from __future__ import annotations

import pytest
import torch
from rstg_testing import assert_close, deterministic_algorithms


def test_failure_names_the_worst_elements_by_their_own_indices():
    e = torch.randn(3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    e[0, 0, 0] = float("inf")  # masked out: indices must still be those of the full tensor
    a = e.float()
    a[2, 1, 3] += 1.0
    a[1, 3, 4] -= 0.5
    with pytest.raises(AssertionError, match=r"worst \[2, 1, 3\] got .*, \[1, 3, 4\] got "):
        assert_close(a, e, None, "O")
    assert_close(e.float(), e, None, "O")  # float32 rounding alone is within the floor


def test_non_finite_entries_must_match_kind_by_kind():
    e = torch.tensor([1.0, float("nan"), float("inf"), -float("inf")], dtype=torch.float64)
    assert_close(e.float(), e, None, "O")  # NaN where NaN, +-inf where +-inf: equal
    for i, value, kind in [(0, float("nan"), "NaN"), (1, 0.0, "NaN"), (2, -float("inf"), r"\+inf"), (3, 1.0, "-inf")]:
        a = e.clone()
        a[i] = value
        with pytest.raises(AssertionError, match=rf"O: {kind} pattern differs at 1 of 4 elements, first \[\({i},\)\]"):
            assert_close(a, e, None, "O")


@pytest.mark.parametrize("before", [(False, False), (True, False), (True, True)], ids=["off", "on", "warn-only"])
def test_deterministic_algorithms_restores_the_previous_setting(before):
    def state():
        return torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()

    outer = state()
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    try:
        for enabled in (True, False):
            with deterministic_algorithms(enabled):
                assert state() == (enabled, False)
            assert state() == before
        with pytest.raises(RuntimeError, match="inside"), deterministic_algorithms(not before[0]):
            raise RuntimeError("inside")
        assert state() == before
    finally:
        torch.use_deterministic_algorithms(outer[0], warn_only=outer[1])
