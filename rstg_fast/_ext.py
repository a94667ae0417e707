"""Lazy access to the compiled extension ``rstg_fast._C``.

Importing ``rstg_fast`` never loads the extension nor initialises CUDA; the first kernel
call does. ``build_info()`` reports what the installed build contains.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

_loaded: list[ModuleType | None] = []  # the answer, once known: a plain cache that
# torch.compile can trace when the first call happens inside a compiled model (an lru_cache
# made dynamo warn on every such compile)


def extension() -> ModuleType | None:
    """The compiled module, or None when this install has no compiled kernels."""
    if not _loaded:
        try:
            from rstg_fast import _C
        except ImportError:
            _C = None
        _loaded.append(_C)
    return _loaded[0]


def require_extension() -> ModuleType:
    ext = extension()
    if ext is None:
        raise RuntimeError(
            "rstg_fast was imported without its compiled extension rstg_fast._C; "
            "install the package with `pip install .` (a source tree on sys.path has no kernels)."
        )
    return ext


def build_info() -> dict[str, Any]:
    """What this build of rstg_fast contains (computed once per process; see below)."""
    return dict(_build_info())


@functools.cache
def _build_info() -> dict[str, Any]:
    """What this build of rstg_fast contains.

    Returns a dict with ``cpu`` (the C++ CPU kernels are built), ``cuda`` (the CUDA
    kernels are built), ``cuda_archs`` (SM versions compiled, e.g. ``[80, 90]``),
    ``openmp`` (CPU kernels are multi-threaded), ``cpu_isa`` (the instruction-set target of
    the CPU kernels), ``cpu_vector_bytes`` (their vector width: 64 with AVX-512, 32 with
    AVX/AVX2, 16 otherwise; it selects the micro-kernel's code path) and ``triton`` (the
    Triton package is importable).
    """
    import importlib.util

    ext = extension()
    return {
        "cpu": ext is not None,
        "cuda": bool(ext is not None and ext.with_cuda),
        "cuda_archs": list(ext.cuda_archs) if ext is not None else [],
        "openmp": bool(ext is not None and ext.with_openmp),
        "cpu_isa": str(ext.cpu_isa) if ext is not None else None,
        "cpu_vector_bytes": int(ext.cpu_vector_bytes) if ext is not None else None,
        "triton": importlib.util.find_spec("triton") is not None,
    }
