"""Correctness gate: a case is timed only after its outputs (and, for forward+backward, all
its gradients) match a float64 reference on the same inputs.

The measure is the norm-relative error ``||x - ref|| / ||ref||`` of each tensor, plus the
largest element error relative to the largest reference element (so a few wrong rows cannot
hide in a large norm), and no NaN/inf. The bound is the larger of a per-dtype tolerance and
10x the error of the reference computed in the case's own dtype (PyTorch's own error at that
precision). Tolerances, per dtype and device (float32 on CUDA
allows TF32 products, which the Triton kernels and cuDNN use by default); the model, a deep
stack of layers, gets ``MODEL_FACTOR`` times more:
"""

from __future__ import annotations

import pytest
import torch

TOLERANCE = {
    # (dtype, device type): norm-relative error bound
    (torch.float64, "cpu"): 1e-10,
    (torch.float64, "cuda"): 1e-10,
    (torch.float32, "cpu"): 1e-4,
    (torch.float32, "cuda"): 2e-3,
    (torch.float16, "cpu"): 5e-3,
    (torch.float16, "cuda"): 5e-3,
    (torch.bfloat16, "cpu"): 3e-2,
    (torch.bfloat16, "cuda"): 3e-2,
}
MODEL_FACTOR = 2.5
MAX_ELEMENT_FACTOR = 10.0  # the largest element error may be this many times the norm bound
BASE_FACTOR = 10.0  # an implementation may be this many times less accurate than PyTorch in its dtype


class GateFailure(AssertionError):
    pass


def tolerance(dtype: torch.dtype, device: str, level: str) -> float:
    tol = TOLERANCE[(dtype, device)]
    return tol * MODEL_FACTOR if level == "model" else tol


def _errors(got64: torch.Tensor, ref64: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    """Norm-relative error, max element error relative to max |ref| (absolute when ref is 0)."""
    diff = (got64 - ref64).abs()
    ref_norm = ref64.norm().item()
    ref_max = ref64.abs().max().item() if ref64.numel() else 0.0
    dmax = diff.max().item() if diff.numel() else 0.0
    rel = diff.norm().item() / ref_norm if ref_norm > 0 else diff.norm().item()
    rel_max = dmax / ref_max if ref_max > 0 else dmax
    return rel, rel_max, diff


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float64)


def compare(name: str, got, ref, tol: float, same_dtype=None) -> dict:
    """Errors of one tensor; raises ``GateFailure`` with the worst element when off.

    ``same_dtype``: the reference computed in the case's own dtype. Its error against the
    float64 oracle is what PyTorch itself gets at that precision; the bound is the larger
    of ``tol`` and 10x that error (this matters for tensors that are zero in exact
    arithmetic, such as the gradient of the key bias, which the softmax cancels).
    """
    if ref is None and got is None:
        return {}
    if got is None or ref is None:
        raise GateFailure(
            f"{name}: got {'None' if got is None else 'a tensor'}, "
            f"reference has {'None' if ref is None else 'a tensor'}"
        )
    if got.shape != ref.shape:
        raise GateFailure(f"{name}: shape {tuple(got.shape)} != reference {tuple(ref.shape)}")
    got64, ref64 = _f64(got), _f64(ref)
    if not torch.isfinite(got64).all():
        bad = (~torch.isfinite(got64)).nonzero()[:3].tolist()
        raise GateFailure(f"{name}: non-finite values at {bad}")
    rel, rel_max, diff = _errors(got64, ref64)
    bound, bound_max = tol, tol * MAX_ELEMENT_FACTOR
    if same_dtype is not None:
        base_rel, base_max, _ = _errors(_f64(same_dtype), ref64)
        bound, bound_max = max(bound, BASE_FACTOR * base_rel), max(bound_max, BASE_FACTOR * base_max)
    if rel > bound or rel_max > bound_max:
        worst = diff.flatten().argmax().item()
        idx = [int(i) for i in torch.unravel_index(torch.tensor(worst), diff.shape)] if diff.dim() else []
        raise GateFailure(
            f"{name}: norm-relative error {rel:.3g} (bound {bound:.3g}), max element error {rel_max:.3g} of max |ref| "
            f"(bound {bound_max:.3g}); worst at {idx}: got {got64.flatten()[worst].item():.6g}, "
            f"reference {ref64.flatten()[worst].item():.6g}"
        )
    return {name: rel}


def check(results: dict, reference: dict, tol: float, what: str, same_dtype: dict | None = None) -> dict:
    """Compare every named tensor; on failure the test fails loudly and nothing is timed.

    ``reference``: the float64 oracle; ``same_dtype``: the reference in the case's dtype
    (see ``compare``).
    """
    errors: dict[str, float] = {}
    try:
        for name in reference:
            errors.update(compare(name, results.get(name), reference[name], tol, (same_dtype or {}).get(name)))
    except GateFailure as exc:
        pytest.fail(f"correctness gate failed for {what}; refusing to time it: {exc}", pytrace=False)
    return {"gate_tol": tol, "gate_max_rel_err": max(errors.values(), default=0.0), "gate_checked": sorted(errors)}
