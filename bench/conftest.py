"""pytest configuration of the benchmark suite: ``pytest bench/`` (see docs/benchmarking.md).

Cases are generated here from the command line: shapes (docs/design.md §5) x modes x dtypes x
providers (every registered backend, plus reference, torch.compile(reference) and PyG).
Options:

  --bench-device=auto|cpu|cuda   where to run (auto: cuda when available)
  --bench-shapes=syncmnist,paper,dense,huge
  --bench-backends=NAMES         keep only these providers (e.g. reference,cpu,compile-reference)
  --bench-dtypes=float32,...     default float32 on CPU, bfloat16,float32 on CUDA
  --bench-modes=fwd,fwdbwd       forward only; forward+backward (the model runs fwdbwd only)
  --bench-scale=auto|full|N      auto: CPU default sizes (large shapes scaled down in G), full
                                 size on GPU; full: canonical sizes everywhere; N: G <= N
  --bench-heads=1                attention heads of the op cases
  --bench-deadline=S             no case starts S seconds after the session start (they skip)
  --bench-record=PATH            append every finished case to PATH at once (JSON lines)
  --bench-resume                 with --bench-record: skip the cases PATH already holds
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time

import pytest
import torch
from benchkit import record
from benchkit import shapes as shapes_mod
from benchkit.cases import Case, cpu_model, device_name
from benchkit.peaks import Peaks
from benchkit.providers import Provider, model_providers, op_providers
from benchkit.runner import BenchEnv
from benchkit.session import BenchSession

_ENV_KEY = pytest.StashKey[BenchEnv]()
_DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_MODES = ("fwd", "fwdbwd")


def pytest_addoption(parser):
    group = parser.getgroup("rstg-bench", "rstg_fast benchmark cases")
    group.addoption("--bench-device", default="auto", choices=("auto", "cpu", "cuda"), help="device to benchmark on")
    group.addoption("--bench-shapes", default=",".join(shapes_mod.CANONICAL), help="comma list of canonical shapes")
    group.addoption("--bench-backends", default="", help="comma list of provider names to keep (default: all)")
    group.addoption(
        "--bench-dtypes", default="", help="comma list of dtypes (default: float32 on CPU, bfloat16,float32 on CUDA)"
    )
    group.addoption("--bench-modes", default=",".join(_MODES), help="comma list of op modes: fwd, fwdbwd")
    group.addoption("--bench-scale", default="auto", help="auto | full | N (cap on graphs per case)")
    group.addoption("--bench-heads", default=1, type=int, help="attention heads of the op cases")
    group.addoption(
        "--bench-deadline",
        default=0.0,
        type=float,
        help="seconds after the session start when no new case starts (the rest skip, the JSON is still written)",
    )
    group.addoption(
        "--bench-record",
        default="",
        metavar="PATH",
        help="append each finished case to this JSON-lines file as soon as it ends (bench/report.py reads it)",
    )
    group.addoption(
        "--bench-resume",
        action="store_true",
        help="with --bench-record: skip cases already in the record (same commit, device, threads, --bench-scale)",
    )


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def bench_device(config) -> str:
    device = config.getoption("--bench-device")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--bench-device=cuda but torch.cuda.is_available() is False")
    return device


def _dtypes(config, device: str) -> list[torch.dtype]:
    names = _split(config.getoption("--bench-dtypes")) or (["float32"] if device == "cpu" else ["bfloat16", "float32"])
    unknown = [n for n in names if n not in _DTYPES]
    if unknown:
        raise pytest.UsageError(f"--bench-dtypes: unknown {unknown}; choose from {sorted(_DTYPES)}")
    return [_DTYPES[n] for n in names]


def _shapes(config, device: str, level: str) -> list[shapes_mod.Shape]:
    names = _split(config.getoption("--bench-shapes"))
    unknown = [n for n in names if n not in shapes_mod.CANONICAL]
    if unknown:
        raise pytest.UsageError(f"--bench-shapes: unknown {unknown}; choose from {list(shapes_mod.CANONICAL)}")
    scale = config.getoption("--bench-scale")
    if scale not in ("auto", "full") and not scale.isdigit():
        raise pytest.UsageError(f"--bench-scale must be auto, full or a positive integer, got {scale!r}")
    return shapes_mod.resolve(names, device, scale, level)


def _keep(config, providers: list[Provider]) -> list[Provider]:
    wanted = _split(config.getoption("--bench-backends"))
    return [p for p in providers if not wanted or p.name in wanted or p.backend in wanted]


def pytest_generate_tests(metafunc):
    config = metafunc.config
    device = bench_device(config)
    if "op_case" in metafunc.fixturenames:
        modes = _split(config.getoption("--bench-modes"))
        bad = [m for m in modes if m not in _MODES]
        if bad:
            raise pytest.UsageError(f"--bench-modes: unknown {bad}; choose from {_MODES}")
        heads = config.getoption("--bench-heads")
        cases = [
            Case("op", shape, mode, dtype, provider, heads)
            for shape in _shapes(config, device, "op")
            for mode in modes
            for dtype in _dtypes(config, device)
            for provider in _keep(config, op_providers())
        ]
        metafunc.parametrize("op_case", cases, ids=[c.id for c in cases])
    if "paired_case" in metafunc.fixturenames:
        # Backends against the reference in interleaved rounds (test_bench_paired.py): fwdbwd
        # only, so none when --bench-modes leaves it out.
        fwdbwd = "fwdbwd" in _split(config.getoption("--bench-modes"))
        cases = [
            Case("paired", shape, "fwdbwd", dtype, provider, config.getoption("--bench-heads"))
            for shape in (_shapes(config, device, "op") if fwdbwd else [])
            for dtype in _dtypes(config, device)
            for provider in _keep(config, op_providers())
            if provider.kind == "backend"
        ]
        metafunc.parametrize("paired_case", cases, ids=[c.id for c in cases])
    if "model_case" in metafunc.fixturenames:
        cases = [
            Case("model", shape, "fwdbwd", dtype, provider)
            for shape in _shapes(config, device, "model")
            for dtype in _dtypes(config, device)
            for provider in _keep(config, model_providers(device))
        ]
        metafunc.parametrize("model_case", cases, ids=[c.id for c in cases])


_SESSION_START = time.monotonic()


@pytest.fixture(scope="session")
def bench_env(request) -> BenchEnv:
    return request.config.stash[_ENV_KEY]


@pytest.fixture(autouse=True)
def _bench_deadline(request):
    """Skip cases that would start after --bench-deadline, so a time-limited session (a GPU
    call runs at most 10 minutes) still ends normally and writes its JSON."""
    deadline = request.config.getoption("--bench-deadline")
    elapsed = time.monotonic() - _SESSION_START
    if deadline and elapsed > deadline:
        pytest.skip(f"--bench-deadline={deadline:.0f}s reached ({elapsed:.0f}s into the session)")


def commit_id() -> str:
    """The commit under test, ``+dirty`` with uncommitted changes; on a machine whose tree
    has no ``.git`` (the GPU machine gets a copy) the caller passes ``RSTG_BENCH_COMMIT``."""
    from pytest_benchmark.utils import get_commit_info

    info = get_commit_info()
    if info.get("id") in (None, "unversioned", "unknown"):
        return os.environ.get("RSTG_BENCH_COMMIT", "unknown")
    return info["id"] + ("+dirty" if info.get("dirty") else "")


def pytest_configure(config):
    device = bench_device(config)
    env = BenchEnv(device=device, peaks=Peaks(device), commit=commit_id())
    config.stash[_ENV_KEY] = env
    settings = {
        "commit": env.commit,
        "device": device,
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "bench_scale": config.getoption("--bench-scale"),
    }
    session = BenchSession(config, settings, env.unmeasured, env.peaks.as_dict)
    config.pluginmanager.register(session, "rstg-bench-session")


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("triton", "torch_geometric", "pytest-benchmark", "numpy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def command_line() -> str:
    prog = os.path.basename(sys.argv[0])
    if prog in ("-c", "__main__.py", "pytest.py"):  # python -c / -m pytest: say what was run
        prog = "pytest"
    return shlex.join([prog] + sys.argv[1:])


def pytest_benchmark_update_machine_info(config, machine_info):
    import rstg_fast

    env = config.stash[_ENV_KEY]
    machine_info["rstg"] = {
        "device": env.device,
        "device_name": device_name(env.device),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "versions": _versions(),
        "rstg_fast_path": os.path.dirname(rstg_fast.__file__),
        "build_info": rstg_fast.build_info(),
        "peaks": env.peaks.as_dict(),
        "command": command_line(),
        "cwd": os.getcwd(),
    }


def pytest_benchmark_update_commit_info(config, commit_info):
    # On the GPU machine the tree is a copy without .git: the caller passes the commit in.
    if commit_info.get("id") in (None, "unversioned", "unknown") and os.environ.get("RSTG_BENCH_COMMIT"):
        commit_info["id"] = os.environ["RSTG_BENCH_COMMIT"]
        commit_info["source"] = "RSTG_BENCH_COMMIT"


def pytest_terminal_summary(terminalreporter, config):
    """The report's tables for this session: the headline times (device time on a GPU, which
    pytest-benchmark's own host-time table does not show), speedups, memory and FLOP rates."""
    session = getattr(config, "_benchmarksession", None)
    env = config.stash.get(_ENV_KEY, None)
    if session is None or env is None:
        return
    done = [b for b in session.benchmarks if not b.has_error and b.extra_info.get("status") == "ok"]
    record_path = config.getoption("--bench-record")
    recorded = bool(record_path) and os.path.exists(record_path)
    if not done and not env.unmeasured and not recorded:
        return
    import report  # bench/report.py: same tables as docs/benchmarks.md

    title = f"rstg_fast benchmarks on {device_name(env.device)} (docs/benchmarking.md)"
    if recorded:
        # Every case of the record, earlier sessions' too: a resumed run is compared in full.
        run, title = record.read_run(record_path), f"{title}, all cases in {record_path}"
    else:
        run = {
            "machine_info": {"rstg": {"device": env.device}},
            "benchmarks": [{"name": b.name, "extra_info": b.extra_info} for b in done],
            "rstg_unmeasured": env.unmeasured,
        }
    terminalreporter.section(title)
    for line in report.tables(run):
        terminalreporter.write_line(line)


def pytest_benchmark_update_json(config, benchmarks, output_json):
    # Cases that could not be measured (out of memory) keep their extra_info here.
    output_json["rstg_unmeasured"] = config.stash[_ENV_KEY].unmeasured
