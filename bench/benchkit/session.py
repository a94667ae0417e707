"""Session plumbing of ``pytest bench/``: the per-case record and resume, and a progress line.

``--bench-record=PATH`` appends every finished case to PATH at once (``benchkit.record``), so
a killed session keeps what it measured; ``--bench-resume`` skips the cases already there,
after checking that the record was made with the same commit, device, threads and
``--bench-scale``. With pytest's own per-case output terse (default verbosity or ``-q``:
one letter per test), a line follows each letter: ``[bench k/n, elapsed] case id: outcome``.
Registered by ``bench/conftest.py`` as a plugin object.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from benchkit import record as rec

RECORDED_REASON = "already measured in {path}"


class BenchSession:
    def __init__(self, config, settings: dict, unmeasured: list, peaks) -> None:
        """``settings``: this session's values of ``record.SETTINGS``; ``unmeasured``: the
        list out-of-memory cases are appended to (``BenchEnv.unmeasured``); ``peaks``: a
        zero-argument callable giving the peak rates measured so far."""
        self.config, self.settings, self.unmeasured, self.peaks = config, settings, unmeasured, peaks
        self.path = config.getoption("--bench-record")
        self.resume = config.getoption("--bench-resume")
        self.done: set[str] = set()
        self.writer: rec.Writer | None = None
        self.start = time.monotonic()
        self.finished = 0
        self.outcomes: dict[str, tuple[str, str]] = {}
        self._check_options()

    # ------------------------------------------------------------------ record and resume
    def _check_options(self) -> None:
        if self.resume and not self.path:
            raise pytest.UsageError("--bench-resume needs --bench-record=PATH (the record to continue)")
        if not self.path:
            return
        exists = rec.started(self.path)  # a file with only a torn header line is started afresh
        if exists and not self.resume:
            raise pytest.UsageError(
                f"--bench-record={self.path} exists: add --bench-resume to continue it, "
                "or give a new path (its cases would otherwise be measured again)"
            )
        if exists:
            try:
                old = rec.read(self.path)
            except rec.RecordError as exc:
                raise pytest.UsageError(f"--bench-resume: {exc}") from None
            wrong = rec.mismatches(old.header, self.settings)
            if wrong:
                raise pytest.UsageError(
                    f"--bench-resume: {self.path} was recorded with other settings: "
                    + "; ".join(wrong)
                    + ". Records of different commits or devices are not mixed: use a new --bench-record file."
                )
            self.done = set(old.cases)
        self.writer = rec.Writer(self.path)

    @pytest.hookimpl(trylast=True)  # after -k / -m deselection: count what will run
    def pytest_collection_modifyitems(self, session, config, items) -> None:
        if not self.done:
            return
        skip = pytest.mark.skip(reason=RECORDED_REASON.format(path=self.path))
        resumed = [item for item in items if item.nodeid in self.done]
        for item in resumed:
            item.add_marker(skip)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"--bench-resume: {len(resumed)} of {len(items)} cases already measured in {self.path}")

    def _header(self) -> dict:
        hook = self.config.hook
        machine_info = hook.pytest_benchmark_generate_machine_info(config=self.config)
        hook.pytest_benchmark_update_machine_info(config=self.config, machine_info=machine_info)
        commit_info = hook.pytest_benchmark_generate_commit_info(config=self.config)
        hook.pytest_benchmark_update_commit_info(config=self.config, commit_info=commit_info)
        from pytest_benchmark import __version__

        now = datetime.now(timezone.utc).isoformat()
        return rec.header(self.settings, machine_info, commit_info, now, __version__)

    def _record(self, item, report) -> None:
        """Append the case ``item`` just finished, if it produced a measurement or an OOM record."""
        if self.writer is None or "benchmark" not in getattr(item, "funcargs", {}):
            return
        entry = kind = None
        bench = item.funcargs["benchmark"]
        if report.passed and bench.stats is not None and bench.extra_info.get("status") == "ok":
            kind, entry = "benchmark", bench.stats.as_dict(include_data=False)
        elif report.skipped:
            mine = [u for u in self.unmeasured if u["fullname"] == item.nodeid]
            if mine:
                kind, entry = "unmeasured", mine[-1]
        if entry is None:
            return  # failed, or skipped as unavailable / past the deadline: measured again on resume
        self.writer.ensure_header(self._header)
        self.writer.add(kind, entry, self.peaks())

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if report.when == "call" or report.failed or (report.when == "setup" and report.skipped):
            self.outcomes[item.nodeid] = (report.outcome, _reason(report))  # a failed teardown overrides
        if report.when == "call":
            self._record(item, report)
        return report

    # ------------------------------------------------------------------ progress
    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid, location) -> None:
        self.finished += 1
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or self.config.get_verbosity() > 0:
            return  # -v already prints each case's id and outcome
        outcome, reason = self.outcomes.pop(nodeid, ("passed", ""))
        total = len(reporter._session.items) if getattr(reporter, "_session", None) else "?"
        case = nodeid.rsplit("[", 1)[-1].rstrip("]") if "[" in nodeid else nodeid
        text = f" [bench {self.finished}/{total}, {_clock(time.monotonic() - self.start)}] {case}: {outcome}"
        if reason:
            text += f" ({reason if len(reason) <= 200 else reason[:197] + '...'})"
        reporter.write(text + "\n", flush=True)


def _reason(report) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if report.passed:
        return f"{report.duration:.1f} s"
    return ""


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"
