"""The implementations a benchmark case compares, discovered from the backend registry.

Op level (callables with the signature of ``message_attention_reference``, returning
``(O, lse_or_None)``):
- ``reference``: ``message_attention_reference`` in eager PyTorch with plain autograd (it
  materialises every edge; the baseline every speedup is quoted against);
- ``compile-reference``: ``torch.compile`` of that same function (compiled on the case's
  first call, cold: in-process caches reset and Inductor's on-disk caches off, so the
  compile time it reports is a full compile);
- ``pyg``: ``bench/pyg_space_stage.py``, PyTorch Geometric's MessagePassing + softmax;
- one provider per backend in ``rstg_fast.ops.backends.BACKENDS`` other than ``reference``
  (which is the oracle of the op's tests, already measured as ``reference``), called
  through the public ``rstg_fast.ops.message_attention`` with ``backend=<name>``. New
  backends appear here as soon as they are registered.

Model level: ``reference`` (``rstg_fast.reference.RSTG``), ``compile-reference``
(``torch.compile`` of it) and ``fast-<backend>`` (``rstg_fast.RSTG(backend=<backend>)``)
for each fused backend usable on the device (``fast-reference`` when there is none).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch

# Backends that run on CPU tensors only in an interpreter meant for tests: listed in the
# registry for CPU, but not a benchmark subject there.
INTERPRETED_ON_CPU = {
    "triton": "Triton runs on CPU tensors only in its interpreter (a correctness tool, not a benchmark subject)"
}


@dataclass(frozen=True)
class Provider:
    name: str  # id in test names and reports
    label: str  # what the report prints
    kind: str  # reference | compile | pyg | backend | fast
    backend: str | None = None

    def unavailable(self, device: str, dtype: torch.dtype) -> str | None:
        """None when this provider can run on ``device`` in ``dtype``, else why not."""
        if self.kind == "pyg" and importlib.util.find_spec("torch_geometric") is None:
            return "torch_geometric is not installed (pip install 'rstg_fast[pyg]')"
        if self.backend is not None and self.backend != "reference":
            return backend_unavailable(self.backend, device, dtype)
        return None

    @property
    def materialises_edges(self) -> bool:
        """True for implementations whose memory grows with G * E * D (no fused kernel)."""
        return self.kind in ("reference", "compile", "pyg") or self.backend == "reference"


def backend_unavailable(name: str, device: str, dtype: torch.dtype) -> str | None:
    from rstg_fast.ops import backends  # noqa: PLC0415

    spec = backends.BACKENDS.get(name)
    if spec is None:
        return f"backend {name!r} is not registered in rstg_fast.ops.backends.BACKENDS"
    if device == "cpu" and name in INTERPRETED_ON_CPU:
        return INTERPRETED_ON_CPU[name]
    if device not in spec.devices:
        return f"backend {name!r} does not run on {device} tensors (devices: {', '.join(spec.devices)})"
    if dtype not in spec.dtypes:
        return f"backend {name!r} does not support {dtype}"
    reason = spec.unavailable(torch.device(device))
    return f"backend {name!r} unavailable on {device}: {reason}" if reason else None


def registered_backends() -> list[str]:
    from rstg_fast.ops import backends  # noqa: PLC0415

    return list(backends.BACKENDS)


def op_providers() -> list[Provider]:
    out = [
        Provider("reference", "reference", "reference"),
        Provider("compile-reference", "torch.compile(reference)", "compile"),
        Provider("pyg", "PyG MessagePassing", "pyg"),
    ]
    out += [Provider(name, name, "backend", name) for name in registered_backends() if name != "reference"]
    return out


def model_providers(device: str) -> list[Provider]:
    out = [
        Provider("reference", "reference.RSTG", "reference"),
        Provider("compile-reference", "torch.compile(reference.RSTG)", "compile"),
    ]
    fused = [n for n in registered_backends() if n != "reference"]
    out += [Provider(f"fast-{n}", f"RSTG[{n}]", "fast", n) for n in fused]
    if not any(backend_unavailable(n, device, torch.float32) is None for n in fused):
        out.append(Provider("fast-reference", "RSTG[reference]", "fast", "reference"))
    return out


@contextlib.contextmanager
def cold_compile():
    """Turn Inductor's and AOTAutograd's on-disk caches off, so a compile is a full one."""
    patches = []
    try:
        import torch._functorch.config as functorch_config  # noqa: PLC0415
        import torch._inductor.config as inductor_config  # noqa: PLC0415

        for mod, key in (
            (inductor_config, "fx_graph_cache"),
            (inductor_config, "fx_graph_remote_cache"),
            (inductor_config, "autotune_local_cache"),
            (functorch_config, "enable_autograd_cache"),
        ):
            if hasattr(mod, key):
                patches.append((mod, key, getattr(mod, key)))
                setattr(mod, key, False)
        yield
    finally:
        for mod, key, old in patches:
            setattr(mod, key, old)


def compiled(fn: Callable) -> Callable:
    """``torch.compile(fn)`` with dynamo's caches reset (no recompile limits carried over
    from other cases), compiled cold on its first call."""
    torch._dynamo.reset()
    compiled_fn = torch.compile(fn, dynamic=False)
    state = {"first": True}

    def call(*args, **kwargs):
        if state["first"]:
            state["first"] = False
            with cold_compile():
                return compiled_fn(*args, **kwargs)
        return compiled_fn(*args, **kwargs)

    return call


def build_op(provider: Provider) -> Callable:
    """The callable of an op provider: ``f(S, R, Q, K, W2, b2, indptr, indices, heads, scale)``."""
    from rstg_fast.ops.backends.reference import message_attention_reference  # noqa: PLC0415

    if provider.kind == "reference":
        return message_attention_reference
    if provider.kind == "compile":
        return compiled(message_attention_reference)
    if provider.kind == "pyg":
        from pyg_space_stage import PygSpaceStage  # noqa: PLC0415

        return PygSpaceStage()
    from rstg_fast.ops import message_attention  # noqa: PLC0415

    name = provider.backend

    def fused(S, R, Q, K, W2, b2, indptr, indices, heads, scale):
        return message_attention(S, R, Q, K, W2, b2, indptr, indices, heads=heads, scale=scale, backend=name), None

    return fused
