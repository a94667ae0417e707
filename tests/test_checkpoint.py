"""Training checkpoints: atomic saves, weights-only loads."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from rstg_fast._checkpoint import load_checkpoint, save_checkpoint


class Evil:
    """Any class outside torch's weights_only allow-list: loading it must be refused."""


def test_checkpoint_is_atomic_and_weights_only(tmp_path, monkeypatch):
    path = str(tmp_path / "sub" / "last.pt")
    save_checkpoint(path, {"w": torch.arange(3), "step": 4})
    assert load_checkpoint(path)["step"] == 4
    real_save = torch.save

    def crash(obj, f):
        real_save(obj, f)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"w": torch.zeros(3), "step": 5})
    assert load_checkpoint(path)["step"] == 4  # the old checkpoint survives a failed write
    monkeypatch.undo()
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_checkpoint(str(tmp_path / "evil.pt"))
    assert os.listdir(tmp_path / "sub") == ["last.pt"]  # the failed write's temp file is gone


def _damaged(kind: str, path, tmp_path) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random-bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        save_checkpoint(tmp_path / "good.pt", {"w": torch.randn(1000), "step": 3})
        data = bytearray((tmp_path / "good.pt").read_bytes())
        if kind == "truncated":  # a real checkpoint cut short (a full disk, a copy interrupted)
            data = data[: len(data) // 2]
        else:  # one byte of a weight changed: torch.load alone would return the wrong value
            data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


DAMAGE = ["empty", "random-bytes", "truncated", "flipped-byte"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_checkpoint_is_a_checkpoint_error_naming_the_file(tmp_path, kind):
    from rstg_fast._checkpoint import CheckpointError

    path = tmp_path / "last.pt"
    _damaged(kind, path, tmp_path)
    with pytest.raises(CheckpointError, match=rf"^checkpoint {path} cannot be read .*(delete|move) it") as exc:
        load_checkpoint(path)
    assert isinstance(exc.value, ValueError) and "\n" not in str(exc.value)


def test_missing_checkpoint_stays_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pt")


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"rstg-fast {command}: error: checkpoint ")
    return lines[0]


@pytest.mark.parametrize("kind", DAMAGE)
def test_train_video_resume_from_a_damaged_checkpoint_is_one_line(tmp_path, capsys, kind):
    pytest.importorskip("PIL", reason="Pillow writes the tiny dataset's JPEGs")
    from smth_testing import write_tiny_something

    from rstg_fast.cli import main

    data = write_tiny_something(str(tmp_path / "smth"), train_videos=4, val_videos=2)
    out = tmp_path / "run"
    out.mkdir()
    _damaged(kind, out / "last.pt", tmp_path)
    code = main(["train-video", "--data-root", data, "--out", str(out), "--base-width", "4", "--blocks", "1", "1",
                 "1", "1", "--num-frames", "2", "--crop-size", "32", "--train-scale", "32", "32",
                 "--test-short-side", "32", "--placement", "none", "--workers", "0", "--no-progress"])
    assert code == 1
    assert str(out / "last.pt") in _one_line_error(capsys, "train-video")


@pytest.mark.parametrize("kind", DAMAGE)
def test_syncmnist_resume_from_a_damaged_checkpoint_is_one_line(tmp_path, capsys, kind):
    from rstg_fast.cli import main

    out = tmp_path / "run"
    out.mkdir()
    _damaged(kind, out / "checkpoint.pt", tmp_path)
    code = main(["syncmnist", "--quick", "--out", str(out), "--resume", "--device", "cpu", "--no-plot"])
    assert code == 1
    assert str(out / "checkpoint.pt") in _one_line_error(capsys, "syncmnist")
