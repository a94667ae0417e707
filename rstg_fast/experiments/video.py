"""``rstg-fast train-video``: C2D / I3D ResNet-50 (+ RSTG) on Something-Something v1.

Single process::

    rstg-fast train-video --data-root /data/smth-v1/frames --annotations /data/smth-v1 \\
        --arch i3d --placement res3-4 --pretrained i3d_r50_kinetics.pt --out runs/i3d_rstg

Many GPUs / nodes (per-process ``--batch-size``; global batch = batch x processes x accum)::

    torchrun --nproc_per_node 8 -m rstg_fast.cli train-video ... (same flags)

Resumes from ``<out>/last.pt`` when it exists (``--restart`` ignores it); ``metrics.jsonl`` is
rewritten from the history kept in that checkpoint. Evaluation: one
centre crop by default; the paper's multi-view test is ``--spatial-clips 11 --temporal-clips 2``
(softmax scores averaged over the 22 views). See docs/video.md.

Before any work, :func:`check_args` checks every flag, the data and weight paths and what this
machine can run (``--device cuda`` without CUDA, an ``--rstg-backend`` that cannot run on the
device in the ``--amp`` dtype): an error names the flag, exit code 2 (rstg_fast.cli). A
damaged checkpoint, or a loss that becomes NaN or infinite, stops the run with one line and
exit code 1; no accuracy is reported for a diverged run.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from typing import Any

import torch
import torch.nn.functional as F

from rstg_fast._atomic import strict_json, write_jsonl
from rstg_fast._checkpoint import load_checkpoint, save_checkpoint
from rstg_fast._distributed import all_sum, init_distributed, leaving_distributed
from rstg_fast._errors import TrainingDiverged, UsageError
from rstg_fast._progress import progress
from rstg_fast._run_lock import run_lock
from rstg_fast.data.something import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LABELS_FILE,
    SPLIT_FILES,
    ClipConfig,
    SomethingSomethingV1,
)
from rstg_fast.experiments.run_config import RunConfig, check_fields, parse_device
from rstg_fast.video import VideoClassifier, WeightLoadError, load_resnet_weights, parse_placement
from rstg_fast.video.training import StepSampler, cosine_lr, shard_indices, topk_correct

# Arguments that define the model: stored in checkpoints and checked on resume.
MODEL_KEYS = (
    "arch",
    "placement",
    "base_width",
    "blocks",
    "pool2",
    "stride_in_1x1",
    "dropout",
    "node_dim",
    "message_dim",
    "iterations",
    "scalewise_update",
    "heads",
    "positional",
    "rstg_backend",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--data-root", required=True, help="folder of <video_id>/00001.jpg frame folders")
    d.add_argument(
        "--annotations", default=None, help="folder of the something-something-v1-*.csv files (default: --data-root)"
    )
    d.add_argument("--frame-template", default="{:05d}.jpg")
    d.add_argument("--num-frames", type=int, default=32, help="frames per clip (the paper: 32; the graph sees 16)")
    d.add_argument("--frame-stride", type=int, default=1)
    d.add_argument("--crop-size", type=int, default=224)
    d.add_argument("--train-scale", type=int, nargs=2, default=(256, 320), metavar=("MIN", "MAX"))
    d.add_argument("--test-short-side", type=int, default=256)
    d.add_argument("--spatial-clips", type=int, default=1, help="evaluation crops per clip (paper multi-view: 11)")
    d.add_argument("--temporal-clips", type=int, default=1, help="evaluation clips per video (paper multi-view: 2)")
    d.add_argument("--flip", choices=("none", "label-aware"), default="none")
    d.add_argument("--mean", type=float, nargs=3, default=IMAGENET_MEAN, help="RGB mean of [0, 1] pixels")
    d.add_argument("--std", type=float, nargs=3, default=IMAGENET_STD, help="RGB std of [0, 1] pixels")
    d.add_argument("--workers", type=int, default=4)
    m = p.add_argument_group("model")
    m.add_argument("--arch", choices=("c2d", "i3d"), default="i3d")
    m.add_argument(
        "--placement",
        default="res3-4",
        help="none, vec, res2, res3, res4, res3-4, or stages joined by + (e.g. res4+vec)",
    )
    m.add_argument("--base-width", type=int, default=64, help="ResNet-50: 64")
    m.add_argument("--blocks", type=int, nargs=4, default=(3, 4, 6, 3), help="ResNet-50: 3 4 6 3")
    m.add_argument(
        "--pool2", action="store_true", help="Non-local's temporal pool after res2 (graph then sees 8 steps)"
    )
    m.add_argument(
        "--stride-in-1x1",
        action="store_true",
        help="stage stride on the first 1x1 conv (ResNet v1: Caffe2/Non-local weights); "
        "default: on the 3x3 (torchvision)",
    )
    m.add_argument("--dropout", type=float, default=0.5)
    m.add_argument("--node-dim", type=int, default=512)
    m.add_argument("--message-dim", type=int, default=512)
    m.add_argument("--iterations", type=int, default=3)
    m.add_argument(
        "--scalewise-update",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one update MLP per scale (the authors' Something-Something configs; docs/design.md §1)",
    )
    m.add_argument("--heads", type=int, default=1)
    m.add_argument("--positional", action="store_true", help="RSTG positional maps")
    m.add_argument("--rstg-backend", default="auto")
    m.add_argument("--pretrained", default=None, help="ResNet-50 state_dict (torchvision names; 2D is inflated)")
    m.add_argument("--inflate", choices=("mean", "center"), default="mean")
    t = p.add_argument_group("training")
    t.add_argument("--out", required=True, help="run folder: last.pt, metrics.jsonl")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=8, help="per process and micro-step")
    t.add_argument("--eval-batch-size", type=int, default=4, help="videos per process and eval step")
    t.add_argument(
        "--eval-chunk", type=int, default=8, help="clips per forward pass in evaluation (bounds memory with 22 views)"
    )
    t.add_argument("--accum-steps", type=int, default=1, help="micro-steps per optimizer step")
    t.add_argument("--lr", type=float, default=0.01)
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--warmup-steps", type=int, default=0)
    t.add_argument("--clip-grad", type=float, default=0.0, help="max grad norm (0: off)")
    t.add_argument("--freeze-bn", action="store_true", help="BatchNorm statistics frozen (eval mode) while training")
    t.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    t.add_argument(
        "--dtype",
        choices=tuple(_DTYPE_TO_AMP),
        default=None,
        help="autocast dtype, as in `rstg-fast syncmnist` (float32 = --amp none)",
    )
    t.add_argument(
        "--max-steps", type=int, default=0, help="stop after this many optimizer steps in all (0: all epochs)"
    )
    t.add_argument("--ckpt-every", type=int, default=500, help="optimizer steps between checkpoints")
    t.add_argument("--eval-every", type=int, default=1, help="epochs between evaluations (0: only at the end)")
    t.add_argument("--eval-only", action="store_true", help="evaluate <out>/last.pt (or --checkpoint) and exit")
    t.add_argument("--checkpoint", default=None, help="checkpoint for --eval-only")
    t.add_argument("--restart", action="store_true", help="ignore an existing <out>/last.pt")
    t.add_argument("--overwrite", action="store_true", help="the same as --restart (the syncmnist spelling)")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from <out>/last.pt: the default whenever it exists (accepted for symmetry)",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--progress", choices=("auto", "none"), default="auto", help="none = --no-progress")


def _model_config(args: argparse.Namespace) -> dict[str, Any]:
    cfg = {k: getattr(args, k) for k in MODEL_KEYS}
    cfg["blocks"] = list(cfg["blocks"])
    cfg["placement"] = parse_placement(cfg["placement"]).name
    return cfg


def build_model(cfg: dict[str, Any], num_classes: int) -> VideoClassifier:
    rstg = {
        "node_dim": cfg["node_dim"],
        "message_dim": cfg["message_dim"],
        "iterations": cfg["iterations"],
        "scalewise_update": cfg["scalewise_update"],
        "heads": cfg.get("heads", 1),
        "positional": cfg.get("positional", False),
        "backend": cfg["rstg_backend"],
    }
    return VideoClassifier(
        cfg["arch"],
        num_classes,
        cfg["placement"],
        base_width=cfg["base_width"],
        blocks=cfg["blocks"],
        pool2=cfg["pool2"],
        stride_in_1x1=cfg.get("stride_in_1x1", False),
        rstg=rstg,
        dropout=cfg["dropout"],
    )


def _clip_config(args: argparse.Namespace) -> ClipConfig:
    return ClipConfig(
        num_frames=args.num_frames,
        frame_stride=args.frame_stride,
        crop_size=args.crop_size,
        train_scale=tuple(args.train_scale),
        test_short_side=args.test_short_side,
        spatial_clips=args.spatial_clips,
        temporal_clips=args.temporal_clips,
        flip=args.flip,
        mean=tuple(args.mean),
        std=tuple(args.std),
    )


def _autocast(args: argparse.Namespace, device: torch.device):
    if args.amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if args.amp == "bf16" else torch.float16)


def evaluate(
    model: torch.nn.Module,
    data: SomethingSomethingV1,
    args: argparse.Namespace,
    rank: int,
    world: int,
    device: torch.device,
) -> dict[str, float]:
    """Top-1/top-5 (%) and mean loss over ``data``, views' softmax scores averaged."""
    subset = torch.utils.data.Subset(data, shard_indices(len(data), world, rank))
    loader = torch.utils.data.DataLoader(subset, batch_size=args.eval_batch_size, num_workers=args.workers)
    model.eval()
    sums = [0.0, 0.0, 0.0, 0.0]  # top1, top5, nll, count
    bar = progress(len(loader), "eval", disable=rank != 0 or args.no_progress)
    with torch.no_grad():
        for clips, labels in loader:
            b, v = clips.shape[:2]
            clips, labels = clips.to(device, non_blocking=True), labels.to(device)
            with _autocast(args, device):
                logits = torch.cat([model(c) for c in clips.flatten(0, 1).split(args.eval_chunk)])
            probs = logits.float().softmax(-1).view(b, v, -1).mean(1)
            c1, c5 = topk_correct(probs, labels)
            nll = F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum").item()
            sums = [sums[0] + c1, sums[1] + c5, sums[2] + nll, sums[3] + b]
            bar.update()
    bar.close()
    top1, top5, nll, n = all_sum(sums, device)
    if not math.isfinite(nll):  # every rank sees the same sums: all stop together
        raise TrainingDiverged(
            f"the validation loss became {nll / max(n, 1)}: the model's outputs are not finite, so "
            "no accuracy is reported; lower --lr or set --clip-grad and --restart"
        )
    return {"top1": 100 * top1 / max(n, 1), "top5": 100 * top5 / max(n, 1), "loss": nll / max(n, 1), "videos": int(n)}


