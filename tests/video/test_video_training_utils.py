"""Training plumbing: the step sampler's geometry, LR schedule, top-k (checkpoints and the
progress line: tests/test_checkpoint.py, tests/test_progress.py)."""

from __future__ import annotations

import pytest
import torch

from rstg_fast.video.training import StepSampler, cosine_lr, shard_indices, topk_correct


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
