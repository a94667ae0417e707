"""The ``cpu`` backend of ``message_attention``: fused C++/OpenMP kernels of ``rstg_fast._C``.

This module only allocates outputs and hands raw addresses to the kernels
(``csrc/cpu/message_attention_{forward,backward}.cpp``); the backend contract is in
``rstg_fast.ops.backends``. Inputs arrive contiguous, validated and on the CPU. The thread
count is ``torch.get_num_threads()``. The kernels are deterministic for a fixed thread count
(no atomics; per-thread partials reduced in a fixed order), so they need no special path
under ``torch.use_deterministic_algorithms(True)``. See docs/cpu_backend.md.
"""

from __future__ import annotations

import torch

from rstg_fast._ext import require_extension

DTYPES = (torch.float32, torch.float64)


def _addr(t: torch.Tensor | None) -> int:
    return t.data_ptr() if t is not None else 0


def _sizes(S: torch.Tensor, Q: torch.Tensor, W2: torch.Tensor | None) -> tuple[int, int, int, int, int]:
    G, N, Hd = S.shape
    return G, N, Hd, Q.shape[2], (W2.shape[0] if W2 is not None else Hd)


def forward(S, R, Q, K, W2, b2, indptr, indices, heads, scale):
    """``(O (G, N, D), lse (G, N, heads))``, both in the input dtype (float32 or float64)."""
    ext = require_extension()
    G, N, Hd, A, D = _sizes(S, Q, W2)
    O = S.new_empty((G, N, D))
    lse = S.new_empty((G, N, heads))
    inputs = [_addr(t) for t in (S, R, Q, K, W2, b2, indptr, indices)]
    sizes = [G, N, Hd, A, D, heads, float(scale)]
    ext.message_attention_forward_cpu(
        S.dtype == torch.float64, *inputs, *sizes, O.data_ptr(), lse.data_ptr(), torch.get_num_threads()
    )
    return O, lse


def backward(dO, S, R, Q, K, W2, b2, indptr, indices, O, lse, heads, scale):
    """``(dS, dR, dQ, dK, dW2 | None, db2 | None)`` in the input dtype."""
    ext = require_extension()
    G, N, Hd, A, D = _sizes(S, Q, W2)
    dS, dR = torch.empty_like(S), torch.empty_like(R)
    dQ, dK = torch.empty_like(Q), torch.empty_like(K)
    dW2 = torch.empty_like(W2) if W2 is not None else None
    db2 = torch.empty_like(b2) if b2 is not None else None
    inputs = [_addr(t) for t in (dO, S, R, Q, K, W2, b2, indptr, indices, O, lse)]
    sizes = [G, N, Hd, A, D, heads, float(scale)]
    outputs = [_addr(t) for t in (dS, dR, dQ, dK, dW2, db2)]
    ext.message_attention_backward_cpu(S.dtype == torch.float64, *inputs, *sizes, *outputs, torch.get_num_threads())
    return dS, dR, dQ, dK, dW2, db2
