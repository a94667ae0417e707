"""The benchmark suite's per-case record (``pytest bench/ --bench-record``), resume and report.

Nothing expensive is timed: the recorder and resume run on an inner pytest session
(``pytester``) whose benchmarks time an empty function; the report is fed a tiny synthetic
pytest-benchmark JSON and the equivalent record.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))  # bench/ is not a package: benchkit and report live at its top

import report  # noqa: E402
from benchkit import record as rec  # noqa: E402

pytest_plugins = ["pytester"]

SETTINGS = {"commit": "abc123", "device": "cpu", "device_name": "Test CPU", "torch_threads": 2, "bench_scale": "auto"}


def _machine_info(peaks: dict | None = None) -> dict:
    rstg = {
        "device": "cpu",
        "device_name": "Test CPU",
        "cpu_model": "Test CPU",
        "cpu_count": 2,
        "torch_threads": 2,
        "cuda": None,
        "versions": {"torch": "2.x", "python": "3.11"},
        "build_info": {"cpu": True},
        "peaks": peaks or {},
        "command": "pytest bench/ --benchmark-json=run.json",
    }
    return {"node": "test", "rstg": rstg}


def _entry(provider: str, time_ms: float, case: str = "syncmnist") -> dict:
    """A pytest-benchmark JSON entry as the suite writes it (the report reads extra_info)."""
    name = f"test_message_attention[{case}-fwd-float32-{provider}]"
    extra = {
        "level": "op", "mode": "fwd", "dtype": "float32", "heads": 1, "case": case, "shape": case, "G": 320,
        "edges_total": 28800, "provider": provider, "provider_label": provider, "provider_kind": "backend",
        "status": "ok", "time_ms": time_ms, "time_p20_ms": time_ms * 0.9, "time_p80_ms": time_ms * 1.1,
        "peak_mem_bytes": int(time_ms * 2**20), "gflops_per_s": 1000 / time_ms, "frac_peak": 2 / time_ms,
        "scale": "full size",
    }  # fmt: skip
    stats = {"min": time_ms / 1e3, "median": time_ms / 1e3, "rounds": 3, "iterations": 1}
    group = f"op {case} fwd float32"
    return {"group": group, "name": name, "fullname": f"bench/test_bench_message_attention.py::{name}",
            "param": name[23:-1], "extra_info": extra, "stats": stats, "options": {}}  # fmt: skip


def _run_json(entries: list[dict]) -> dict:
    peaks = {"float32": {"peak_gflops": 450.0, "peak_source": "test"}}
    return {
        "machine_info": _machine_info(peaks),
        "commit_info": {"id": "abc123", "branch": "main", "dirty": False},
        "datetime": "2026-01-01T00:00:00+00:00",
        "version": "5.2.3",
        "benchmarks": entries,
        "rstg_unmeasured": [],
    }


def _write_record(path: Path, run: dict, entries: list[dict]) -> rec.Writer:
    """The record a session measuring ``entries`` writes (peaks measured after the header)."""
    info = json.loads(json.dumps(run["machine_info"]))
    peaks = info["rstg"].pop("peaks")
    writer = rec.Writer(path)
    writer.ensure_header(lambda: rec.header(SETTINGS, info, run["commit_info"], run["datetime"], run["version"]))
    for e in entries:
        writer.add("benchmark", e, peaks)
    return writer


# ----------------------------------------------------------------------------- writer
def test_record_reads_back_every_case_and_the_peaks(tmp_path):
    entries = [_entry("reference", 188.0), _entry("cpu", 44.0)]
    _write_record(tmp_path / "r.jsonl", _run_json(entries), entries)
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert json.loads(lines[1]) == {"peaks": {"float32": {"peak_gflops": 450.0, "peak_source": "test"}}}
    got = rec.read(tmp_path / "r.jsonl")
    assert list(got.cases) == [e["fullname"] for e in entries]
    assert got.header["settings"] == SETTINGS and got.peaks["float32"]["peak_gflops"] == 450.0
    assert rec.is_record(tmp_path / "r.jsonl")


@pytest.mark.parametrize("torn", [b"", b'{"benchmark": {"extra_info": {"lev'], ids=["clean-end", "torn-line"])
def test_killed_mid_write_keeps_the_complete_cases_and_resumes_after_them(tmp_path, torn):
    path = tmp_path / "r.jsonl"
    entries = [_entry(p, 10.0 + i) for i, p in enumerate(["reference", "compile-reference", "cpu"])]
    _write_record(path, _run_json(entries), entries)
    with open(path, "ab") as f:  # what a kill in the middle of the next line's write leaves
        f.write(torn)
    assert len(rec.read(path).cases) == 3
    writer = rec.Writer(path)  # the resumed session cuts the torn line off, then appends
    writer.add("benchmark", _entry("triton", 5.0))
    got = rec.read(path)
    assert [e["extra_info"]["provider"] for e in rec.to_run(got)["benchmarks"]] == [
        "reference", "compile-reference", "cpu", "triton",
    ]  # fmt: skip
    assert path.read_bytes().endswith(b"}\n") and b"lev\n" not in path.read_bytes()


def test_a_header_torn_by_a_kill_is_written_again(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"rstg_bench_record": 1, "settings": {"com')
    assert not rec.started(path) and not rec.started(tmp_path / "missing.jsonl")
    entries = [_entry("cpu", 1.0)]
    _write_record(path, _run_json(entries), entries)
    assert rec.started(path) and list(rec.read(path).cases) == [entries[0]["fullname"]]


def test_a_process_killed_mid_run_leaves_exactly_its_finished_cases(tmp_path):
    """A real SIGKILL: the writer reports each case after ``add`` returns (fsync'ed)."""
    path = tmp_path / "r.jsonl"
    run = _run_json([])
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(BENCH)!r})
        from benchkit import record as rec
        w = rec.Writer({str(path)!r})
        w.ensure_header(lambda: rec.header({SETTINGS!r}, {run["machine_info"]!r}, {{}}, "now", None))
        for k in range(1000):
            w.add("benchmark", {{"fullname": f"case{{k}}", "extra_info": {{"pad": "x" * 100000}}}})
            print(k + 1, flush=True)
            if k == 2:
                time.sleep(60)  # killed here
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        done = [int(proc.stdout.readline()) for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert done == [1, 2, 3]
    assert list(rec.read(path).cases) == ["case0", "case1", "case2"]


def test_corrupt_or_foreign_files_are_refused_with_the_path(tmp_path):
    bad = tmp_path / "run.json"
    bad.write_text(json.dumps(_run_json([])))
    assert not rec.is_record(bad)
    with pytest.raises(rec.RecordError, match="run.json: not a `pytest bench/ --bench-record` file"):
        rec.read(bad)
    path = tmp_path / "r.jsonl"
    _write_record(path, _run_json([]), [_entry("cpu", 1.0)])
    with open(path, "a") as f:
        f.write("not json\n")  # a complete line that does not parse is corruption, not a torn write
    with pytest.raises(rec.RecordError, match=r"r.jsonl:4: not a JSON line"):
        rec.read(path)


def test_mismatches_name_the_setting_and_the_option():
    header = {"settings": SETTINGS}
    assert rec.mismatches(header, dict(SETTINGS)) == []
    (msg,) = rec.mismatches(header, dict(SETTINGS, commit="def456"))
    assert "commit is 'def456' here but 'abc123'" in msg and "RSTG_BENCH_COMMIT" in msg
    (msg,) = rec.mismatches(header, dict(SETTINGS, bench_scale="full"))
    assert "--bench-scale" in msg


# ----------------------------------------------------------------------------- report
def test_report_renders_a_record_like_the_equivalent_json(tmp_path):
    entries = [_entry("reference", 188.0), _entry("compile-reference", 112.0), _entry("cpu", 44.0)]
    run = _run_json(entries)
    (tmp_path / "run.json").write_text(json.dumps(run))
    _write_record(tmp_path / "run.jsonl", run, entries)
    mds = []
    for name in ("run.json", "run.jsonl"):
        md = tmp_path / name.replace(".", "-") / "benchmarks.md"
        png = md.with_suffix(".png")
        assert report.main([str(tmp_path / name), "--no-store", "--md", str(md), "--plot", str(png)]) == 0
        mds.append(md.read_text())
    assert mds[0] == mds[1]
    assert "| syncmnist (320) | cpu | 44 (39.6-48.4) | 4.27x | 2.55x |" in mds[0]
    assert "float32: 450 GFLOP/s (test)" in mds[0]


def _paired_entry(ratios: list[float], ref_ms: float, cpu_ms: float) -> dict:
    """A test_bench_paired entry: reference and cpu timed in interleaved pairs."""
    e = _entry("cpu", cpu_ms, "paper")
    e["name"] = e["name"].replace("test_message_attention[paper-fwd", "test_paired_against_reference[paper-fwdbwd")
    e["group"] = "paired paper fwdbwd float32"
    e["extra_info"].update(
        level="paired", mode="fwdbwd", G=128, paired_rounds=len(ratios), reference_ms_median=ref_ms,
        backend_ms_median=cpu_ms, ratio_median=sorted(ratios)[len(ratios) // 2], ratio_p20=min(ratios),
        ratio_p80=max(ratios), ratio_of_minima=2.25,
    )  # fmt: skip
    for key in ("time_ms", "gflops_per_s", "frac_peak", "peak_mem_bytes"):
        del e["extra_info"][key]  # a paired case has its own fields only
    return e


def test_report_shows_paired_speedups_in_their_own_table_and_the_headline(tmp_path):
    fwdbwd = [_entry("reference", 170.0, "paper"), _entry("cpu", 80.0, "paper")]
    for e in fwdbwd:
        e["extra_info"]["mode"] = "fwdbwd"
    run = _run_json(fwdbwd + [_paired_entry([2.4, 2.6, 2.5], 200.0, 80.0)])
    lines = report.tables(run)
    assert "| paper (128) | float32 | cpu | 3 | 200 | 80 | 2.50x (2.40x-2.60x) | 2.25x |" in lines
    assert not any(line.startswith("| paper (128) | cpu | 80 ") and "paired" in line for line in lines)
    (head,) = report.headline(run)
    assert "2.1x faster than reference (in interleaved pairs: 2.5x, p20-p80 2.4-2.6x)" in head


def test_report_merges_a_json_and_a_record_of_one_device(tmp_path):
    """A run assembled from a JSON (first part) and a resumed record (the rest) is one table."""
    entries = [_entry("reference", 188.0), _entry("cpu", 44.0)]
    whole = _run_json(entries)
    (tmp_path / "part1.json").write_text(json.dumps(_run_json(entries[:1])))
    _write_record(tmp_path / "part2.jsonl", whole, entries[1:])
    merged = report.merge([report.load(tmp_path / "part1.json"), report.load(tmp_path / "part2.jsonl")])
    assert len(merged) == 1
    assert report.tables(merged[0]) == report.tables(whole)


# ----------------------------------------------------------------------------- pytest session
CONFTEST = f"""
import sys
sys.path.insert(0, {str(BENCH)!r})
import pytest
from benchkit.session import BenchSession

def pytest_addoption(parser):
    parser.addoption("--bench-record", default="")
    parser.addoption("--bench-resume", action="store_true")
    parser.addoption("--commit", default="abc123")

UNMEASURED = []

def pytest_configure(config):
    settings = dict({SETTINGS!r}, commit=config.getoption("--commit"))
    config.pluginmanager.register(BenchSession(config, settings, UNMEASURED, dict), "rstg-bench-session")

def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["rstg"] = {{"device": "cpu"}}
"""

CASES = """
import pytest
from conftest import UNMEASURED

@pytest.mark.parametrize("case", ["alpha", "beta", "gamma"])
def test_case(benchmark, case, request):
    benchmark.extra_info.update(status="ok", case=case)
    benchmark.pedantic(lambda: None, rounds=2, iterations=1)

def test_oom(benchmark, request):
    UNMEASURED.append({"fullname": request.node.nodeid, "name": request.node.name, "extra_info": {"status": "oom"}})
    pytest.skip(reason="simulated out-of-memory case of this synthetic inner session")

def test_unavailable(benchmark):
    pytest.skip(reason="simulated unavailable backend of this synthetic inner session")

def test_not_a_benchmark():
    pass
"""


@pytest.fixture
def inner(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=CASES)
    return pytester


def test_session_records_resumes_and_shows_progress(inner):
    path = inner.path / "r.jsonl"
    result = inner.runpytest_subprocess("-q", "-k", "alpha or beta", f"--bench-record={path}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([". [[]bench 1/2, *s] alpha: passed (*s)", ". [[]bench 2/2, *s] beta: passed (*s)"])
    assert sorted(rec.read(path).cases) == ["test_inner.py::test_case[alpha]", "test_inner.py::test_case[beta]"]

    result = inner.runpytest_subprocess("-q", f"--bench-record={path}", "--bench-resume")
    result.assert_outcomes(passed=2, skipped=4)  # gamma, not_a_benchmark; alpha, beta skipped; oom, unavailable skip
    result.stdout.fnmatch_lines([f"--bench-resume: 2 of 6 cases already measured in {path}"])
    result.stdout.fnmatch_lines([f"s [[]bench 1/6, *] alpha: skipped (already measured in {path})"])
    got = rec.read(path)
    assert sorted(got.cases) == [
        "test_inner.py::test_case[alpha]",
        "test_inner.py::test_case[beta]",
        "test_inner.py::test_case[gamma]",
        "test_inner.py::test_oom",
    ]  # not test_unavailable nor test_not_a_benchmark: no records, they run again
    assert "unmeasured" in got.cases["test_inner.py::test_oom"]
    assert len(path.read_text().splitlines()) == 1 + 4  # header once, each case once

    result = inner.runpytest_subprocess("-q", f"--bench-record={path}", "--bench-resume")
    result.assert_outcomes(passed=1, skipped=5)


def test_session_refuses_to_mix_commits_or_overwrite(inner):
    path = inner.path / "r.jsonl"
    inner.runpytest_subprocess("-q", "-k", "test_case", f"--bench-record={path}").assert_outcomes(passed=3)
    before = path.read_bytes()
    result = inner.runpytest_subprocess("-q", f"--bench-record={path}", "--bench-resume", "--commit=def456")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--bench-resume: *r.jsonl was recorded with other settings: commit is 'def456'*"])
    result = inner.runpytest_subprocess("-q", f"--bench-record={path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--bench-record=*r.jsonl exists: add --bench-resume*"])
    result = inner.runpytest_subprocess("-q", "--bench-resume")
    result.stderr.fnmatch_lines(["*--bench-resume needs --bench-record=PATH*"])
    assert path.read_bytes() == before
