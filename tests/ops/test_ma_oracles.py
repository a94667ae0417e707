"""The shared oracles of ma_oracles.py, checked on their own (the triton and cuda tests trust
them): unrounded they are the reference; rounding is straight-through; delta_correction is
what a FlashAttention-style backward with ``Delta`` from a perturbed ``O`` computes."""

from __future__ import annotations

import math

import pytest
import torch
from ma_oracles import delta_correction, rounded_oracle
from rstg_testing import op_inputs, random_csr

from rstg_fast.ops.backends.reference import destinations, message_attention_reference


def inputs(D, seed):
    gen = torch.Generator().manual_seed(seed)
    indptr, indices = random_csr(13, 5, generator=gen, empty_rows=True)
    x = op_inputs(3, 13, 40, 8, D, dtype=torch.float64, generator=gen)
    return x, indptr, indices, gen


def grads(fn, x):
    leaves = {k: v.detach().requires_grad_(True) for k, v in x.items() if v is not None}
    O, lse = fn({**x, **leaves})
    dO = torch.randn(O.shape, generator=torch.Generator().manual_seed(1), dtype=O.dtype)
    return O, lse, torch.autograd.grad(O, list(leaves.values()), dO)


@pytest.mark.parametrize("D", [22, None], ids=["two-layers", "one-layer"])
def test_unrounded_oracle_is_the_reference(D):
    x, indptr, indices, _ = inputs(D, 0)
    got = grads(lambda xs: rounded_oracle(*xs.values(), indptr, indices, 2, 0.5), x)
    want = grads(lambda xs: message_attention_reference(*xs.values(), indptr, indices, 2, 0.5), x)
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1], want[1], rtol=1e-12, atol=1e-12)  # -inf on empty rows in both
    for a, b in zip(got[2], want[2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_input_rounding_is_straight_through():
    x, indptr, indices, _ = inputs(22, 2)
    rounded = {k: v.half().double() for k, v in x.items()}
    got = grads(lambda xs: rounded_oracle(*xs.values(), indptr, indices, 2, 0.5, input_dtype=torch.float16), x)
    want = grads(lambda xs: rounded_oracle(*xs.values(), indptr, indices, 2, 0.5), rounded)
    assert not torch.equal(rounded["S"], x["S"])  # the rounding is real
    # values at the rounded point, gradients passed through the rounding unchanged
    for a, b in zip((got[0], got[1], *got[2]), (want[0], want[1], *want[2]), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_h_rounding_changes_only_the_two_layer_path():
    x, indptr, indices, _ = inputs(22, 3)
    exact = rounded_oracle(*x.values(), indptr, indices, 2, 0.5)[0]
    h16 = rounded_oracle(*x.values(), indptr, indices, 2, 0.5, h_dtype=torch.float16)[0]
    assert 0 < float((h16 - exact).abs().max()) < 1e-2  # fp16 rounding of h, no more
    one = {**x, "W2": None, "b2": None}
    torch.testing.assert_close(
        rounded_oracle(*one.values(), indptr, indices, 2, 0.5, h_dtype=torch.float16)[0],
        rounded_oracle(*one.values(), indptr, indices, 2, 0.5)[0], rtol=0, atol=0,
    )  # fmt: skip


def test_delta_correction_is_the_backward_with_delta_from_the_stored_output():
    # One send layer (m = h), so dQ, dK written out by hand: ds_ij = a_ij (dp_ij - Delta_i),
    # dp_ij = dO_i . m_j per head, dQ_i = scale sum_j ds_ij K_j, dK_j = scale sum_i ds_ij Q_i.
    x, indptr, indices, gen = inputs(None, 4)
    heads, scale = 2, 1 / math.sqrt(4)
    G, N, Hd = x["S"].shape
    O, _ = rounded_oracle(*x.values(), indptr, indices, heads, scale)
    dO = torch.randn(O.shape, generator=gen, dtype=torch.float64)
    O_stored = O + 1e-3 * torch.randn(O.shape, generator=gen, dtype=torch.float64)  # "rounded" O

    src, dst = indices, destinations(indptr, indices.numel())
    E = src.numel()
    q, k = x["Q"].reshape(G, N, heads, -1), x["K"].reshape(G, N, heads, -1)
    s = (q[:, dst] * k[:, src]).sum(-1) * scale
    a = torch.cat([torch.softmax(s[:, dst == i], 1) for i in range(N)], 1)  # CSR order: rows in turn
    m = torch.relu(x["S"][:, src] + x["R"][:, dst]).reshape(G, E, heads, -1)
    dp = (dO.reshape(G, N, heads, -1)[:, dst] * m).sum(-1)

    def by_hand(O_used):
        delta = (dO * O_used).reshape(G, N, heads, -1).sum(-1)
        ds = (a * (dp - delta[:, dst])).unsqueeze(-1)
        dQ = torch.zeros_like(q).index_add(1, dst, scale * ds * k[:, src]).reshape(G, N, -1)
        dK = torch.zeros_like(k).index_add(1, src, scale * ds * q[:, dst]).reshape(G, N, -1)
        return {"Q": dQ, "K": dK}

    exact, stored = by_hand(O), by_hand(O_stored)
    fix = delta_correction(x["Q"], x["K"], indptr, indices, heads, scale, dO, O, O_stored)
    for name in "QK":
        assert float((stored[name] - exact[name]).abs().max()) > 1e-6  # the correction matters
        torch.testing.assert_close(exact[name] + fix[name], stored[name], rtol=1e-10, atol=1e-12)
    zero = delta_correction(x["Q"], x["K"], indptr, indices, heads, scale, dO, O, O.clone())
    assert all(not t.any() for t in zero.values())
