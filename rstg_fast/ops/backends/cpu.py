"""The ``cpu`` backend of ``message_attention``: fused C++/OpenMP kernels of ``rstg_fast._C``.

This module only allocates outputs and hands the kernels their named fields (``MaArgs``,
``csrc/message_attention_args.h``; ``csrc/cpu/message_attention_{forward,backward}.cpp``);
the backend contract is in ``rstg_fast.ops.backends``. Inputs arrive contiguous, validated
and on the CPU. The thread count is ``torch.get_num_threads()``. The kernels are
deterministic for a fixed thread count (no atomics; per-thread partials reduced in a fixed
order), so they need no special path under ``torch.use_deterministic_algorithms(True)``.
See docs/cpu_backend.md.
"""

from __future__ import annotations

import torch

from rstg_fast._ext import require_extension
from rstg_fast.ops.backends._kernel_args import addr, op_fields

DTYPES = (torch.float32, torch.float64)


def forward(S, R, Q, K, W2, b2, indptr, indices, heads, scale):
    """``(O (G, N, D), lse (G, N, heads))``, both in the input dtype (float32 or float64)."""
    fields = op_fields(S, R, Q, K, W2, b2, indices, heads, scale)
    O = S.new_empty((fields["G"], fields["N"], fields["D"]))
    lse = S.new_empty((fields["G"], fields["N"], heads))
    fields.update(
        indptr=indptr.data_ptr(), indices=indices.data_ptr(), O=O.data_ptr(), lse=lse.data_ptr(),
        threads=torch.get_num_threads(),
    )  # fmt: skip
    require_extension().message_attention_forward_cpu(fields)
    return O, lse


def backward(dO, S, R, Q, K, W2, b2, indptr, indices, O, lse, heads, scale):
    """``(dS, dR, dQ, dK, dW2 | None, db2 | None)`` in the input dtype."""
    dS, dR = torch.empty_like(S), torch.empty_like(R)
    dQ, dK = torch.empty_like(Q), torch.empty_like(K)
    dW2 = torch.empty_like(W2) if W2 is not None else None
    db2 = torch.empty_like(b2) if b2 is not None else None
    fields = op_fields(S, R, Q, K, W2, b2, indices, heads, scale)
    fields.update(
        indptr=indptr.data_ptr(), indices=indices.data_ptr(), dO=dO.data_ptr(), O=O.data_ptr(),
        lse=lse.data_ptr(), dS=dS.data_ptr(), dR=dR.data_ptr(), dQ=dQ.data_ptr(), dK=dK.data_ptr(),
        dW2=addr(dW2), db2=addr(db2), threads=torch.get_num_threads(),
    )  # fmt: skip
    require_extension().message_attention_backward_cpu(fields)
    return dS, dR, dQ, dK, dW2, db2
