"""The machine's arithmetic peak, measured in the same run as the cases it is compared with.

GPU: the dense matmul rate for the dtype, an 8192^3 ``torch.matmul`` on random data timed
with CUDA events (PyTorch's default precision settings; for float32 also the TF32 rate).
CPU: the float32 FMA peak of the C++ extension's register-only FMA loop
(``rstg_fast._C.cpu_fma_peak_gflops(threads, seconds)``) when the build has it, else the
rate of a 4096^3 float32 ``torch.matmul`` (a lower bound of the peak). The source is stored
with the number.
"""

from __future__ import annotations

import time

import torch

from benchkit.measure import device_time


def _matmul_gflops_cuda(n: int, dtype: torch.dtype) -> float:
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    ms = device_time(lambda: torch.matmul(a, b), warmup_ms=50, rep_ms=200)["median_ms"]
    return 2 * n**3 / (ms * 1e-3) / 1e9


def gpu_peak(dtype: torch.dtype) -> dict:
    n = 8192 if dtype != torch.float64 else 4096
    out = {
        "peak_gflops": _matmul_gflops_cuda(n, dtype),
        "peak_source": f"torch.matmul {n}^3 {str(dtype).removeprefix('torch.')} on {torch.cuda.get_device_name()}"
        + (
            " (IEEE float32, allow_tf32=False)"
            if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32
            else ""
        ),
    }
    if dtype == torch.float32:
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            out["peak_tf32_gflops"] = _matmul_gflops_cuda(n, dtype)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
    return out


def _cpu_matmul_gflops(n: int = 4096, reps: int = 2) -> float:
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.matmul(a, b)  # warm-up: thread pool, page faults
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def cpu_peak(dtype: torch.dtype) -> dict:
    threads = torch.get_num_threads()
    try:
        from rstg_fast import _C  # noqa: PLC0415 - optional: only builds with kernels have it

        fma = getattr(_C, "cpu_fma_peak_gflops", None)
    except ImportError:
        fma = None
    if fma is not None:
        gflops = float(fma(threads, 1.0))
        source = f"rstg_fast._C.cpu_fma_peak_gflops({threads} threads, 1 s), float32 FMA loop"
        if dtype == torch.float64:
            gflops /= 2  # same vector width, half the lanes
            source += ", halved for float64"
        out = {"peak_gflops": gflops, "peak_source": source}
        micro = getattr(_C, "cpu_microkernel_gflops", None)
        if micro is not None and dtype == torch.float32:
            # the cpu backend's own micro-kernel on cached data: what its edge products can reach
            out["microkernel_gflops"] = float(micro(threads, 0.5))
        return out
    return {
        "peak_gflops": _cpu_matmul_gflops(),
        "peak_source": f"torch.matmul 4096^3 float32, {threads} threads "
        "(no cpu_fma_peak_gflops in this build; a lower bound of the FMA peak)",
    }


class Peaks:
    """Per-dtype peak rates of one device, measured once per session on first use."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._cache: dict[torch.dtype, dict] = {}

    def get(self, dtype: torch.dtype) -> dict:
        if dtype not in self._cache:
            self._cache[dtype] = gpu_peak(dtype) if self.device == "cuda" else cpu_peak(dtype)
        return self._cache[dtype]

    def as_dict(self) -> dict:
        return {str(k).removeprefix("torch."): v for k, v in self._cache.items()}
