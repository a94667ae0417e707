"""Double backward (``create_graph=True``) of message_attention: supported through the
reference maths, never a silent zero (issue: hardening)."""

from __future__ import annotations

import pytest
import torch
from rstg_testing import cpu_device_for

from rstg_fast.graph import grid_graph
from rstg_fast.ops import backends, message_attention


def _inputs(one_layer: bool):
    gen = torch.Generator().manual_seed(3)
    S, R, Q, K = (torch.randn(2, 14, 6, dtype=torch.float64, generator=gen) for _ in range(4))
    W2, b2 = (
        (None, None)
        if one_layer
        else (torch.randn(6, 6, dtype=torch.float64, generator=gen), torch.randn(6, dtype=torch.float64, generator=gen))
    )
    return [t.requires_grad_(True) for t in (S, R, Q, K, W2, b2) if t is not None]


def _call(via: str, backend: str, one_layer: bool):
    g = grid_graph(((3, 3), (2, 2), (1, 1)), 6, 6)

    def f(*t):
        S, R, Q, K, *w = t
        W2, b2 = w if w else (None, None)
        if via == "public":
            return message_attention(S, R, Q, K, W2, b2, g.indptr, g.indices, heads=2, scale=0.7, backend=backend)
        return torch.ops.rstg_fast.message_attention(S, R, Q, K, W2, b2, g.indptr, g.indices, 2, 0.7, backend)[0]

    return f


FLOAT64_BACKENDS = [b for b in backends.BACKENDS if torch.float64 in backends.BACKENDS[b].dtypes]


# gradgradcheck perturbs every input element (hundreds of forward calls): run where a forward
# is cheap; the second derivative goes through the reference maths for every backend anyway
@pytest.mark.parametrize("via", ["public", "torch.ops"])
@pytest.mark.parametrize("one_layer", [False, True], ids=["two-layer", "one-layer"])
@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gradgradcheck(backend, one_layer, via):
    assert torch.autograd.gradgradcheck(_call(via, backend, one_layer), _inputs(one_layer))


@pytest.mark.parametrize("via", ["public", "torch.ops"])
@pytest.mark.parametrize("one_layer", [False, True], ids=["two-layer", "one-layer"])
@pytest.mark.parametrize("backend", FLOAT64_BACKENDS)
def test_second_derivative_is_the_references(backend, one_layer, via):
    cpu_device_for(backend)
    inputs = _inputs(one_layer)
    out = _call(via, backend, one_layer)(*inputs)
    first = torch.autograd.grad(out.pow(2).sum(), inputs, create_graph=True)
    second = torch.autograd.grad(sum(g.pow(2).sum() for g in first), inputs)
    ref_inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    ref = _call("public", "reference", one_layer)
    ref_first = torch.autograd.grad(ref(*ref_inputs).pow(2).sum(), ref_inputs, create_graph=True)
    ref_second = torch.autograd.grad(sum(g.pow(2).sum() for g in ref_first), ref_inputs)
    for a, b in zip(second, ref_second, strict=True):
        assert a.abs().sum() > 0  # not the silent zero it used to be
        torch.testing.assert_close(a, b)
