"""The measurement sequence every case goes through, and the session state it shares.

For one case (an implementation on a shape, mode and dtype):
1. first call, timed on its own (``first_call_s``; for ``torch.compile`` it holds the
   compile, reported as ``compile_s = first_call_s - time``);
2. correctness gate on its results (fails the test loudly: nothing is timed);
3. peak memory of one more call (see ``measure.peak_memory``), whose duration sets the
   number of host rounds;
4. on a GPU, device time with CUDA events (``device_ms_*``);
5. host time through pytest-benchmark (``benchmark.pedantic``; on a GPU each call ends with
   ``torch.cuda.synchronize()``), ``max(min_rounds, max_time / one call)`` rounds;
6. FLOP rates from the headline time (device median on a GPU, host median on a CPU).
An allocation failure at any step records the case as ``status: oom`` (kept in the JSON
under ``rstg_unmeasured`` with its ``extra_info``) and skips the test instead of crashing.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch

from benchkit.measure import device_time, is_oom, peak_memory, quantile, synchronize, wall_time
from benchkit.peaks import Peaks


def mem_available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class BenchEnv:
    device: str
    peaks: Peaks
    commit: str = "unknown"  # stored in every case's extra_info, next to its numbers
    unmeasured: list = field(default_factory=list)
    gate_cache: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    _gate_budget: int | None = None

    def gate_budget_bytes(self) -> int:
        """Memory the float64 reference of the gate may take; larger gates run scaled down.

        Fixed at its first use, so every implementation of a case is gated on the same shape.
        """
        if self._gate_budget is None:
            if self.device == "cuda":
                torch.cuda.empty_cache()
                free, _ = torch.cuda.mem_get_info()
                self._gate_budget = free // 3
            else:
                self._gate_budget = min(6 << 30, mem_available_bytes() // 3)
        return self._gate_budget

    def run_budget_bytes(self) -> int | None:
        """On a CPU, a case predicted to need more is recorded as OOM instead of risking the
        kernel's OOM killer (which would end the whole session). None: no prediction
        (on a GPU an allocation failure is an exception and is caught)."""
        return None if self.device == "cuda" else int(0.7 * mem_available_bytes())

    def cached(self, key, compute: Callable):
        """Gate references, kept for the few cases that share them (providers of one case)."""
        if key in self.gate_cache:
            self.gate_cache.move_to_end(key)
            return self.gate_cache[key]
        value = compute()
        self.gate_cache[key] = value
        while len(self.gate_cache) > 2:
            self.gate_cache.popitem(last=False)
        return value


class OutOfMemory(Exception):
    pass


def record_unmeasured(env: BenchEnv, request, benchmark, info: dict, status: str, reason: str) -> None:
    """Keep a case that could not be measured in the JSON, then skip its test."""
    info = dict(info, status=status, reason=reason)
    env.unmeasured.append(
        {
            "group": benchmark.group,
            "name": request.node.name,
            "fullname": request.node.nodeid,
            "param": getattr(request.node, "callspec", None) and request.node.callspec.id,
            "extra_info": info,
        }
    )
    if env.device == "cuda":
        torch.cuda.empty_cache()
    pytest.skip(f"{status}: {reason}")


def guard_oom(step: Callable):
    """Run ``step``; an allocation failure becomes ``OutOfMemory`` (recorded by ``run_case``)."""
    try:
        return step()
    except Exception as exc:  # noqa: BLE001 - only allocation failures are turned into records
        if is_oom(exc):
            raise OutOfMemory(f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
        raise


def measure(
    benchmark,
    env: BenchEnv,
    info: dict,
    dtype: torch.dtype,
    call: Callable[[], dict],
    gate: Callable[[dict], dict],
    flops: dict | Callable[[], dict],
) -> None:
    """Run steps 1-6 above for ``call`` (a zero-argument callable returning result tensors).

    ``flops``: ``{"flops": total, "edge_flops": edge products}`` or a callable giving it
    once the gate has run (the model counts its FLOPs on the gate's oracle).
    """
    device = env.device
    result: dict = {}

    def first():
        result.update(call())

    info["first_call_s"] = guard_oom(lambda: wall_time(first, device))
    info.update(guard_oom(lambda: gate(result)))
    result.clear()
    if callable(flops):
        flops = flops()
    t0 = time.perf_counter()
    info.update(guard_oom(lambda: peak_memory(call, device)))
    one = time.perf_counter() - t0  # one warm call (plus microseconds of bookkeeping)

    if device == "cuda":
        dev = guard_oom(lambda: device_time(call))
        info.update({f"device_{k}": v for k, v in dev.items() if k.endswith("_ms")})
        info["device_reps"], info["device_timing"] = dev["reps"], dev["method"]

        def host_call():
            call()
            torch.cuda.synchronize()
    else:
        host_call = call

    min_rounds = int(getattr(benchmark, "_min_rounds", 5))
    max_time = float(getattr(benchmark, "_max_time", 1.0))
    rounds = max(min_rounds, min(100_000, math.ceil(max_time / max(one, 1e-6))))
    guard_oom(lambda: benchmark.pedantic(host_call, rounds=rounds, iterations=1, warmup_rounds=0))
    synchronize(device)

    host_median = benchmark.stats.stats.median if benchmark.stats is not None else one
    info["host_ms_median"] = host_median * 1e3
    if benchmark.stats is not None:
        data = sorted(benchmark.stats.stats.data)
        info["host_ms_p20"], info["host_ms_p80"] = quantile(data, 0.2) * 1e3, quantile(data, 0.8) * 1e3
    info["host_rounds"] = rounds
    if device == "cuda":
        info["time_ms"], info["time_source"] = info["device_median_ms"], "device (CUDA events)"
        info["time_p20_ms"], info["time_p80_ms"] = info["device_p20_ms"], info["device_p80_ms"]
    else:
        info["time_ms"], info["time_source"] = host_median * 1e3, "host (time.perf_counter)"
        info["time_p20_ms"], info["time_p80_ms"] = info.get("host_ms_p20"), info.get("host_ms_p80")
    seconds = info["time_ms"] * 1e-3
    if "compile" in info.get("provider_kind", ""):
        info["compile_s"] = max(0.0, info["first_call_s"] - seconds)
    peak = env.peaks.get(dtype) if flops.get("flops") else {}
    info.update(flops)
    if flops.get("flops"):
        info["gflops_per_s"] = flops["flops"] / seconds / 1e9
        info["peak_gflops"] = peak["peak_gflops"]
        info["peak_source"] = peak["peak_source"]
        info["frac_peak"] = info["gflops_per_s"] / peak["peak_gflops"]
        if flops.get("edge_flops"):
            info["edge_gflops_per_s"] = flops["edge_flops"] / seconds / 1e9
        if "peak_tf32_gflops" in peak:  # float32 on a GPU: kernels may use TF32 tensor cores
            info["peak_tf32_gflops"] = peak["peak_tf32_gflops"]
            info["frac_peak_tf32"] = info["gflops_per_s"] / peak["peak_tf32_gflops"]
    info["status"] = "ok"
    benchmark.extra_info.update(info)


def run_case(benchmark, request, env: BenchEnv, info: dict, body: Callable[[], None]) -> None:
    """Run ``body`` (which calls ``measure``) turning out-of-memory into a record."""
    t0 = time.perf_counter()
    if env.device == "cuda":
        torch.cuda.empty_cache()  # memory cached by earlier cases must not shrink this one's budget
    try:
        body()
    except OutOfMemory as exc:
        record_unmeasured(env, request, benchmark, info, "oom", str(exc))
    finally:
        info["case_wall_s"] = time.perf_counter() - t0
        if "status" in benchmark.extra_info:
            benchmark.extra_info["case_wall_s"] = info["case_wall_s"]


def skip_unrunnable(env: BenchEnv, request, benchmark, info: dict, case, edge_bytes: int) -> None:
    """Skip a case its provider cannot run here, or record it as OOM (without running it)
    when its materialised edges (``edge_bytes``) would not fit the memory budget."""
    reason = case.shape.skip_reason or case.provider.unavailable(env.device, case.dtype)
    if reason:
        import pytest

        pytest.skip(reason)
    budget = env.run_budget_bytes()
    if budget is not None and case.provider.materialises_edges and edge_bytes > budget:
        record_unmeasured(
            env,
            request,
            benchmark,
            info,
            "oom",
            f"predicted {edge_bytes / 2**30:.1f} GiB > {budget / 2**30:.1f} GiB available (not run)",
        )
