"""Optional warm-up of the per-frame conv backbone on single digits (``--pretrain-steps``).

Learning SyncMNIST from scratch has a long plateau: the 46 pair classes only reward a
digit detector once both digits of the pair are recognised, and on this 2-core CPU neither
the conv backbone alone nor RSTG left chance level within ~20,000 training videos (see
docs/syncmnist.md). The ``--quick`` preset therefore first trains the backbone for a few
hundred cheap steps to classify *one* digit from the train pool, pasted at a random position
of a 100 x 100 canvas and rendered like SyncMNIST frames (area resize to 64 x 64), through a
throw-away head (max over space, then linear to 10 classes). Only the train digit pool is
used, so test videos stay unseen. The full preset does not pretrain (``--pretrain-steps 0``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rstg_fast.data.mnist import digit_pool
from rstg_fast.data.syncmnist import CANVAS, DIGIT, paste_digits, resize_frames


def digit_frames(n: int, seed: int, step: int, source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` frames ``(n, 64, 64)`` uint8 with one train-pool digit each, and its class ``(n,)``."""
    pool = digit_pool("train", source)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 104729, step]))
    idx = rng.integers(0, len(pool.labels), n)
    pos = rng.integers(0, CANVAS - DIGIT + 1, (n, 2))
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    paste_digits(canvas, (np.arange(n)[:, None, None],), pos, pool.images[idx])
    return resize_frames(canvas), pool.labels[idx]


def pretrain_backbone(
    backbone: nn.Module,
    channels: int,
    cfg: dict,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
    resume: dict | None = None,
    save: Callable[[dict], None] | None = None,
    every: int = 0,
) -> list[float]:
    """Train ``backbone`` (``(B, 1, T, 64, 64) -> (B, C, T, 6, 6)``) in place for
    ``cfg["pretrain_steps"]`` steps of 64 digits; returns the running accuracy per 50 steps.

    Deterministic for ``cfg["seed"]``; it draws its head's initial weights from a private
    generator so the global torch RNG (and hence the rest of training) is unaffected.
    Resumable: ``save(state)`` is called every ``every`` steps (0: never) and after the last
    step with everything but the backbone (head, optimizer, step, running counts); passing
    that ``state`` back as ``resume`` (with the backbone weights saved beside it) continues
    exactly, bit for bit on CPU.
    """
    gen = torch.Generator().manual_seed(cfg["seed"] + 1)
    head = nn.Linear(channels, 10)
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

    total = cfg["pretrain_steps"]
    for step in range(start, total):
        frames, labels = digit_frames(64, cfg["seed"], step, cfg["source"])
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
