"""``message_attention``: the fused send + attention-gather of RSTG's space stage."""

from __future__ import annotations

import torch

from rstg_fast.ops._checks import check_inputs
from rstg_fast.ops._library import MessageAttentionFunction, launch_forward  # importing registers the ops


def message_attention(
    S: torch.Tensor,
    R: torch.Tensor,
    Q: torch.Tensor,
    K: torch.Tensor,
    W2: torch.Tensor | None,
    b2: torch.Tensor | None,
    indptr: torch.Tensor,
    indices: torch.Tensor,
    *,
    heads: int = 1,
    scale: float | None = None,
    backend: str = "auto",
    return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Attention-weighted sum of per-edge messages over a static graph, without edge tensors.

    For every graph ``g`` of ``G`` and destination ``i`` (sources ``j`` in CSR row ``i``)::

        h_ij = relu(S[g, j] + R[g, i])                              # (Hd,)
        m_ij = relu(W2 @ h_ij + b2)  (or h_ij when W2 is None)      # (D,)
        a_ij = softmax_j(scale * <Q[g, i, c], K[g, j, c]>)  per head c
        O[g, i, c] = sum_j a_ij * m_ij[c]

    Args:
        S: ``(G, N, Hd)`` source term of the first send layer.
        R: ``(G, N, Hd)`` destination term (bias included).
        Q, K: ``(G, N, A)`` attention queries and keys.
        W2: ``(D, Hd)`` second send layer, or None for one send layer (``D = Hd``).
        b2: ``(D,)`` its bias, None iff ``W2`` is None.
        indptr: ``(N + 1,)`` CSR by destination, shared by all graphs (int64; int32 widened).
        indices: ``(E,)`` sources of each destination.
        heads: attention heads; must divide ``A`` and ``D``.
        scale: score scale, default ``1 / sqrt(A / heads)``.
        backend: ``"auto"``, ``"reference"``, or a fused backend (``"cpu"``, ``"triton"``,
            ``"cuda"``) when built; see ``rstg_fast.ops.backends``.
        return_lse: also return the per-row log-sum-exp ``(G, N, heads)`` (float32, float64
            for float64 inputs; ``-inf`` for a destination without sources). It is not
            differentiable.

    Returns:
        ``O (G, N, D)`` in the input dtype, or ``(O, lse)``. A destination without sources
        gets ``O = 0``.

    Raises:
        ValueError: naming the argument, for bad shapes, dtypes, devices, CSR contents or
        options, before any kernel runs.
    """
    scale, backend = check_inputs(S, R, Q, K, W2, b2, indptr, indices, heads, scale, backend)
    args = (S, R, Q, K, W2, b2, indptr, indices, heads, scale, backend)
    if torch.compiler.is_compiling():  # the registered op (its autograd is registered)
        O, lse = torch.ops.rstg_fast.message_attention.default(*args)
    elif torch.is_grad_enabled() and _needs_grad(S, R, Q, K, W2, b2):
        O, lse = MessageAttentionFunction.apply(*args)
    else:  # checked above: straight to the launcher
        O, lse = launch_forward(*args)
    return (O, lse) if return_lse else O


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return any(t is not None and t.requires_grad for t in tensors)
