"""The training commands' progress bars (tqdm, set up by rstg_fast._progress)."""

from __future__ import annotations

import io

from rstg_fast._progress import progress, update_to


def test_progress_on_a_log_is_short_and_counts_a_resumed_run(monkeypatch):
    buf = io.StringIO()  # not a terminal: at most one redraw per log_every seconds
    monkeypatch.setattr("sys.stderr", buf)
    bar = progress(100, "train", unit="step", initial=80, log_every=1e9)  # resumed at 80
    bar.set_postfix(loss=0.123456, refresh=False)
    update_to(bar, 85)
    for _ in range(15):
        bar.update()
    bar.close()
    text = buf.getvalue()
    assert "train" in text and "100/100" in text and "loss=0.123" in text
    assert text.count("\r") <= 3  # the first draw, the close; not one per update


def test_progress_disabled_prints_nothing(monkeypatch):
    silent = io.StringIO()
    monkeypatch.setattr("sys.stderr", silent)
    bar = progress(2, "x", disable=True)
    bar.update(2)
    bar.close()
    assert silent.getvalue() == ""
