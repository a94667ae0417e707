"""Optional warm-up of the per-frame conv backbone on single digits (``--pretrain-steps``).

Learning SyncMNIST from scratch has a long plateau: the 46 pair classes only reward a
digit detector once both digits of the pair are recognised, and on this 2-core CPU neither
the conv backbone alone nor RSTG left chance level within ~20,000 training videos (see
docs/syncmnist.md). The ``--quick`` preset therefore first trains the backbone for a few
hundred cheap steps to classify *one* digit from the train pool, pasted at a random position
of a 100 x 100 canvas and rendered like SyncMNIST frames (area resize to 64 x 64), through a
throw-away head (max over space, then linear to 10 classes). Only the train digit pool is
used, so test videos stay unseen. The full preset does not pretrain (``--pretrain-steps 0``).

A motion backbone (``--motion``: frame and frame difference in) warms up on *two-frame* clips
of one digit that takes a SyncMNIST step (uniform in ``[-10, 10)`` per axis, clipped to the
canvas) between the frames: the class from the second frame's features (max over space), and
the step from their mean over space (a linear head, squared error in units of 10 canvas
pixels, weighted 5). This teaches the features the digits' velocity, which RSTG then needs
only to compare (docs/syncmnist.md, "What the relation needs").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rstg_fast.data.mnist import digit_pool
from rstg_fast.data.syncmnist import CANVAS, DIGIT, MAX_STEP, paste_digits, resize_frames
from rstg_fast.experiments.syncmnist.config import SyncMNISTConfig

STEP_LOSS_WEIGHT = 5.0  # the step regression against the class cross-entropy (measured: at 1 the
# step was not learned within 300 steps; at 5, both: 91 % class, 1.2 canvas-pixel step error)


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


def pretrain_backbone(
    backbone: nn.Module,
    channels: int,
    cfg: SyncMNISTConfig,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
    resume: dict | None = None,
    save: Callable[[dict], None] | None = None,
    every: int = 0,
) -> list[float]:
    """Train ``backbone`` (``(B, 1, T, 64, 64) -> (B, C, T, 6, 6)``) in place for
    ``cfg.pretrain_steps`` steps of 64 digits; returns the running accuracy per 50 steps.

    Deterministic for ``cfg.seed``; it draws its head's initial weights from a private
    generator so the global torch RNG (and hence the rest of training) is unaffected.
    Resumable: ``save(state)`` is called every ``every`` steps (0: never) and after the last
    step with everything but the backbone (head, optimizer, step, running counts); passing
    that ``state`` back as ``resume`` (with the backbone weights saved beside it) continues
    exactly, bit for bit on CPU.
    """
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    motion = getattr(backbone, "motion", False)
    head = nn.Linear(channels, 12 if motion else 10)  # 10 classes (+ the step (dy, dx))
    with torch.no_grad():
        bound = 1.0 / channels**0.5
        head.weight.copy_(torch.rand(head.weight.shape, generator=gen) * 2 * bound - bound)
        head.bias.zero_()
    head = head.to(device)
    opt = torch.optim.AdamW(list(backbone.parameters()) + list(head.parameters()), lr=3e-3, weight_decay=1e-4)
    start, correct, accs = 0, 0.0, []
    if resume is not None:
        head.load_state_dict(resume["head"])
        opt.load_state_dict(resume["optimizer"])
        start, correct, accs = resume["step"], resume["correct"], list(resume["accs"])

    def state(step: int) -> dict:
        return {
            "step": step,
            "head": head.state_dict(),
            "optimizer": opt.state_dict(),
            "correct": correct,
            "accs": accs,
        }

    total = cfg.pretrain_steps
    for step in range(start, total):
        if motion:
            frames, labels, steps = motion_clips(64, cfg.seed, step, cfg.source)
            x = torch.from_numpy(frames).float().div_(255.0)[:, None].to(device)  # (B, 1, 2, 64, 64)
            features = backbone(x)[:, :, 1]  # the second frame's (B, C, h, w)
            w, b = head.weight, head.bias
            logits = F.linear(features.amax((2, 3)), w[:10], b[:10])
            predicted = F.linear(features.mean((2, 3)), w[10:], b[10:])
            target = torch.from_numpy(steps).float().div_(MAX_STEP).to(device)
            y = torch.from_numpy(labels).to(device)
            loss = F.cross_entropy(logits, y) + STEP_LOSS_WEIGHT * F.mse_loss(predicted, target)
        else:
            frames, labels = digit_frames(64, cfg.seed, step, cfg.source)
            x = torch.from_numpy(frames).float().div_(255.0)[:, None, None].to(device)  # (B, 1, 1, 64, 64)
            y = torch.from_numpy(labels).to(device)
            logits = head(backbone(x).amax((2, 3, 4)))
            loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        correct += (logits.argmax(1) == y).float().mean().item()
        if (step + 1) % 50 == 0:
            accs.append(correct / 50)
            correct = 0.0
        if progress is not None:
            progress(step + 1)
        if save is not None and ((every and (step + 1) % every == 0) or step + 1 == total):
            save(state(step + 1))
    return accs
