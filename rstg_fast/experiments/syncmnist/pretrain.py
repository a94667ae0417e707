"""Warm-ups of the per-frame conv backbones before RSTG trains (``--pretrain-steps``,
``--naming-pretrain-steps``).

Learning SyncMNIST from scratch has a long plateau: the 46 pair classes only reward a
digit detector once both digits of the pair are recognised, and on this 2-core CPU neither
the conv backbone alone nor RSTG left chance level within ~20,000 training videos (see
docs/syncmnist.md). So the backbone first trains for a few hundred cheap steps through a
throw-away head, on data from the train digit pool only (test videos stay unseen). Three
warm-ups, one per backbone kind:

- ``digit`` (a plain backbone): classify *one* digit pasted at a random position of a
  100 x 100 canvas and rendered like SyncMNIST frames (area resize to 64 x 64); max over
  space, then linear to 10 classes.
- ``motion`` (a motion backbone, ``--motion``: frame and frame difference in): two-frame clips
  of one digit that takes a SyncMNIST step (uniform in ``[-10, 10)`` per axis, clipped to the
  canvas) between the frames: the class from the second frame's features (max over space),
  and the step from their mean over space (squared error in units of 10 canvas pixels,
  weighted 5). This teaches the features the digits' velocity, which RSTG then needs only to
  compare (docs/syncmnist.md, "What the relation needs").
- ``naming`` (the second, naming backbone, ``--naming-pretrain-steps``): whole training videos
  (not the training stream's), every frame after the first: which digits are present
  (multi-label, each class's map max-pooled over space) and each present digit's step, read
  through its class map's softmax over space. Single-digit clips never show digits that
  overlap; this warm-up does, and its backbone names the digits of a video better than the
  motion backbone (docs/syncmnist.md, "Two frozen backbones side by side"). With
  ``--naming-augment K`` its videos draw their digits from the training pool and K random
  affine copies of it (``rstg_fast.data.augment``): names learned from 4,000 digits carry over
  to unseen ones better (docs/syncmnist.md, session 10).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rstg_fast.data.augment import augmented_pool
from rstg_fast.data.mnist import DigitPool, digit_pool
from rstg_fast.data.shards import to_tensor
from rstg_fast.data.syncmnist import CANVAS, DIGIT, MAX_STEP, generate, paste_digits, resize_frames
from rstg_fast.experiments.syncmnist.config import SyncMNISTConfig

WARM_UPS = ("digit", "motion", "naming")
BATCH = {"digit": 64, "motion": 64, "naming": 8}  # digits or clips / videos a step
STEP_LOSS_WEIGHT = 5.0  # the step regression against the class cross-entropy (measured: at 1 the
# step was not learned within 300 steps; at 5, both: 91 % class, 1.2 canvas-pixel step error)
PRESENCE_LOSS_WEIGHT = 10.0  # the naming warm-up's presence loss against its step loss: the
# weights of the probe that found the recipe (tools/syncmnist_probes/mil.py), not tuned further
WARM_UP_LR = 3e-3  # AdamW, decayed along a cosine to 0 over the warm-up's steps (measured, session 7:
# single-digit accuracy on test-pool digits 94.2 % after 800 steps at a constant 3e-3; on the
# cosine 97.0 % after 2,500 steps, 97.8 % after 8,000; tools/syncmnist_probes/digits.py)
HEAD_SEED = {"digit": 1, "motion": 1, "naming": 2}  # the head's private generator: cfg.seed + this
NAMING_STREAMS = 1 << 40  # the naming warm-up's videos: train-pool streams no training run reaches


def digit_frames(n: int, seed: int, step: int, source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` frames ``(n, 64, 64)`` uint8 with one train-pool digit each, and its class ``(n,)``."""
    pool = digit_pool("train", source)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 104729, step]))
    idx = rng.integers(0, len(pool.labels), n)
    pos = rng.integers(0, CANVAS - DIGIT + 1, (n, 2))
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    paste_digits(canvas, (np.arange(n)[:, None, None],), pos, pool.images[idx])
    return resize_frames(canvas), pool.labels[idx]


