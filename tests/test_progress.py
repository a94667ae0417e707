"""rstg_fast._progress: the plain printer used when tqdm is missing."""

from __future__ import annotations

import sys

import rstg_fast._progress as progress


def test_rate_after_resume_counts_only_this_runs_work(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import fails: the plain printer
    clock = iter([100.0, 110.0])  # start, then the final update 10 s later
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = progress.Progress(total=100, desc="train", unit="step", initial=80)  # resumed at 80
    bar.update_to(100)
    line = capsys.readouterr().err
    assert "train: 100/100 step [10s, 2.00 step/s]" in line  # 20 steps in 10 s, not 100
