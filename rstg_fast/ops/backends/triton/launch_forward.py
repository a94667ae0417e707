"""Launcher of the forward: allocation, schedule, grid and dtype choices."""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from rstg_fast.ops._dtypes import acc_dtype
from rstg_fast.ops.backends.triton import configs
from rstg_fast.ops.backends.triton.forward_kernel import _forward_kernel, _merge_kernel
from rstg_fast.ops.backends.triton.plan import Plan, get_plan

_TL_DTYPE = {
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
    torch.float32: tl.float32,
    torch.float64: tl.float64,
}


def tl_acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def dot_dtype(dtype: torch.dtype):
    """Operand dtype of ``tl.dot``: the input dtype, except bfloat16 under the interpreter.

    Triton's interpreter computes bfloat16 ``tl.dot`` wrongly (silently, as of 3.9), so there
    the bfloat16 tiles are widened to float32; everything else (loads, stores, conversions)
    stays as on the GPU.
    """
    if dtype == torch.bfloat16 and configs.INTERPRETED:
        return tl.float32
    return _TL_DTYPE[dtype]


def input_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` precision for float32 inputs, following PyTorch's own matmul setting.

    ``torch.backends.cuda.matmul.allow_tf32`` (False by default, i.e. full float32 like
    ``torch.matmul``) switches the edge products to TF32 tensor cores, as it does for cuBLAS.
    Half inputs always use their tensor cores; float64 ignores the setting.
    """
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def scale_tensor(scale: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The score scale as a ``(1,)`` tensor in the accumulation dtype of ``dtype``, for the kernels.

    Not a plain Python float argument: compiled Triton passes a Python float to a kernel as
    float32, so float64 inputs got a float32-rounded scale on the GPU (scores off by ~3e-8
    relative, far above the float64 tolerance), while the interpreter keeps it in float64 and
    hid the difference. Cached per value: read-only, no per-call allocation or fill kernel;
    except while a CUDA graph is being captured, where the fill would only be recorded (a
    cached tensor made then would stay unfilled for eager calls).
    """
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return torch.full((1,), scale, dtype=acc_dtype(dtype), device=device)
    return _cached_scale_tensor(scale, dtype, device)


@functools.lru_cache(maxsize=64)
def _cached_scale_tensor(scale: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Filled on a synchronised device, so a first use on another stream sees the value.
    out = torch.full((1,), scale, dtype=acc_dtype(dtype), device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out


def attention_block(A: int, heads: int) -> int:
    return max(2, triton.next_power_of_2(A // heads))


def forward_with_plan(S, R, Q, K, W2, b2, indices, plan: Plan, heads: int, scale: float):
    """``(O, lse)`` of ``message_attention`` with a given schedule (see ``plan.py``)."""
    G, N, Hd = S.shape
    A = Q.shape[2]
    D = W2.shape[0] if W2 is not None else Hd
    acc = acc_dtype(S.dtype)
    O = torch.empty((G, N, D), dtype=S.dtype, device=S.device)
    lse = torch.empty((G, N, heads), dtype=acc, device=S.device)
    P = plan.num_slots
    if P:  # partial results of split rows
        O_part = torch.empty((G, P, D), dtype=acc, device=S.device)
        lse_part = torch.empty((G, P, heads), dtype=acc, device=S.device)
    else:  # never touched without split rows: no allocation (per-call host time counts here)
        O_part, lse_part = lse, lse
    if G == 0 or N == 0:
        return O, lse
    w2 = W2 if W2 is not None else S  # any pointer: never read without W2
    bias = b2 if b2 is not None else S
    Dh = D // heads

    def grid(meta):
        return (plan.num_items, triton.cdiv(G, meta["BG"]), heads * triton.cdiv(Dh, meta["BD"]))

    _forward_kernel[grid](
        S, R, Q, K, w2, bias, indices, plan.items, O, lse, O_part, lse_part,
        G, N, max(P, 1), Hd, D, A, scale_tensor(float(scale), S.dtype, S.device),
        HEADS=heads, HAS_W2=W2 is not None, BA=attention_block(A, heads), ACC=tl_acc(S.dtype),
        DOT=dot_dtype(S.dtype), INPUT_PRECISION=input_precision(S.dtype),
    )  # fmt: skip
    if P:
        bg = 4
        _merge_kernel[(plan.merges.shape[0], triton.cdiv(G, bg))](
            O_part, lse_part, plan.merges, O, lse, G, N, P, D,
            HEADS=heads, ACC=tl_acc(S.dtype), BG=bg, BD=min(128, max(16, triton.next_power_of_2(Dh))),
        )  # fmt: skip
    return O, lse


def forward(S, R, Q, K, W2, b2, indptr, indices, heads, scale):
    """The backend contract's forward (see ``rstg_fast.ops.backends``)."""
    return forward_with_plan(S, R, Q, K, W2, b2, indices, get_plan(indptr, indices), heads, scale)
