"""Training plumbing for train-video: sharded step sampler, evaluation shards, LR schedule,
top-k counts. Kept free of argparse so each piece is testable on its own. Checkpoints,
distributed setup and the progress line are shared with ``rstg-fast syncmnist``
(:mod:`rstg_fast._checkpoint`, :mod:`rstg_fast._distributed`, :mod:`rstg_fast._progress`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


class StepSampler(torch.utils.data.Sampler[list[int]]):
    """Micro-batches of one rank, for optimizer steps ``start_step .. steps_per_epoch - 1``.

    One permutation per epoch (seeded by ``(seed, epoch)``) is cut into global batches of
    ``batch_size * world_size * accum_steps`` (the incomplete tail is dropped). Global batch
    ``s`` is split into ``accum_steps`` chunks and each chunk across ranks, so the samples of
    a step do not depend on how they are spread over processes and micro-steps: 2 ranks x
    batch 2, 1 rank x batch 4 and 1 rank x batch 2 x 2 accumulation steps see the same 4.
    """

    def __init__(self, size: int, batch_size: int, *, world_size: int = 1, rank: int = 0,
                 accum_steps: int = 1, seed: int = 0, epoch: int = 0, start_step: int = 0) -> None:
        if min(batch_size, world_size, accum_steps) < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler geometry: batch_size={batch_size}, world_size={world_size}, "
                             f"rank={rank}, accum_steps={accum_steps}")
        self.size, self.batch_size, self.world_size, self.rank = size, batch_size, world_size, rank
        self.accum_steps, self.seed, self.epoch, self.start_step = accum_steps, seed, epoch, start_step

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size * self.accum_steps

    @property
    def steps_per_epoch(self) -> int:
        return self.size // self.global_batch

    def __len__(self) -> int:
        return max(self.steps_per_epoch - self.start_step, 0) * self.accum_steps

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.size, generator=g).tolist()
        for s in range(self.start_step, self.steps_per_epoch):
            for a in range(self.accum_steps):
                base = s * self.global_batch + (a * self.world_size + self.rank) * self.batch_size
                yield perm[base:base + self.batch_size]


def shard_indices(size: int, world_size: int, rank: int) -> list[int]:
    """Evaluation shard: every sample exactly once over all ranks."""
    return list(range(rank, size, world_size))


def cosine_lr(step: int, total: int, base_lr: float, warmup: int) -> float:
    """Linear warmup for ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    t = (step - warmup) / max(total - warmup, 1)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


def topk_correct(scores: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of rows of ``scores (B, C)`` whose ``target (B,)`` is in the top k, per k."""
    k_max = min(max(ks), scores.shape[1])
    top = scores.topk(k_max, dim=1).indices  # (B, k_max)
    hit = top == target.view(-1, 1)
    return [int(hit[:, : min(k, k_max)].any(dim=1).sum()) for k in ks]
