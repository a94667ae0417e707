"""The progress line of the training commands."""

from __future__ import annotations

import io

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
    bar = Progress(10, "train", unit="step", initial=6, log_every=1e9)
    bar.set_postfix(loss=0.123456, acc=1)
    bar.update_to(7)
    bar.update(3)
    lines = buf.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["7/10", "10/10"]  # starts past 0; the end always shows
    assert lines[0].endswith("loss=0.1235, acc=1") and "step/s" in lines[0]
