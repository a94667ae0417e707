"""Input validation of ``message_attention``: every check lives here, and runs before any
kernel. Messages name the argument and say what was received."""

from __future__ import annotations

import math

import torch

from rstg_fast.ops._dtypes import acc_dtype
from rstg_fast.ops.backends import resolve_backend

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_inputs(S, R, Q, K, W2, b2, indptr, indices, heads, scale, backend):
    """Validate shapes, dtypes, devices and options. Returns ``(scale, backend_name)``.

    The CSR *contents* (monotone indptr, indices in range) are checked by
    :func:`rstg_fast.ops._graph_cache.checked_csr`, which the op impls call on every call.
    """
    scale = check_tensors(S, R, Q, K, W2, b2, indptr, indices, heads, scale)
    return scale, resolve_backend(backend, S.device, S.dtype)


def check_tensors(S, R, Q, K, W2, b2, indptr, indices, heads, scale) -> float:
    """The checks that read no tensor data and ask no backend (fake kernels run them too).

    Returns the concrete ``scale`` (default ``1 / sqrt(A / heads)``).
    """
    for name, t in (("S", S), ("R", R), ("Q", Q), ("K", K), ("indptr", indptr), ("indices", indices)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if S.dim() != 3:
        raise ValueError(f"S must have shape (G, N, Hd), got {_shape(S)}")
    if R.shape != S.shape:
        raise ValueError(f"R must have shape (G, N, Hd) matching S, got {_shape(S)} and {_shape(R)}")
    G, N, Hd = S.shape
    if Hd == 0:  # every backend: a zero-width RSTG is meaningless (docs/architecture.md)
        raise ValueError(f"S and R must have a non-empty node width Hd, got {_shape(S)}")
    if Q.dim() != 3 or Q.shape[:2] != S.shape[:2]:
        raise ValueError(f"Q must have shape (G, N, A) with (G, N) = {(G, N)} of S, got {_shape(Q)}")
    if K.shape != Q.shape:
        raise ValueError(f"K must have shape (G, N, A) matching Q, got {_shape(Q)} and {_shape(K)}")
    A = Q.shape[2]
    if A == 0:
        raise ValueError(f"Q and K must have a non-empty attention dimension A, got {_shape(Q)}")
    if W2 is None:
        if b2 is not None:
            raise ValueError("b2 must be None when W2 is None (one send layer)")
        D = Hd
    else:
        if not isinstance(W2, torch.Tensor) or W2.dim() != 2 or W2.shape[1] != Hd:
            got = _shape(W2) if isinstance(W2, torch.Tensor) else repr(W2)
            raise ValueError(f"W2 must have shape (D, Hd) with Hd = {Hd}, got {got}")
        D = W2.shape[0]
        if D == 0:
            raise ValueError(f"W2 must have at least one row (message width D > 0), got {_shape(W2)}")
        if not isinstance(b2, torch.Tensor) or b2.shape != (D,):
            got = _shape(b2) if isinstance(b2, torch.Tensor) else repr(b2)
            raise ValueError(f"b2 must have shape (D,) = ({D},) when W2 is given, got {got}")

    floats = [("S", S), ("R", R), ("Q", Q), ("K", K)] + ([("W2", W2), ("b2", b2)] if W2 is not None else [])
    if S.dtype not in FLOAT_DTYPES:
        raise ValueError(f"S must be float16, bfloat16, float32 or float64, got {S.dtype}")
    for name, t in floats[1:]:
        if t.dtype != S.dtype:
            raise ValueError(f"{name} must have the dtype of S ({S.dtype}), got {t.dtype}")
        if t.device != S.device:
            raise ValueError(f"{name} must be on the device of S ({S.device}), got {t.device}")

    for name, t in (("indptr", indptr), ("indices", indices)):
        if t.dim() != 1 or t.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"{name} must be a 1-D int64 (or int32) tensor, got shape {_shape(t)} and {t.dtype}")
        if t.device != S.device:
            raise ValueError(f"{name} must be on the device of S ({S.device}), got {t.device}")
    if indptr.numel() != N + 1:
        raise ValueError(f"indptr must have shape (N + 1,) = ({N + 1},), got {_shape(indptr)}")

    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
        raise ValueError(f"heads must be a positive int, got {heads!r}")
    if A % heads or D % heads:
        raise ValueError(
            f"heads must divide the attention width A = {A} and the message width D = {D}, got heads={heads}"
        )
    if scale is None:
        scale = 1.0 / math.sqrt(A // heads)
    else:
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            raise ValueError(f"scale must be a float or None, got {scale!r}") from None
        if not math.isfinite(scale):
            raise ValueError(f"scale must be finite, got {scale}")
    return scale


def check_backward_tensors(dO, O, lse, S, W2, heads) -> None:
    """Shapes, dtypes and devices of the backward-only tensors (``S``, ``W2`` already checked)."""
    G, N, Hd = S.shape
    D = W2.shape[0] if W2 is not None else Hd
    for name, t, shape, dtype in (
        ("dO", dO, (G, N, D), S.dtype),
        ("O", O, (G, N, D), S.dtype),
        ("lse", lse, (G, N, heads), acc_dtype(S.dtype)),
    ):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} (from S, W2 and heads), got {_shape(t)}")
        if t.dtype != dtype:
            raise ValueError(f"{name} must have dtype {dtype}, got {t.dtype}")
        if t.device != S.device:
            raise ValueError(f"{name} must be on the device of S ({S.device}), got {t.device}")
