"""bench/gpu_session.sh: the benchmark phases write --bench-record files under $OUT and resume
from BENCH_RESUME_FROM (the device tool's calls: each gets a fresh copy of the tree and only
$OUT comes back).

The script runs for real (bash), with ``PYTHON`` set to a fake interpreter that logs its
arguments and succeeds: what is checked is the command lines and the files the script
itself copies, not the benchmark suite (tests/test_bench_record.py covers record and resume).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_session.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="gpu_session.sh is a bash script")

FAKE_PY = """\
#!{exe}
import json, os, sys
with open(os.environ["FAKE_PY_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def run_session(tmp_path: Path, *phases: str, **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """Run the script with the fake interpreter; returns the process and the logged argvs."""
    fake, log = tmp_path / "fake_python", tmp_path / "calls.jsonl"
    fake.write_text(FAKE_PY.format(exe=sys.executable))
    fake.chmod(0o755)
    log.unlink(missing_ok=True)  # this call's invocations only
    (tmp_path / "tmp").mkdir(exist_ok=True)  # the script's build stamp lives in TMPDIR: a private one
    full_env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYTHON": str(fake),
        "FAKE_PY_LOG": str(log),
        "TMPDIR": str(tmp_path / "tmp"),
        "OUT": str(tmp_path / "out"),
        **env,
    }
    proc = subprocess.run(
        ["bash", str(SCRIPT), *phases], env=full_env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, calls


def pytest_call(calls: list[list[str]], test_file: str) -> list[str]:
    """The logged pytest arguments of the phase that ran ``test_file``."""
    found = [c for c in calls if c[0] == "-c" and "pytest.main" in c[1] and test_file in c]
    assert len(found) == 1, calls
    return found[0][2:]


def test_phases_write_records_under_out(tmp_path):
    env = {"RSTG_BENCH_COMMIT": "abc", "BENCH_TAG": "-bf16", "BENCH_ARGS": "--bench-dtypes=bfloat16"}
    proc, calls = run_session(tmp_path, "op", "model", "report", **env)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the report phase: below
    out = tmp_path / "out"
    op = pytest_call(calls, "bench/test_bench_message_attention.py")
    model = pytest_call(calls, "bench/test_bench_model.py")
    for args, name in ((op, "bench-op-bf16"), (model, "bench-model-bf16")):
        assert f"--bench-record={out}/{name}.jsonl" in args
        assert "--bench-resume" not in args  # nothing to resume from
        assert not any(a.startswith("--benchmark-json") for a in args)  # the record replaces the JSON
        assert "--bench-dtypes=bfloat16" in args  # BENCH_ARGS
        assert any(a.startswith("--bench-deadline=") for a in args)
    # the fake pytest wrote no record: the report phase finds none, says so and fails
    assert "report: no bench-*.jsonl" in proc.stdout
    # with records present, the report phase reads them all
    (out / "bench-op-bf16.jsonl").write_text('{"rstg_bench_record": 1}\n')
    (out / "bench-model.jsonl").write_text('{"rstg_bench_record": 1}\n')
    proc, calls = run_session(tmp_path, "report")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = [c for c in calls if c and c[0] == "bench/report.py"]
    assert report == [
        ["bench/report.py", f"{out}/bench-model.jsonl", f"{out}/bench-op-bf16.jsonl", "--no-store",
         "--md", f"{out}/benchmarks.md", "--plot", f"{out}/benchmarks.png"]
    ]  # fmt: skip


def test_resume_copies_the_earlier_record_into_out(tmp_path):
    earlier = tmp_path / "tree" / "resume"  # where the lead puts the records an earlier call brought back
    earlier.mkdir(parents=True)
    record = '{"rstg_bench_record": 1, "settings": {"commit": "abc"}}\n{"benchmark": {"fullname": "x"}}\n'
    (earlier / "bench-op.jsonl").write_text(record)
    proc, calls = run_session(tmp_path, "op", "model", RSTG_BENCH_COMMIT="abc", BENCH_RESUME_FROM=str(earlier))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "out"
    op = pytest_call(calls, "bench/test_bench_message_attention.py")
    assert f"--bench-record={out}/bench-op.jsonl" in op and "--bench-resume" in op
    assert (out / "bench-op.jsonl").read_text() == record  # continued in $OUT, so it comes back
    assert (earlier / "bench-op.jsonl").read_text() == record  # the source is left alone
    # no earlier model record: a new one, said so
    model = pytest_call(calls, "bench/test_bench_model.py")
    assert f"--bench-record={out}/bench-model.jsonl" in model and "--bench-resume" not in model
    assert "no " + str(earlier / "bench-model.jsonl") + " to resume" in proc.stderr
    # resuming from $OUT itself (a local rerun) continues the file in place
    proc, calls = run_session(tmp_path, "op", RSTG_BENCH_COMMIT="abc", BENCH_RESUME_FROM=str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--bench-resume" in pytest_call(calls, "bench/test_bench_message_attention.py")


def test_resume_needs_the_commit(tmp_path):
    earlier = tmp_path / "resume"
    earlier.mkdir()
    (earlier / "bench-op.jsonl").write_text('{"rstg_bench_record": 1}\n')
    proc, calls = run_session(tmp_path, "op", BENCH_RESUME_FROM=str(earlier))
    assert proc.returncode != 0
    assert "BENCH_RESUME_FROM needs RSTG_BENCH_COMMIT" in proc.stderr
    assert not [c for c in calls if c[0] == "-c" and "pytest.main" in c[1]]  # no benchmark started
    assert not (tmp_path / "out" / "bench-op.jsonl").exists()
