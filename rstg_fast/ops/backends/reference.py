"""The ``reference`` backend of ``message_attention``: plain PyTorch, the oracle.

It materialises every edge (``(G, E, Hd)`` and ``(G, E, D)`` tensors), exactly the maths of
docs/design.md §2, and computes in float32 for half inputs (float64 for float64). Its backward
recomputes the forward under autograd, so it is only as clever as PyTorch itself.
``message_attention_reference`` is also the function that ``torch.compile`` of the
reference is measured with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rstg_fast.ops._dtypes import acc_dtype


def destinations(indptr: torch.Tensor, num_edges: int) -> torch.Tensor:
    """``(E,)`` destination of every edge of a CSR-by-destination graph."""
    num_nodes = indptr.numel() - 1
    return torch.repeat_interleave(
        torch.arange(num_nodes, device=indptr.device), indptr[1:] - indptr[:-1], output_size=num_edges
    )


def message_attention_reference(
    S: torch.Tensor,
    R: torch.Tensor,
    Q: torch.Tensor,
    K: torch.Tensor,
    W2: torch.Tensor | None,
    b2: torch.Tensor | None,
    indptr: torch.Tensor,
    indices: torch.Tensor,
    heads: int,
    scale: float,
    compute_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable plain-PyTorch ``message_attention``. Returns ``(O, lse)``.

    ``compute_dtype`` defaults to float32 (float64 for float64 inputs): the oracle. Tests pass
    the input dtype itself to measure PyTorch's own error in that dtype (the yardstick of the
    tolerance rule in tests/rstg_testing.py).

    Shapes: S, R ``(G, N, Hd)``; Q, K ``(G, N, A)``; W2 ``(D, Hd)``; b2 ``(D,)``;
    O ``(G, N, D)`` in the input dtype; lse ``(G, N, heads)`` float32 (float64 for float64).
    """
    G, N, _ = S.shape
    E = indices.numel()
    in_dtype, acc = S.dtype, compute_dtype or acc_dtype(S.dtype)
    S, R, Q, K = (t.to(acc) for t in (S, R, Q, K))
    src = indices
    dst = destinations(indptr, E)

    h = F.relu(S[:, src] + R[:, dst])  # (G, E, Hd)
    m = F.relu(F.linear(h, W2.to(acc), b2.to(acc))) if W2 is not None else h  # (G, E, D)
    D = m.shape[-1]
    A = Q.shape[-1]
    q = Q[:, dst].reshape(G, E, heads, A // heads)
    k = K[:, src].reshape(G, E, heads, A // heads)
    s = (q * k).sum(-1) * scale  # (G, E, heads)

    # Segment softmax over the sources of each destination; empty rows keep -inf.
    row_max = torch.full((G, N, heads), float("-inf"), dtype=acc, device=S.device)
    dst_heads = dst.view(1, E, 1).expand(G, E, heads)
    row_max = row_max.scatter_reduce(1, dst_heads, s.detach(), "amax", include_self=True)
    e = torch.exp(s - row_max[:, dst])
    denom = torch.zeros((G, N, heads), dtype=acc, device=S.device).index_add(1, dst, e)
    lse = row_max + torch.log(denom)
    a = e / denom[:, dst]  # (G, E, heads)

    weighted = (a.unsqueeze(-1) * m.reshape(G, E, heads, D // heads)).reshape(G, E, D)
    O = torch.zeros((G, N, D), dtype=acc, device=S.device).index_add(1, dst, weighted)
    return O.to(in_dtype), lse.to(acc_dtype(in_dtype))


def forward(S, R, Q, K, W2, b2, indptr, indices, heads, scale):
    with torch.no_grad():
        O, lse = message_attention_reference(S, R, Q, K, W2, b2, indptr, indices, heads, scale)
    return O, lse


def backward(dO, S, R, Q, K, W2, b2, indptr, indices, O, lse, heads, scale):
    leaves = [t.detach().requires_grad_(True) if t is not None else None for t in (S, R, Q, K, W2, b2)]
    with torch.enable_grad():
        out, _ = message_attention_reference(*leaves, indptr, indices, heads, scale)
        wanted = [t for t in leaves if t is not None]
        grads = torch.autograd.grad(out, wanted, dO, allow_unused=True)
    it = iter(grads)
    result = [next(it) if t is not None else None for t in leaves]
    return tuple(g if g is not None or t is None else torch.zeros_like(t) for g, t in zip(result, leaves, strict=True))
