"""The correctness gate itself: it must refuse wrong results and accept rounding noise.

Not a benchmark (no ``benchmark`` fixture): a few milliseconds, run with ``pytest bench/``.
"""

from __future__ import annotations

import pytest
import torch
from benchkit.gate import check, tolerance


def _pair(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    ref = {"O": torch.randn(8, 14, 64, generator=gen, dtype=torch.float64)}
    return ref, {"O": ref["O"].float()}


def test_gate_accepts_float32_rounding():
    ref, got = _pair()
    info = check(got, ref, tolerance(torch.float32, "cpu", "op"), "float32 rounding")
    assert info["gate_checked"] == ["O"] and info["gate_max_rel_err"] < 1e-6


@pytest.mark.parametrize("corruption", ["one_row", "nan", "scaled", "missing", "shape"])
def test_gate_refuses_wrong_results(corruption):
    ref, got = _pair(1)
    O = got["O"].clone()
    if corruption == "one_row":
        O[3, 7] = 0.0  # one destination left unwritten among 112
    elif corruption == "nan":
        O[0, 0, 0] = float("nan")
    elif corruption == "scaled":
        O *= 1.01
    elif corruption == "shape":
        O = O[:, :13]
    got = {} if corruption == "missing" else {"O": O}
    with pytest.raises(pytest.fail.Exception, match="refusing to time"):
        check(got, ref, tolerance(torch.float32, "cpu", "op"), corruption)


def test_gate_accepts_noise_on_an_exactly_zero_tensor():
    # e.g. the key bias gradient, cancelled by the softmax: compared with PyTorch's own noise
    gen = torch.Generator().manual_seed(2)
    ref = {"db": torch.randn(64, generator=gen, dtype=torch.float64) * 1e-18}
    same = {"db": torch.randn(64, generator=gen, dtype=torch.float64) * 1e-10}
    got = {"db": (torch.randn(64, generator=gen, dtype=torch.float64) * 3e-10).float()}
    check(got, ref, tolerance(torch.float32, "cpu", "op"), "noise", same)
    with pytest.raises(pytest.fail.Exception):
        check({"db": got["db"] * 1e3}, ref, tolerance(torch.float32, "cpu", "op"), "noise x1000", same)
