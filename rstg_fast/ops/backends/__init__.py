"""Backends of ``message_attention``: one contract, several implementations.

A backend module exposes

    forward(S, R, Q, K, W2, b2, indptr, indices, heads, scale) -> (O, lse)
    backward(dO, S, R, Q, K, W2, b2, indptr, indices, O, lse, heads, scale)
        -> (dS, dR, dQ, dK, dW2 | None, db2 | None)

and receives contiguous, validated tensors on one device (indptr/indices int64; widths
``Hd``, ``D``, ``A`` at least 1, ``G`` or ``N`` possibly 0), a concrete ``heads`` and
``scale``. ``O`` has the input dtype; ``lse`` is float32 (float64 for float64 inputs).
Backends are imported lazily, so ``import rstg_fast`` stays cheap and never compiles Triton
or touches CUDA.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch

_ALL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class BackendSpec:
    name: str
    module: str  # import path of the module with forward/backward
    devices: tuple[str, ...]  # torch device types it runs on
    dtypes: tuple[torch.dtype, ...]
    unavailable: Callable[[torch.device], str | None]  # None when usable on that device, else why not


def _always(device: torch.device) -> str | None:
    return None


def _triton_unavailable(device: torch.device) -> str | None:
    """Why the ``triton`` backend cannot run on ``device`` (None when it can).

    Decided without importing triton (``import rstg_fast`` must stay cheap). On CPU tensors
    Triton runs only in its interpreter, which must be chosen before the kernels are
    created: ``TRITON_INTERPRET=1`` in the environment before the backend is first used.
    """
    import importlib.util
    import os
    import sys

    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install triton)"
    kernels = sys.modules.get("rstg_fast.ops.backends.triton.configs")
    live = os.environ.get("TRITON_INTERPRET") == "1"
    if device.type == "cpu":
        if not live:
            return "Triton runs on CPU tensors only under TRITON_INTERPRET=1, for tests"
        if kernels is not None and not kernels.INTERPRETED:
            return "its kernels were created before TRITON_INTERPRET=1 was set; set it before first use"
    if device.type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available"
    return None


_cpu_kernels: list[str | None] = []  # the answer, once known (a plain cache dynamo can trace)


def _cpu_kernels_missing(device: torch.device) -> str | None:
    if not _cpu_kernels:
        from rstg_fast._ext import extension  # lazy: loads the module on first use only

        _cpu_kernels.append(None if extension() is not None else "rstg_fast._C not built")
    return _cpu_kernels[0]


def _cuda_unavailable(device: torch.device) -> str | None:
    from rstg_fast._ext import build_info

    if not build_info()["cuda"]:
        return "rstg_fast was built without CUDA (nvcc not found or RSTG_FAST_CUDA=0)"
    if device.type == "cuda" and not torch.cuda.is_available():
        if torch.version.cuda is None:
            return f"torch {torch.__version__} is built without CUDA"
        return "no CUDA device is visible (no GPU, no driver, or CUDA_VISIBLE_DEVICES is empty)"
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 0):
        return "the CUDA kernels need compute capability 8.0 or newer (tensor-core bfloat16/tf32)"
    return None


BACKENDS: dict[str, BackendSpec] = {
    "reference": BackendSpec("reference", "rstg_fast.ops.backends.reference", ("cpu", "cuda"), _ALL_FLOATS, _always),
    # float64 compiles for sm_90 (ptxas) and is exact in the interpreter; bfloat16 on CPU is
    # interpreter-only and uses float32 tl.dot there (see docs/triton_backend.md).
    "triton": BackendSpec("triton", "rstg_fast.ops.backends.triton", ("cuda", "cpu"), _ALL_FLOATS, _triton_unavailable),
    "cpu": BackendSpec(
        "cpu", "rstg_fast.ops.backends.cpu", ("cpu",), (torch.float32, torch.float64), _cpu_kernels_missing
    ),
    "cuda": BackendSpec(
        "cuda",
        "rstg_fast.ops.backends.cuda",
        ("cuda",),
        (torch.float16, torch.bfloat16, torch.float32),
        _cuda_unavailable,
    ),
}


_modules: dict[str, ModuleType] = {}


def module(name: str) -> ModuleType:
    mod = _modules.get(name)
    if mod is None:
        mod = _modules[name] = importlib.import_module(BACKENDS[name].module)
    return mod


def auto_backend(device: torch.device, dtype: torch.dtype) -> str:
    """The backend ``backend="auto"`` resolves to for tensors on ``device`` of ``dtype``.

    Rule: the fastest usable fused backend for the device (docs/architecture.md, measured in
    docs/benchmarks.md), falling back to ``reference`` when no fused backend supports the
    device and dtype.
    """
    for name in AUTO_ORDER.get(device.type, ()):
        spec = BACKENDS.get(name)
        if spec is not None and dtype in spec.dtypes and unavailable(name, device) is None:
            return name
    return "reference"


# Preference per device type, fastest first (measured: docs/benchmarks.md). ``triton`` and
# ``cuda`` join "cuda" only once they have run and been measured on a GPU.
AUTO_ORDER: dict[str, tuple[str, ...]] = {"cpu": ("cpu",), "cuda": ()}


def check_backend_name(backend) -> str:
    """``backend`` if it is ``"auto"`` or a registered backend's name, else ValueError naming it
    (the model constructors check their ``backend`` argument with this, before any tensor)."""
    if not isinstance(backend, str) or (backend != "auto" and backend not in BACKENDS):
        raise ValueError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {backend!r}")
    return backend


def resolve_backend(backend, device: torch.device, dtype: torch.dtype) -> str:
    """Resolve ``"auto"`` and check the backend runs on ``device`` and ``dtype`` and is usable
    here; ValueError naming ``backend`` otherwise."""
    if not isinstance(backend, str):
        raise ValueError(f"backend must be a string, got {backend!r}")
    if backend == "auto":
        backend = auto_backend(device, dtype)
    spec = BACKENDS.get(check_backend_name(backend))
    if device.type not in spec.devices:
        raise ValueError(f"backend {backend!r} runs on {spec.devices} tensors, got tensors on {device}")
    if dtype not in spec.dtypes:
        raise ValueError(f"backend {backend!r} supports {[str(d) for d in spec.dtypes]}, got {dtype}")
    why = unavailable(backend, device)
    if why is not None:
        raise ValueError(f"backend {backend!r} is not available: {why}")
    return backend


# Availability of a backend on a device is decided once per process and interpreter setting
# (it asks the build, the driver and the environment): per-call cost matters at the paper's
# shapes. TRITON_INTERPRET is part of the key because tests switch it on and off.
_availability: dict[tuple[str, torch.device, str | None], str | None] = {}


def unavailable(backend: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot run on ``device`` here (None: it can); asked once per process."""
    key = (backend, device, os.environ.get("TRITON_INTERPRET"))
    if key not in _availability:
        _availability[key] = BACKENDS[backend].unavailable(device)
    return _availability[key]