def _set_bn_eval(model: torch.nn.Module) -> None:
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.eval()


# the flag spellings train-video shares with `rstg-fast syncmnist`
_DTYPE_TO_AMP = {"float32": "none", "bfloat16": "bf16", "float16": "fp16"}


def _shared_spellings(args: argparse.Namespace) -> None:
    """Fold the syncmnist spellings (``--dtype``, ``--overwrite``, ``--progress none``) into
    this command's own (``--amp``, ``--restart``, ``--no-progress``); conflicting values are
    refused."""
    dtype = getattr(args, "dtype", None)
    if dtype is not None:
        amp = _DTYPE_TO_AMP[dtype]
        if args.amp not in ("none", amp):
            raise ValueError(f"--dtype {dtype} contradicts --amp {args.amp}")
        args.amp = amp
    if getattr(args, "overwrite", False):
        args.restart = True
    if getattr(args, "resume", False) and args.restart:
        raise ValueError("--resume contradicts --restart/--overwrite")
    if getattr(args, "progress", "auto") == "none":
        args.no_progress = True


def check_args(args: argparse.Namespace) -> None:
    """Every flag, the data and weight paths, and what this machine can run, before any work
    (run by rstg_fast.cli: a ValueError here is a usage error naming the flag). Sets
    ``args.clip`` (the ClipConfig) for :func:`run`."""
    _shared_spellings(args)
    # the fields both training commands have, typed and checked in one place (run_config.py)
    args.run = RunConfig(
        out=args.out,
        seed=args.seed,
        device=args.device,
        dtype={amp: dtype for dtype, amp in _DTYPE_TO_AMP.items()}[args.amp],
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        resume=getattr(args, "resume", False),
        overwrite=args.restart,
        progress="none" if args.no_progress else "auto",
    )
    args.run.validate()
    check_fields(
        args,
        positive=("eval_batch_size", "eval_chunk", "accum_steps", "ckpt_every"),
        non_negative=("warmup_steps", "max_steps", "eval_every", "workers"),
        rates=("momentum", "clip_grad"),
    )
    args.clip = _clip_config(args)  # its errors name its fields, which are the flags' names
    try:
        args.frame_template.format(1)
    except (IndexError, KeyError, ValueError) as e:
        raise ValueError(f"--frame-template {args.frame_template!r} cannot name frame 1: {e}") from None
    cfg = _model_config(args)
    device = parse_device(args.device)
    placement = parse_placement(cfg["placement"])
    amp = {"none": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    if placement.maps or placement.vec:  # the graph's op runs in the autocast dtype
        from rstg_fast.ops.backends import resolve_backend

        try:
            resolve_backend(args.rstg_backend, device, amp)
        except ValueError as e:
            raise ValueError(
                f"--rstg-backend {args.rstg_backend} with --amp {args.amp} on {device.type}: {e}"
            ) from None
    # widths, heads, blocks, dropout: checked by the constructors (a throwaway CPU model, a few
    # seconds at the paper's size; not on the meta device, where positional maps cannot be built)
    with torch.random.fork_rng(devices=[]):
        build_model(cfg, num_classes=2)
    _check_paths(args)
    if device.type == "cpu" and args.amp == "fp16" and os.environ.get("RANK", "0") == "0":
        print(
            "warning: --amp fp16 on a CPU is emulated and slow (slower than float32); use --amp bf16 or none",
            file=sys.stderr,
        )


def _check_paths(args: argparse.Namespace) -> None:
    """The folders and files the run reads, named by their flag when missing."""
    if not os.path.isdir(args.data_root):
        raise ValueError(f"--data-root {args.data_root}: no such folder (the Something-Something frame folders)")
    flag, ann = ("--annotations", args.annotations) if args.annotations else ("--data-root", args.data_root)
    if not os.path.isdir(ann):
        raise ValueError(f"{flag} {ann}: no such folder (the Something-Something v1 CSV files)")
    needed = [LABELS_FILE, SPLIT_FILES["validation"]] + ([] if args.eval_only else [SPLIT_FILES["train"]])
    for name in needed:
        if not os.path.isfile(os.path.join(ann, name)):
            raise ValueError(f"{flag} {ann}: no {os.path.join(ann, name)} (the Something-Something v1 CSV files)")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out}: exists and is not a folder")
    if args.pretrained is not None and not os.path.isfile(args.pretrained):
        raise ValueError(f"--pretrained {args.pretrained}: no such file")
    if args.eval_only:
        if args.checkpoint is not None and not os.path.isfile(args.checkpoint):
            raise ValueError(f"--checkpoint {args.checkpoint}: no such file")
        last = os.path.join(args.out, "last.pt")
        if args.checkpoint is None and not os.path.isfile(last):
            raise ValueError(
                f"--eval-only: nothing to evaluate, {last} does not exist (train first, or pass --checkpoint)"
            )


