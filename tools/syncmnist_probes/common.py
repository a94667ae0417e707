"""What the SyncMNIST probes share: their flags, the RSTG classifier they train, the training
loop with its windowed accuracy / named / pair-given-digits log, and the test line."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rstg_fast.data.syncmnist import NUM_CLASSES, SyncMNISTBatch, generate, names_present_pair
from rstg_fast.experiments.syncmnist.model import with_difference_to_previous
from rstg_fast.modules import RSTG
from rstg_fast.modules.norm import GlobalBatchNorm


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node-dim", type=int, default=64, help="RSTG node and message width")
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--moments", action="store_true", help="append the coordinate moments [f*y, f*x] of the input")
    p.add_argument("--tdiff", action="store_true", help="append the input's difference to the previous frame")
    p.add_argument("--chbn", action="store_true", help="a BatchNorm per input channel before RSTG")
    add_loop_arguments(p)


def add_loop_arguments(p: argparse.ArgumentParser, minutes: float = 15, seed: int = 0) -> None:
    """The flags of :func:`train`'s loop."""
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW, 200-step linear warm-up, then constant")
    p.add_argument("--bs", type=int, default=16, help="fresh training videos a step")
    p.add_argument("--minutes", type=float, default=minutes, help="training wall-clock budget")
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: only the budget)")
    p.add_argument("--log", type=int, default=250, help="steps per log line")
    p.add_argument("--seed", type=int, default=seed)


def with_moments_and_difference(f: torch.Tensor, moments: bool, tdiff: bool) -> torch.Tensor:
    """``f (B, C, T, H, W)`` with ``[f*y, f*x]`` (coordinates in [-1, 1]) and then the difference
    to the previous frame (zero for the first) appended along C, as asked."""
    if moments:
        H, W = f.shape[-2:]
        ys = torch.linspace(-1, 1, H).view(H, 1)
        xs = torch.linspace(-1, 1, W).view(1, W)
        f = torch.cat([f, f * ys, f * xs], 1)
    if tdiff:
        f = with_difference_to_previous(f)
    return f


