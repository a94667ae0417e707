"""One run per --out: the second process on a busy output folder is refused, naming the flag;
the folder is free again as soon as the holder ends, however it ends."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rstg_fast._run_lock import LOCK_NAME, run_lock

HOLD = """import sys
from rstg_fast._run_lock import run_lock
with run_lock(sys.argv[1]):
    print('held', flush=True)
    sys.stdin.read()
"""


def _holder(out):
    """A process holding ``out``'s lock until its stdin closes (or it is killed)."""
    p = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_run_on_a_held_folder_is_refused_and_the_lock_goes_with_its_holder(tmp_path):
    out = tmp_path / "run"
    holder = _holder(out)
    try:
        with pytest.raises(ValueError, match=rf"--out {out} is in use by another run \(process {holder.pid} holds"):
            with run_lock(str(out)):
                pass
    finally:
        holder.kill()  # killed, not ended: the kernel drops the lock all the same
        holder.wait()
    with run_lock(str(out)):  # free again, and nested use by another process is refused while held
        assert (out / LOCK_NAME).read_text() == f"{os.getpid()}\n"


def _syncmnist_argv(tmp_path) -> list[str]:
    return ["syncmnist", "--quick", "--epochs", "1", "--steps-per-epoch", "1"]


def _train_video_argv(tmp_path) -> list[str]:
    pytest.importorskip("PIL", reason="Pillow writes the tiny dataset's JPEGs")
    from smth_testing import write_tiny_something

    data = write_tiny_something(str(tmp_path / "smth"), train_videos=4, val_videos=2)
    return ["train-video", "--data-root", data, "--base-width", "4", "--blocks", "1", "1", "1", "1",
            "--num-frames", "2", "--crop-size", "32", "--train-scale", "32", "32", "--test-short-side", "32",
            "--placement", "none", "--workers", "0", "--no-progress"]  # fmt: skip


@pytest.mark.parametrize("argv_of", [_syncmnist_argv, _train_video_argv], ids=["syncmnist", "train-video"])
def test_a_training_command_refuses_a_busy_out_in_one_line(tmp_path, capsys, argv_of):
    from rstg_fast.cli import main

    argv = argv_of(tmp_path)
    out = tmp_path / "run"
    holder = _holder(out)
    try:
        with pytest.raises(SystemExit) as e:
            main([*argv, "--out", str(out)])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"rstg-fast {argv[0]}: error: --out") and "in use by another run" in err[-1]
        assert os.listdir(out) == [LOCK_NAME]  # nothing else written
    finally:
        holder.stdin.close()
        holder.wait()


def test_torchrun_ranks_other_than_0_do_not_take_the_lock(tmp_path, monkeypatch):
    out = tmp_path / "run"
    holder = _holder(out)
    try:
        monkeypatch.setenv("RANK", "1")
        with run_lock(str(out)):  # the same run's other ranks: no lock, no error
            pass
    finally:
        holder.stdin.close()
        holder.wait()