def run(args: argparse.Namespace) -> int:
    if not hasattr(args, "clip"):  # called without rstg_fast.cli.main, which ran check_args
        check_args(args)
    # oneDNN's bfloat16 Conv3d backward on CPU (torch 2.13) gives NaN gradients at random for
    # (3, 1, 1) kernels (32 of 40 tries on the dev VM; 0 of 40 without oneDNN), so a bf16 CPU run
    # uses PyTorch's own convolutions (restored afterwards: in-process callers keep theirs)
    bf16_cpu = args.amp == "bf16" and parse_device(args.device).type == "cpu"
    onednn = torch.backends.mkldnn.flags(enabled=False) if bf16_cpu else contextlib.nullcontext()
    # one run writes to an --out at a time; --eval-only only reads it, so it may look at a live run
    lock = contextlib.nullcontext() if args.eval_only else run_lock(args.out)
    with lock, onednn, leaving_distributed():  # also after --eval-only and on errors (it used to skip both)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    info, device = init_distributed(parse_device(args.device))
    rank, world = info.rank, info.world
    if device.type == "cuda" and not torch.are_deterministic_algorithms_enabled():
        torch.backends.cudnn.benchmark = True  # fixed clip shapes: let cuDNN pick its fastest 3D convs
    cfg = _model_config(args)
    ann = args.annotations or args.data_root
    clip_cfg = args.clip
    val = SomethingSomethingV1(
        args.data_root, "validation", train=False, clip=clip_cfg, annotations=ann, frame_template=args.frame_template
    )
    last = os.path.join(args.out, "last.pt")
    if args.eval_only:
        state = load_checkpoint(args.checkpoint or last)
        model = build_model(state["config"], val.num_classes).to(device)
        model.load_state_dict(state["model"])
        res = evaluate(model, val, args, rank, world, device)
        if rank == 0:
            print(strict_json({"eval": res, "checkpoint": args.checkpoint or last}))
        return 0

    train = SomethingSomethingV1(
        args.data_root,
        "train",
        train=True,
        clip=clip_cfg,
        annotations=ann,
        frame_template=args.frame_template,
        seed=args.seed,
    )
    torch.manual_seed(args.seed)  # same initial weights on every rank
    model = build_model(cfg, train.num_classes).to(device)
    decay = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(decay, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    epoch, step_in_epoch, global_step = 0, 0, 0
    # One record per epoch (a run stopped mid-epoch by --max-steps records that part, and its
    # resume replaces the record); ``pending`` is a finished epoch's record awaiting its
    # evaluation; ``sums`` (loss, top-1, count) are this rank's share of the current epoch.
    # All of it is in the checkpoint and the log is rewritten from it, so a resumed run's log
    # equals an uninterrupted run's.
    history: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = None
    sums = [0.0, 0.0, 0.0]
    if os.path.exists(last) and not args.restart:
        state = load_checkpoint(last)
        if state["config"] != cfg:
            diff = {
                k: (state["config"].get(k), cfg.get(k))
                for k in cfg.keys() | state["config"].keys()
                if state["config"].get(k) != cfg.get(k)
            }
            raise UsageError(
                f"--out {args.out}: {last} was trained with other model flags {diff} (checkpoint, now); "
                "use --restart or another --out"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        epoch, step_in_epoch, global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        history, pending = state["history"], state["pending"]
        sums = list(state["running"]) if rank == 0 else [0.0, 0.0, 0.0]  # rank 0 holds all ranks' totals
        if rank == 0:
            print(f"resumed from {last}: epoch {epoch}, step {step_in_epoch}, global step {global_step}")
    elif args.pretrained:
        try:
            rep = load_resnet_weights(model, args.pretrained, inflate=args.inflate)
        except WeightLoadError as e:  # keys or shapes that do not fit the model: a bad flag
            raise UsageError(f"--pretrained {args.pretrained}: {e}") from None
        if rank == 0:
            print(
                f"pretrained {args.pretrained}: {len(rep.copied)} copied, {len(rep.inflated)} inflated, "
                f"{len(rep.skipped)} skipped ({', '.join(rep.skipped[:4])})"
            )
    net: torch.nn.Module = model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    sampler0 = StepSampler(len(train), args.batch_size, world_size=world, accum_steps=args.accum_steps)
    steps_per_epoch = sampler0.steps_per_epoch
    if steps_per_epoch == 0:
        raise UsageError(
            f"--batch-size {args.batch_size} x {world} processes x --accum-steps {args.accum_steps} = "
            f"{sampler0.global_batch} videos per step, more than the {len(train)} training videos"
        )
    total_steps = steps_per_epoch * args.epochs
    stop_at = min(total_steps, args.max_steps) if args.max_steps > 0 else total_steps

    def checkpoint() -> None:
        totals = all_sum(sums, device)  # every rank joins the reduction
        if rank == 0:
            save_checkpoint(
                last,
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": epoch,
                    "step_in_epoch": step_in_epoch,
                    "global_step": global_step,
                    "config": cfg,
                    "history": history,
                    "pending": pending,
                    "running": totals,
                },
            )

    def log(record: dict[str, Any] | None = None) -> None:
        if rank == 0:
            if record is not None:
                print(strict_json(record))
            write_jsonl(os.path.join(args.out, "metrics.jsonl"), history)

    def finish(record: dict[str, Any]) -> None:
        """Store ``record`` (replacing an earlier part of the same epoch), checkpoint, log."""
        nonlocal history, pending
        history = [h for h in history if h["epoch"] != record["epoch"]] + [record]
        pending = None
        checkpoint()
        log(record)

    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
    log()  # a kill between a checkpoint and its log write left the log behind
    if pending is not None:  # killed during an evaluation: the training it follows is saved
        finish({**pending, "val": evaluate(model, val, args, rank, world, device)})
    while epoch < args.epochs and global_step < stop_at:
        train.set_epoch(epoch)
        sampler = StepSampler(
            len(train),
            args.batch_size,
            world_size=world,
            rank=rank,
            accum_steps=args.accum_steps,
            seed=args.seed,
            epoch=epoch,
            start_step=step_in_epoch,
        )
        loader = iter(
            torch.utils.data.DataLoader(
                train, batch_sampler=sampler, num_workers=args.workers, pin_memory=device.type == "cuda"
            )
        )
        net.train()
        if args.freeze_bn:
            _set_bn_eval(net)
        bar = progress(steps_per_epoch - step_in_epoch, f"epoch {epoch}", disable=rank != 0 or args.no_progress)
        while step_in_epoch < steps_per_epoch and global_step < stop_at:
            # Dropout draws depend only on (seed, step, rank): resuming replays them exactly.
            torch.manual_seed(args.seed * 1_000_003 + global_step * 1009 + rank)
            for group in opt.param_groups:
                group["lr"] = cosine_lr(global_step, total_steps, args.lr, args.warmup_steps)
            step_loss = 0.0
            for micro in range(args.accum_steps):
                clips, labels = next(loader)
                clips, labels = clips.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                sync = micro == args.accum_steps - 1 or world == 1
                with contextlib.nullcontext() if sync else net.no_sync(), _autocast(args, device):
                    logits = net(clips)
                    loss = F.cross_entropy(logits.float(), labels)
                scaler.scale(loss / args.accum_steps).backward()
                step_loss += loss.item() * len(labels)
                sums = [
                    sums[0] + loss.item() * len(labels),
                    sums[1] + topk_correct(logits.detach(), labels, (1,))[0],
                    sums[2] + len(labels),
                ]
            # a non-finite loss on any rank stops every rank, before the optimizer step (so
            # before any checkpoint of it); one more small all-reduce per step under DDP
            step_loss = all_sum([step_loss], device)[0] if world > 1 else step_loss
            if not math.isfinite(step_loss):
                saved = (
                    f"{last} holds the last checkpoint (resume from it, or --restart)"
                    if os.path.exists(last)
                    else "no checkpoint was written"
                )
                amp = ", or try --amp none" if args.amp != "none" else ""
                raise TrainingDiverged(
                    f"the training loss became {step_loss} at epoch {epoch}, "
                    f"step {step_in_epoch} (global step {global_step}); the run stopped and reports no accuracy. "
                    f"Lower --lr, set --clip-grad or --warmup-steps{amp}; {saved}"
                )
            if args.clip_grad > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            step_in_epoch += 1
            global_step += 1
            bar.set_postfix_str(f"loss {sums[0] / sums[2]:.3f} lr {opt.param_groups[0]['lr']:.4g}", refresh=False)
            bar.update()
            if global_step % args.ckpt_every == 0 and step_in_epoch < steps_per_epoch:
                checkpoint()
        bar.close()
        loss_sum, top1_sum, n = all_sum(sums, device)
        record = {
            "epoch": epoch,
            "global_step": global_step,
            "train_loss": loss_sum / max(n, 1),
            "train_top1": 100 * top1_sum / max(n, 1),
        }
        if step_in_epoch < steps_per_epoch:  # stopped by --max-steps: the sums stay for a resume
            finish(record)
            continue
        epoch, step_in_epoch, sums = epoch + 1, 0, [0.0, 0.0, 0.0]
        finished = epoch >= args.epochs or global_step >= stop_at
        if (args.eval_every and epoch % args.eval_every == 0) or finished:
            pending = record
            checkpoint()  # the epoch's training is safe before the (long) evaluation
            record = {**record, "val": evaluate(model, val, args, rank, world, device)}
        finish(record)
    return 0
