"""Training checkpoints: atomic saves, weights-only loads."""

from __future__ import annotations

import os

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