class ProbeNet(nn.Module):
    """``backbone`` (or none: the inputs are maps already) -> moments / difference -> optional
    channel BatchNorm -> RSTG (``input_norm="batch"``) -> batch-standardised linear head."""

    def __init__(self, backbone: nn.Module | None, channels: int, a: argparse.Namespace) -> None:
        super().__init__()
        self.backbone, self.moments, self.tdiff = backbone, a.moments, a.tdiff
        cin = channels * (3 if a.moments else 1) * (2 if a.tdiff else 1)
        self.chbn = nn.BatchNorm3d(cin) if a.chbn else None
        self.rstg = RSTG(cin, node_dim=a.node_dim, message_dim=a.node_dim, iterations=a.iterations, input_norm="batch")
        self.head = nn.Sequential(GlobalBatchNorm(a.node_dim), nn.Linear(a.node_dim, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x) if self.backbone is not None else x
        f = with_moments_and_difference(f, self.moments, self.tdiff)
        return self.head(self.rstg(self.chbn(f) if self.chbn is not None else f))


def counts(logits: torch.Tensor, batch: SyncMNISTBatch) -> np.ndarray:
    """``[right, named, right and named, videos]`` of a batch's predictions."""
    pred = logits.argmax(1).numpy()
    right, named = pred == batch.labels, names_present_pair(pred, batch.digits)
    return np.array([right.sum(), named.sum(), (right & named).sum(), len(pred)], dtype=np.float64)


def _rates(c: np.ndarray) -> dict[str, float]:
    right, named, both, n = c
    return dict(acc=round(right / n, 3), named=round(named / n, 3), pair=round(both / max(named, 1), 3))


def train(
    net: nn.Module,
    inputs: Callable[[SyncMNISTBatch], torch.Tensor],
    a: argparse.Namespace,
    extra_loss: Callable[[SyncMNISTBatch], torch.Tensor] | None = None,
) -> int:
    """Train on fresh videos for ``a.minutes`` (or ``a.steps`` steps when given and reached
    first), printing a JSON line per ``a.log`` steps; returns the number of steps.
    ``extra_loss(batch)``, called after the forward pass, is added to the cross-entropy (an
    auxiliary loss that reads what the forward pass kept)."""
    params = [q for q in net.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=1e-4)
    t0, step, window, loss_sum = time.time(), 0, np.zeros(4), 0.0
    max_steps = a.steps or float("inf")
    while time.time() - t0 < a.minutes * 60 and step < max_steps:
        batch = generate(a.bs, 3, "train", a.seed, stream=step + 1000)
        for group in opt.param_groups:
            group["lr"] = a.lr * min(1, (step + 1) / 200)
        logits = net(inputs(batch))
        loss = F.cross_entropy(logits, torch.from_numpy(batch.labels))
        if extra_loss is not None:
            loss = loss + extra_loss(batch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        window += counts(logits.detach(), batch)
        loss_sum += loss.item()
        step += 1
        if step % a.log == 0:
            line = dict(step=step, t=round(time.time() - t0), loss=round(loss_sum / a.log, 3), **_rates(window))
            print(json.dumps(line), flush=True)
            window[:], loss_sum = 0, 0.0
    return step


@torch.no_grad()
def test(net: nn.Module, inputs: Callable[[SyncMNISTBatch], torch.Tensor], steps: int, videos: int = 512) -> None:
    """The ``TEST`` line: the test-pool videos of stream 0, evaluation mode."""
    net.eval()
    total = np.zeros(4)
    for c in range(videos // 128):
        batch = generate(128, 3, "test", 0, stream=c)
        total += counts(net(inputs(batch)), batch)
    print("TEST", json.dumps(dict(step=steps, **_rates(total))), flush=True)


def single_digit_warm_up(bb: nn.Module, channels: int, steps: int, seed: int) -> None:
    """The product's backbone warm-up (the motion one for a motion backbone), on one thread."""
    from rstg_fast.experiments.syncmnist.config import SyncMNISTConfig
    from rstg_fast.experiments.syncmnist.pretrain import pretrain_backbone

    cfg = SyncMNISTConfig(pretrain_steps=steps, seed=seed)
    acc = pretrain_backbone(bb, channels, cfg, torch.device("cpu"))
    print(f"warm-up: class accuracy {acc[-1] if acc else 0:.3f} over its last 50 steps", flush=True)


def train_and_test_on_pixels(bb: nn.Module, channels: int, a: argparse.Namespace, freeze: bool) -> None:
    """RSTG on ``bb``'s features (frozen or trained on), trained and tested on pixels."""
    from rstg_fast.data.shards import to_tensor

    if freeze:
        bb.requires_grad_(False)
    net = ProbeNet(bb, channels, a)
    pixels = lambda batch: to_tensor(batch.videos)  # noqa: E731
    test(net, pixels, train(net, pixels, a))


def naming_warm_up(backbone: nn.Module, channels: int, cfg, steps: int) -> tuple[nn.Linear, int, float | None]:
    """``backbone`` (``channels`` out) after ``steps`` steps of the product's naming warm-up
    (``pretrain.py``, with ``cfg``'s seed and ``--naming-augment``): its warm-up head (10 classes + the step),
    the seconds it took and the hit rate of its last 50 steps."""
    from rstg_fast.experiments.syncmnist.pretrain import pretrain_backbone

    t0, kept = time.time(), {}
    cpu = torch.device("cpu")
    accs = pretrain_backbone(backbone, channels, cfg, cpu, save=kept.update, warm_up="naming", steps=steps)
    head = nn.Linear(channels, 12)
    head.load_state_dict(kept["head"])
    return head, round(time.time() - t0), accs[-1] if accs else None
