"""The progress line of the training commands."""

from __future__ import annotations

import io

import rstg_fast._progress as progress
from rstg_fast._progress import Progress


def test_progress_lines(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    bar = Progress(3, "epoch 0", log_every=1e9)
    for i in range(3):
        bar.update(postfix=f"loss {i}")
    bar.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 0 1/3") and lines[-1].startswith("epoch 0 3/3")
    assert lines[-1].endswith("loss 2")
    silent = io.StringIO()
    monkeypatch.setattr("sys.stderr", silent)
    Progress(2, "x", disable=True).update(2)
    assert silent.getvalue() == ""


def test_progress_resumed_counts_and_postfix(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    clock = iter([100.0, 105.0, 110.0])  # start, then one update 5 s later and one 10 s later
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = Progress(100, "train", unit="step", initial=80, log_every=1.0)  # resumed at 80
    bar.set_postfix(loss=0.123456, acc=1)
    bar.update_to(85)
    bar.update(15)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "train 85/100 [5s<15s, 1.00step/s] loss=0.1235, acc=1"  # 5 steps in 5 s, not 85
    assert lines[1].startswith("train 100/100 [10s<0s, 2.00step/s]")  # the rate counts this run's work only
