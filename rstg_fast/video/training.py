"""Training plumbing for train-video: sharded step sampler, checkpoints, metrics, progress.

Kept free of argparse so each piece is testable on its own.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist


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


def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    """Atomic: write a sibling temp file, then ``os.replace`` (a crash leaves the old one)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):  # a failed write leaves no half file behind
            os.remove(tmp)


def load_checkpoint(path: str) -> dict[str, Any]:
    """Tensors and plain containers only (``weights_only=True``: nothing is unpickled)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def init_distributed(device: str = "auto") -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)`` from torchrun's environment; starts the process group.

    NCCL on CUDA devices, gloo on CPU. Without ``WORLD_SIZE`` (plain ``python``) it is a
    single process and no group is created.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but CUDA is not available")
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, dev


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum over ranks (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


class Progress:
    """A dependency-free progress line on stderr: ``desc  i/total  rate  eta  postfix``.

    Redraws in place on a terminal (at most 4 times a second); on a pipe/log it prints a
    line every ``log_every`` seconds and at the end, so CI logs stay short.
    """

    def __init__(self, total: int, desc: str, enabled: bool = True, log_every: float = 30.0) -> None:
        self.total, self.desc, self.enabled, self.log_every = total, desc, enabled, log_every
        self.n, self.start, self.last, self.postfix = 0, time.monotonic(), float("-inf"), ""  # first update shows
        self.tty = sys.stderr.isatty()

    def update(self, n: int = 1, postfix: str = "") -> None:
        self.n += n
        self.postfix = postfix or self.postfix
        now = time.monotonic()
        if self.enabled and (now - self.last >= (0.25 if self.tty else self.log_every) or self.n >= self.total):
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        el = now - self.start
        rate = self.n / el if el > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 else float("nan")
        line = f"{self.desc} {self.n}/{self.total} [{el:.0f}s<{eta:.0f}s, {rate:.2f}it/s] {self.postfix}"
        sys.stderr.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
