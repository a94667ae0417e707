"""Training plumbing: the step sampler's geometry, LR schedule, top-k, checkpoints, progress."""

from __future__ import annotations

import io
import os

import pytest
import torch

from rstg_fast.video.training import (
    Progress,
    StepSampler,
    cosine_lr,
    load_checkpoint,
    save_checkpoint,
    shard_indices,
    topk_correct,
)


class Evil:
    """Any class outside torch's weights_only allow-list: loading it must be refused."""


def flat(sampler):
    return [i for batch in sampler for i in batch]


def test_step_sampler_same_samples_per_step_for_any_geometry():
    one = list(StepSampler(23, 4, seed=5, epoch=2))  # 5 steps of 4, tail of 3 dropped
    assert len(one) == 5 and all(len(b) == 4 for b in one)
    assert len(set(flat(one))) == 20
    ranks = [list(StepSampler(23, 2, world_size=2, rank=r, seed=5, epoch=2)) for r in range(2)]
    acc = list(StepSampler(23, 2, accum_steps=2, seed=5, epoch=2))
    for s in range(5):
        assert sorted(ranks[0][s] + ranks[1][s]) == sorted(one[s])
        assert sorted(acc[2 * s] + acc[2 * s + 1]) == sorted(one[s])
    resumed = list(StepSampler(23, 4, seed=5, epoch=2, start_step=3))
    assert resumed == one[3:] and len(StepSampler(23, 4, start_step=3)) == 2
    assert flat(StepSampler(23, 4, seed=5, epoch=3)) != flat(one)  # reshuffled each epoch
    with pytest.raises(ValueError, match="rank"):
        StepSampler(10, 2, world_size=2, rank=2)


def test_shard_indices_cover_once():
    shards = [shard_indices(11, 3, r) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))


def test_cosine_lr():
    assert cosine_lr(0, 100, 0.1, 10) == pytest.approx(0.01)
    assert cosine_lr(9, 100, 0.1, 10) == pytest.approx(0.1)
    assert cosine_lr(10, 100, 0.1, 10) == pytest.approx(0.1)
    assert cosine_lr(55, 100, 0.1, 10) == pytest.approx(0.05)
    assert cosine_lr(100, 100, 0.1, 10) == pytest.approx(0.0)


def test_topk_correct():
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    assert topk_correct(scores, torch.tensor([2, 0, 0]), (1, 2)) == [1, 2]
    assert topk_correct(scores, torch.tensor([2, 0, 0]), (1, 5)) == [1, 3]  # k > classes: all


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
    Progress(2, "x", enabled=False).update(2)
    assert silent.getvalue() == ""