def motion_clips(n: int, seed: int, step: int, source: str | None = None) -> tuple[np.ndarray, ...]:
    """``n`` two-frame clips ``(n, 2, 64, 64)`` uint8 of one train-pool digit that moves one
    SyncMNIST step between the frames; its class ``(n,)`` and the step ``(n, 2)`` ``(dy, dx)``."""
    pool = digit_pool("train", source)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 104729, step, 2]))
    idx = rng.integers(0, len(pool.labels), n)
    first = rng.integers(0, CANVAS - DIGIT + 1, (n, 2))
    second = np.clip(first + rng.integers(-MAX_STEP, MAX_STEP, (n, 2)), 0, CANVAS - DIGIT)
    canvas = np.zeros((n, 2, CANVAS, CANVAS), dtype=np.uint8)
    for t, pos in enumerate((first, second)):
        paste_digits(canvas, (np.arange(n)[:, None, None], np.full((n, 1, 1), t)), pos, pool.images[idx])
    return resize_frames(canvas), pool.labels[idx], second - first


def naming_videos(n: int, digits: int, seed: int, step: int, source: str | None = None, augment: int = 0):
    """The naming warm-up's batch ``step``: ``n`` SyncMNIST training videos (a ``SyncMNISTBatch``)
    from streams that the training run never uses; ``augment`` > 0 draws their digits from the
    training pool and that many random affine copies of it (``--naming-augment``)."""
    pool = naming_pool(source, augment, seed) if augment else None
    return generate(n, digits, "train", seed, stream=NAMING_STREAMS + step, source=source, pool=pool)


@functools.lru_cache(maxsize=2)
def naming_pool(source: str | None, copies: int, seed: int) -> DigitPool:
    """The training pool with ``copies`` affine copies of each digit, built once per process
    (15 copies of the 4,000 embedded digits: 50 MB, 6.4 s on one busy thread of the 2-core VM)."""
    return augmented_pool(digit_pool("train", source), copies, seed)


# Each warm-up's loss on its batch ``step``: ``(loss, hit rate)``; ``head`` is Linear(C, 10 or 12).
def _digit_loss(backbone, head, cfg, step, device):
    frames, labels = digit_frames(BATCH["digit"], cfg.seed, step, cfg.source)
    x = torch.from_numpy(frames).float().div_(255.0)[:, None, None].to(device)  # (B, 1, 1, 64, 64)
    y = torch.from_numpy(labels).to(device)
    logits = head(backbone(x).amax((2, 3, 4)))
    return F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()


def _motion_loss(backbone, head, cfg, step, device):
    frames, labels, steps = motion_clips(BATCH["motion"], cfg.seed, step, cfg.source)
    x = torch.from_numpy(frames).float().div_(255.0)[:, None].to(device)  # (B, 1, 2, 64, 64)
    features = backbone(x)[:, :, 1]  # the second frame's (B, C, h, w)
    w, b = head.weight, head.bias
    logits = F.linear(features.amax((2, 3)), w[:10], b[:10])
    predicted = F.linear(features.mean((2, 3)), w[10:], b[10:])
    target = torch.from_numpy(steps).float().div_(MAX_STEP).to(device)
    y = torch.from_numpy(labels).to(device)
    loss = F.cross_entropy(logits, y) + STEP_LOSS_WEIGHT * F.mse_loss(predicted, target)
    return loss, (logits.argmax(1) == y).float().mean()


