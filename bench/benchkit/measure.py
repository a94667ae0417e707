"""How a case is measured: device time, peak memory, out-of-memory detection.

Timing on a GPU: pytest-benchmark's timer reads the host clock, so it would see only the
launch unless each call synchronises, and a synchronise per call inflates microsecond
kernels. ``device_time`` therefore times on the device with CUDA events, after a warm-up,
with the L2 cache flushed before every repetition (a 256 MB buffer is zeroed, outside the
timed region), and returns the median and 20/80 percentiles. The host figure (one call plus
``torch.cuda.synchronize()``) is kept next to it by the caller.

Peak memory: the extra memory a call needs on top of what was live before it (its inputs).
GPU: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus
``memory_allocated()`` before the call. CPU: the process's peak resident set (VmHWM) after
resetting it through ``/proc/self/clear_refs`` ("5"), minus the resident set before the
call; freed heap memory is first handed back with ``malloc_trim(0)``, so pages the call
re-uses count as new. It is the true resident peak of the process, allocator slack and
fragmentation included, not a sum of tensor sizes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
import statistics
import time
from collections.abc import Callable

import torch

_L2_FLUSH_BYTES = 256 * 1024 * 1024


def is_oom(exc: BaseException) -> bool:
    """True for an allocation failure of torch on any device."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    if isinstance(exc, (RuntimeError, MemoryError)):
        msg = str(exc)
        return isinstance(exc, MemoryError) or "out of memory" in msg or "can't allocate memory" in msg
    return False


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def wall_time(fn: Callable[[], object], device: str) -> float:
    """Seconds of one call, synchronised on a GPU."""
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def quantile(sorted_xs: list[float], q: float) -> float:
    """Linear-interpolation quantile of an ascending list."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = q * (len(sorted_xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def device_time(fn: Callable[[], object], warmup_ms: float = 25.0, rep_ms: float = 100.0, max_reps: int = 1000) -> dict:
    """Median and 20/80 percentiles (milliseconds) of ``fn`` timed with CUDA events.

    As ``triton.testing.do_bench`` does: estimate one call, warm up for ``warmup_ms``, then
    repeat for about ``rep_ms`` (at least 5 repetitions), flushing L2 before each one.
    """
    flush = torch.empty(_L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(3):
        flush.zero_()
        fn()
    end.record()
    torch.cuda.synchronize()
    estimate = max(start.elapsed_time(end) / 3, 1e-3)
    n_warmup = max(1, int(warmup_ms / estimate))
    n_rep = min(max_reps, max(5, int(rep_ms / estimate)))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n_rep)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n_rep)]
    for _ in range(n_warmup):
        fn()
    for s, e in zip(starts, ends, strict=True):
        flush.zero_()  # outside the timed region: the call starts with a cold L2
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in zip(starts, ends, strict=True))
    del flush
    return {
        "median_ms": statistics.median(times),
        "p20_ms": quantile(times, 0.2),
        "p80_ms": quantile(times, 0.8),
        "min_ms": times[0],
        "reps": n_rep,
        "method": "cuda-events, L2 flushed, median",
    }


# ----------------------------------------------------------------------------- memory

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"
_libc = None


def _malloc_trim() -> None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name) if name else False
    if _libc and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)


def _status_kib(field: str) -> int:
    with open(_STATUS) as f:
        m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
    if m is None:
        raise OSError(f"{field} not in {_STATUS}")
    return int(m.group(1))


def cpu_peak_supported() -> str | None:
    """None when the CPU peak-RSS method works here, else why not."""
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        _status_kib("VmHWM")
    except OSError as exc:
        return f"peak RSS cannot be reset here ({exc})"
    return None


def peak_memory(fn: Callable[[], object], device: str) -> dict:
    """Extra bytes at the peak of one call of ``fn`` over what was live before it."""
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return {
            "peak_mem_bytes": int(torch.cuda.max_memory_allocated() - before),
            "mem_method": "torch.cuda.max_memory_allocated - memory_allocated before",
        }
    reason = cpu_peak_supported()
    if reason is not None:
        return {"peak_mem_bytes": None, "mem_method": reason}
    _malloc_trim()
    with open(_CLEAR_REFS, "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    out = fn()
    peak = _status_kib("VmHWM")
    del out
    return {
        "peak_mem_bytes": int(max(0, peak - before) * 1024),
        "mem_method": "VmHWM - VmRSS before (clear_refs 5, malloc_trim)",
    }
