"""float64 oracles of ``message_attention`` for the fused backends' tests (triton, cuda).

A fused kernel differs from the reference on purpose in two places, both FlashAttention
habits, and its tests must compare against exactly what it computes:

- 16-bit tensor-core operands: ``h = relu(S + R)`` is rounded to the input dtype before the
  ``W2`` product, so a ReLU kink of ``z = W2 h + b2`` within rounding of 0 can flip and move a
  gradient by a whole term. :func:`rounded_oracle` rounds ``h`` (and optionally the inputs)
  to a dtype, straight-through in backward (the kernels' backward uses the rounded ``h`` as a
  value and passes gradients through the rounding unchanged).
- ``Delta = rowsum(dO * O)`` is taken from the stored output ``O`` (rounded to its dtype), not
  the exact one; :func:`delta_correction` is the exact effect of that on ``dQ`` and ``dK``.

Which dtype to round to, and when, is a backend's choice (the triton interpreter widens
bfloat16 dots to float32, say), so those are parameters here and the test files decide.
"""

from __future__ import annotations

import math
import zlib

import torch

from rstg_fast.ops.backends.reference import destinations


class _RoundST(torch.autograd.Function):
    """Round to a dtype in forward, identity in backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return x.to(dtype).to(x.dtype)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return g, None


def round_st(x: torch.Tensor | None, dtype: torch.dtype | None) -> torch.Tensor | None:
    """``x`` rounded to ``dtype`` (kept in its own dtype), straight-through; None: unchanged."""
    return x if x is None or dtype is None else _RoundST.apply(x, dtype)


def _softmax_weights(Q, K, src, dst, N, heads, scale):
    """Per-edge scores ``s`` and attention ``a`` ``(G, E, heads)`` and the row ``lse``
    ``(G, N, heads)`` (``-inf`` for a row without sources)."""
    G, E, Ah = Q.shape[0], src.numel(), Q.shape[2] // heads  # Ah explicit: -1 is ambiguous when E = 0
    s = (Q[:, dst].reshape(G, E, heads, Ah) * K[:, src].reshape(G, E, heads, Ah)).sum(-1) * scale
    mx = torch.full((G, N, heads), -math.inf, dtype=s.dtype, device=s.device)
    mx = mx.scatter_reduce(1, dst.view(1, E, 1).expand(G, E, heads), s.detach(), "amax")
    e = torch.exp(s - mx[:, dst])
    den = torch.zeros((G, N, heads), dtype=s.dtype, device=s.device).index_add(1, dst, e)
    return s, e / den[:, dst], mx + torch.log(den)


def rounded_oracle(
    S, R, Q, K, W2, b2, indptr, indices, heads: int, scale: float,
    *, input_dtype: torch.dtype | None = None, h_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Differentiable float64 ``message_attention``; returns ``(O (G, N, D), lse (G, N, heads))``.

    ``input_dtype``: round S, R, Q, K, W2, b2 to it first (straight-through), for callers that
    keep the unrounded float64 tensors as leaves. ``h_dtype``: round ``h`` to it before the
    ``W2`` product (straight-through; no effect without ``W2``). Both None: the exact function.
    """
    S, R, Q, K, W2, b2 = (round_st(t, input_dtype) for t in (S, R, Q, K, W2, b2))
    G, N, _ = S.shape
    src, dst = indices, destinations(indptr, indices.numel())
    h = torch.relu(S[:, src] + R[:, dst])  # [G, E, Hd]
    m = torch.relu(round_st(h, h_dtype) @ W2.T + b2) if W2 is not None else h  # [G, E, D]
    _, a, lse = _softmax_weights(Q, K, src, dst, N, heads, scale)
    E, D = src.numel(), m.shape[-1]
    w = (a.unsqueeze(-1) * m.reshape(G, E, heads, D // heads)).reshape(G, E, D)
    return torch.zeros((G, N, D), dtype=w.dtype, device=w.device).index_add(1, dst, w), lse


def delta_correction(Q, K, indptr, indices, heads: int, scale: float, dO, O_exact, O_stored) -> dict[str, torch.Tensor]:
    """What ``dQ`` and ``dK`` gain when the backward takes ``Delta = rowsum(dO * O)`` from the
    stored output ``O_stored`` (in its dtype) rather than the exact ``O_exact`` (float64).

    With ``err_i = Delta_i - Delta'_i``, ``ds_ij = a_ij (dp_ij - Delta'_i)`` is the exact
    ``a_ij (dp_ij - Delta_i)`` plus ``a_ij err_i``, which adds ``scale a_ij err_i K_j`` to
    ``dQ_i`` and ``scale a_ij err_i Q_i`` to ``dK_j``. Returns ``{"Q": (G, N, A), "K": (G, N, A)}``
    on ``O_exact``'s device, to add to the exact gradients.
    """
    Q, K, dO, O_exact = (t.detach() for t in (Q, K, dO, O_exact))
    O_stored = O_stored.detach().to(O_exact.device, torch.float64)
    G, N, A = Q.shape
    src, dst = indices, destinations(indptr, indices.numel())
    err = (dO * (O_exact - O_stored)).reshape(G, N, heads, -1).sum(-1)  # [G, N, heads]
    _, a, _ = _softmax_weights(Q, K, src, dst, N, heads, scale)
    w = (scale * a * err[:, dst]).unsqueeze(-1)  # [G, E, heads, 1]
    q, k = Q.reshape(G, N, heads, -1), K.reshape(G, N, heads, -1)
    dQ = torch.zeros_like(q).index_add(1, dst, w * k[:, src]).reshape(G, N, A)
    dK = torch.zeros_like(k).index_add(1, src, w * q[:, dst]).reshape(G, N, A)
    return {"Q": dQ, "K": dK}


# ------------------------------------------------ non-finite inputs (docs/design.md §2)
def nonfinite_case(name: str, value: str, whole_row: bool, one_layer: bool) -> dict:
    """Float32 op inputs with ``rstg_testing.NONFINITE[value]`` in one element (or a row) of input
    ``name`` (see ``with_nonfinite``), on a random CSR with empty rows and duplicate edges:
    ``dict(x, indptr, indices, heads, scale, dO, name, value)``, all on the CPU."""
    from rstg_testing import NONFINITE, op_inputs, random_csr, with_nonfinite

    gen = torch.Generator().manual_seed(zlib.crc32(f"nonfinite-{name}".encode()))
    indptr, indices = random_csr(7, 4, generator=gen)
    D = None if one_layer else 6
    x = op_inputs(2, 7, 8, 4, D, dtype=torch.float32, generator=gen)
    x = with_nonfinite(x, name, NONFINITE[value], whole_row, indptr, indices)
    dO = torch.randn(2, 7, D or 8, generator=gen, dtype=torch.float64).float()
    scale = 1 / math.sqrt(4 // 2)
    return dict(x=x, indptr=indptr, indices=indices, heads=2, scale=scale, dO=dO, name=name, value=value)


def nonfinite_params(backends: list[str]):
    """pytest params ``(backend, input, value, whole_row, one_layer)`` of the non-finite cases:
    every input (S, R, Q, K, W2, b2; only the first four with one send layer), every value of
    ``rstg_testing.NONFINITE``, in one element or a whole row."""
    import pytest
    from rstg_testing import NONFINITE, OP_INPUTS

    for backend in backends:
        for one_layer in (False, True):
            for name in OP_INPUTS[:4] if one_layer else OP_INPUTS:
                for value in NONFINITE:
                    for whole_row in (False, True):
                        where = "row" if whole_row else "element"
                        layers = "one" if one_layer else "two"
                        yield pytest.param(backend, name, value, whole_row, one_layer,
                                           id=f"{backend}-{name}-{value}-{where}-{layers}-layer")  # fmt: skip


def outputs_and_grads(case: dict, op, x: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``(O, lse, {input: gradient of <O, dO>})`` of ``op(leaves) -> (O, lse)`` on ``case``'s
    inputs (or ``x``), with every input present as a leaf."""
    x = case["x"] if x is None else x
    leaves = {k: (v.detach().clone().requires_grad_(True) if v is not None else None) for k, v in x.items()}
    present = [k for k, v in leaves.items() if v is not None]
    O, lse = op(leaves)
    grads = torch.autograd.grad(O, [leaves[k] for k in present], case["dO"].to(O.device, O.dtype))
    return O, lse, dict(zip(present, grads, strict=True))


def assert_nonfinite_like_reference(got: tuple, case: dict, label: str) -> None:
    """``got = (O, lse, grads)`` of a backend against the reference on ``case``, element by
    element: NaN where the float64 reference has NaN, +-inf where it has +-inf, and finite
    values within the tolerance rule (rstg_testing.assert_close) elsewhere; O, lse and every
    gradient."""
    from rstg_testing import assert_close

    from rstg_fast.ops.backends.reference import message_attention_reference

    def reference(dtype):
        def op(leaves):
            graph = dict(indptr=case["indptr"], indices=case["indices"], heads=case["heads"], scale=case["scale"])
            return message_attention_reference(**leaves, **graph, compute_dtype=dtype)

        x = {k: (v.to(dtype) if v is not None else None) for k, v in case["x"].items()}
        return outputs_and_grads(case, op, x) if dtype == torch.float64 else outputs_and_grads(case, op)

    want, own = reference(torch.float64), reference(torch.float32)
    assert_close(got[0], want[0], own[0], f"{label}: O")
    assert_close(got[1], want[1], own[1], f"{label}: lse")
    assert got[2].keys() == want[2].keys()
    for k in want[2]:
        assert_close(got[2][k], want[2][k], own[2][k], f"{label}: d{k}")
    # relu(-inf + r) = 0: -inf in S or R is the one kind of case the reference keeps all finite.
    if all(torch.isfinite(t).all() for t in (want[0], want[1], *want[2].values())):
        assert case["name"] in ("S", "R") and case["value"] == "neginf", f"{label}: the case must matter"