def digit_presence(digits: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``digits (n, k)`` the classes in each video -> ``(n, 10)`` float, 1 where a class is present."""
    present = torch.zeros(len(digits), 10, device=device)
    present[torch.arange(len(digits))[:, None], torch.from_numpy(digits)] = 1.0
    return present


def _naming_loss(backbone, head, cfg, step, device):
    batch = naming_videos(BATCH["naming"], cfg.digits, cfg.seed, step, cfg.source, cfg.naming_augment)
    n, k = batch.digits.shape
    features = backbone(to_tensor(batch.videos).to(device))[:, :, 1:]  # frames with a previous one
    b, c, t, h, w = features.shape
    maps = head(features.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c))  # (bt, hw, 12)
    classes = maps[..., :10]
    present = digit_presence(batch.digits, device).repeat_interleave(t, 0)  # (bt, 10)
    scores = classes.amax(1)
    presence_loss = F.binary_cross_entropy_with_logits(scores, present)
    # each class's step: the step channels averaged under that class's softmax over space
    predicted = torch.einsum("bsc,bsd->bcd", classes.softmax(1), maps[..., 10:])  # (bt, 10, 2)
    target = torch.zeros(n, t, 10, 2)
    moved = np.diff(batch.coords, axis=1) / MAX_STEP  # (n, t, k, 2)
    target[np.arange(n)[:, None, None], np.arange(t)[None, :, None], batch.digits[:, None, :]] = torch.from_numpy(
        moved
    ).float()
    mask = present[:, :, None]
    step_loss = ((predicted - target.reshape(b * t, 10, 2).to(device)) ** 2 * mask).sum() / (2 * mask.sum())
    hits = present.gather(1, scores.topk(k, 1).indices).mean()  # top-k classes that are present
    return PRESENCE_LOSS_WEIGHT * presence_loss + STEP_LOSS_WEIGHT * step_loss, hits


LOSSES = {"digit": _digit_loss, "motion": _motion_loss, "naming": _naming_loss}


def warm_up_lr(step: int, total: int) -> float:
    """The learning rate of warm-up step ``step`` of ``total``: ``WARM_UP_LR`` decayed along a
    cosine towards 0; a function of the step alone, so a resume needs no scheduler state."""
    return WARM_UP_LR * 0.5 * (1.0 + math.cos(math.pi * step / total))


def warm_up_of(backbone: nn.Module) -> str:
    """The ``--pretrain-steps`` warm-up for ``backbone``: ``motion`` for a motion backbone."""
    return "motion" if getattr(backbone, "motion", False) else "digit"


def pretrain_backbone(
    backbone: nn.Module,
    channels: int,
    cfg: SyncMNISTConfig,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
    resume: dict | None = None,
    save: Callable[[dict], None] | None = None,
    every: int = 0,
    warm_up: str | None = None,
    steps: int | None = None,
) -> list[float]:
    """Train ``backbone`` (``(B, 1, T, 64, 64) -> (B, channels, T, 6, 6)``) in place for
    ``steps`` (default ``cfg.pretrain_steps``) steps of ``warm_up`` (one of ``WARM_UPS``;
    default :func:`warm_up_of`); returns the running hit rate per 50 steps (class accuracy;
    for ``naming``, the share of the top-``digits`` classes that are in the video).

    Deterministic for ``cfg.seed``; it draws its head's initial weights from a private
    generator so the global torch RNG (and hence the rest of training) is unaffected.
    Resumable: ``save(state)`` is called every ``every`` steps (0: never) and after the last
    step with everything but the backbone (head, optimizer, step, running counts); passing
    that ``state`` back as ``resume`` (with the backbone weights saved beside it) continues
    exactly, bit for bit on CPU.
    """
    warm_up = warm_up or warm_up_of(backbone)
    total = cfg.pretrain_steps if steps is None else steps
    gen = torch.Generator().manual_seed(cfg.seed + HEAD_SEED[warm_up])
    head = nn.Linear(channels, 10 if warm_up == "digit" else 12)  # 10 classes (+ the step (dy, dx))
    with torch.no_grad():
        bound = 1.0 / channels**0.5
        head.weight.copy_(torch.rand(head.weight.shape, generator=gen) * 2 * bound - bound)
        head.bias.zero_()
    head = head.to(device)
    opt = torch.optim.AdamW(list(backbone.parameters()) + list(head.parameters()), lr=WARM_UP_LR, weight_decay=1e-4)
    start, hits, accs = 0, 0.0, []
    if resume is not None:
        head.load_state_dict(resume["head"])
        opt.load_state_dict(resume["optimizer"])
        start, hits, accs = resume["step"], resume["correct"], list(resume["accs"])

    def state(step: int) -> dict:
        return {"step": step, "head": head.state_dict(), "optimizer": opt.state_dict(), "correct": hits, "accs": accs}

    loss_of = LOSSES[warm_up]
    for step in range(start, total):
        for group in opt.param_groups:
            group["lr"] = warm_up_lr(step, total)
        loss, hit = loss_of(backbone, head, cfg, step, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hits += hit.item()
        if (step + 1) % 50 == 0:
            accs.append(hits / 50)
            hits = 0.0
        if progress is not None:
            progress(step + 1)
        if save is not None and ((every and (step + 1) % every == 0) or step + 1 == total):
            save(state(step + 1))
    return accs
