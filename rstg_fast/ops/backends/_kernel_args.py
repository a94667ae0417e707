"""The named fields that the ``cpu`` and ``cuda`` launchers pass to their kernels.

Both entry points take one argument struct, ``MaArgs`` (``csrc/message_attention_args.h``),
filled from a dict by field name; :func:`op_fields` builds the part they share (dtype code,
sizes, scale, the op's inputs), each launcher adds its outputs and its own fields.
"""

from __future__ import annotations

import functools

import torch

from rstg_fast._ext import require_extension


def addr(t: torch.Tensor | None) -> int:
    """A buffer's address, 0 (null) for an absent one."""
    return t.data_ptr() if t is not None else 0


@functools.cache
def dtype_code(dtype: torch.dtype) -> int:
    """The ``MaDtype`` code of ``dtype`` (the module's ``dtype_codes``, from the C++ enum)."""
    return int(require_extension().dtype_codes[str(dtype).removeprefix("torch.")])


def op_fields(S, R, Q, K, W2, b2, indices, heads: int, scale: float) -> dict[str, int | float]:
    """``dtype``, the sizes ``G N E Hd D A heads``, ``scale`` and the inputs' addresses."""
    G, N, Hd = S.shape
    return {
        "dtype": dtype_code(S.dtype),
        "G": G,
        "N": N,
        "E": indices.numel(),
        "Hd": Hd,
        "D": W2.shape[0] if W2 is not None else Hd,
        "A": Q.shape[2],
        "heads": heads,
        "scale": float(scale),
        "S": S.data_ptr(),
        "R": R.data_ptr(),
        "Q": Q.data_ptr(),
        "K": K.data_ptr(),
        "W2": addr(W2),
        "b2": addr(b2),
    }
