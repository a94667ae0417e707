"""The SyncMNIST training loop behind ``rstg-fast syncmnist`` (see ``cli.py`` for the data
order and the files written)."""

from __future__ import annotations

import math
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from rstg_fast import _errors
from rstg_fast._atomic import write_json, write_jsonl
from rstg_fast._checkpoint import load_checkpoint, save_checkpoint
from rstg_fast._distributed import DistInfo, all_sum, barrier, init_distributed
from rstg_fast._progress import progress, update_to
from rstg_fast.data.shards import to_tensor
from rstg_fast.data.syncmnist import NUM_CLASSES, generate, names_present_pair
from rstg_fast.experiments.run_config import parse_device
from rstg_fast.experiments.syncmnist.config import SyncMNISTConfig
from rstg_fast.experiments.syncmnist.model import ConvLSTMNet, SideBySide, SyncMNISTNet
from rstg_fast.experiments.syncmnist.plots import plot_curves


def build_model(cfg: SyncMNISTConfig) -> SyncMNISTNet | ConvLSTMNet:
    """RSTG (``--model rstg``) or the Conv+LSTM baseline (``--model conv_lstm``, hidden width
    ``--node-dim``) on the same backbone."""
    naming = cfg.naming_pretrain_steps > 0
    if cfg.model == "conv_lstm":
        return ConvLSTMNet(
            cfg.channels,
            motion=cfg.motion,
            hidden=cfg.node_dim,
            input_norm=cfg.input_norm,
            naming=naming,
            naming_channels=cfg.naming_channels,
            main_backbone=cfg.main_backbone,
            naming_depth=cfg.naming_depth,
        )
    return SyncMNISTNet(
        cfg.channels,
        naming=naming,
        naming_channels=cfg.naming_channels,
        main_backbone=cfg.main_backbone,
        naming_depth=cfg.naming_depth,
        motion=cfg.motion,
        **rstg_kwargs(cfg),
    )


def rstg_kwargs(cfg: SyncMNISTConfig) -> dict:
    """The :class:`rstg_fast.RSTG` settings of a run (all but its input channels)."""
    return dict(
        node_dim=cfg.node_dim,
        message_dim=cfg.message_dim,
        iterations=cfg.iterations,
        schedule=cfg.schedule,
        positional=cfg.positional,
        backend=cfg.backend,
        input_norm=cfg.input_norm,
    )


def load_trained(checkpoint: str) -> tuple[SyncMNISTNet | ConvLSTMNet, SyncMNISTConfig]:
    """A ``rstg-fast syncmnist`` checkpoint's model (its final weights, in eval mode) and the
    configuration it was trained with (``weights_only`` load: a ``CheckpointError`` names the file)."""
    ck = load_checkpoint(checkpoint)
    cfg = SyncMNISTConfig.from_dict(ck["config"])
    model = build_model(cfg)
    model.load_state_dict(ck["model"])
    return model.eval(), cfg


def lr_at(cfg: SyncMNISTConfig, step: int) -> float:
    """Linear warm-up over the first 5 % of the steps, then cosine decay to 0."""
    total = cfg.epochs * cfg.steps_per_epoch
    warm = max(1, total // 20)
    return cfg.lr * min(1.0, (step + 1) / warm) * 0.5 * (1.0 + math.cos(math.pi * step / total))


def _autocast(device: torch.device, dtype: str):
    return torch.autocast(device.type, dtype=getattr(torch, dtype), enabled=dtype != "float32")


class TestSet:
    """This rank's share of the test videos, generated once: blocks ``c = rank, rank+W, ...``
    of ``eval_batch_size`` videos, block ``c`` being ``generate(..., "test", seed, stream=c)``."""

    def __init__(self, cfg: SyncMNISTConfig, info: DistInfo) -> None:
        n, bs = cfg.test_videos, cfg.eval_batch_size
        self.blocks = []
        for c in range(info.rank, -(-n // bs), info.world):
            b = generate(min(bs, n - c * bs), cfg.digits, "test", cfg.seed, stream=c, source=cfg.source)
            self.blocks.append((b.videos, b.labels, b.digits))

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, cfg: SyncMNISTConfig, device: torch.device) -> dict[str, float]:
        """Loss, accuracy and the pair-given-digits measures over the whole test set (all ranks)."""
        model.eval()
        totals = [0.0] * len(TALLY)
        for videos, labels, digits in self.blocks:
            x, y = to_tensor(videos).to(device), torch.from_numpy(labels).to(device)
            with _autocast(device, cfg.dtype):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, reduction="sum").item()
            totals = [a + b for a, b in zip(totals, tally(loss, logits, labels, digits), strict=True)]
        model.train()
        return measures(all_sum(totals, device))


TALLY = ("loss_sum", "correct", "count", "named", "named_correct")


def tally(loss_sum: float, logits: torch.Tensor, labels, digits) -> list[float]:
    """A batch's counts, in the order of ``TALLY``."""
    pred = logits.argmax(1).cpu().numpy()
    right = pred == labels
    named = names_present_pair(pred, digits)
    return [loss_sum, float(right.sum()), float(len(labels)), float(named.sum()), float((right & named).sum())]


def measures(totals: list[float]) -> dict[str, float]:
    """Loss, accuracy, the share of predictions naming two digits of the video ("named") and
    the accuracy among those ("pair_given_digits", chance 1/3 with three digits)."""
    t = dict(zip(TALLY, totals, strict=True))
    count = max(t["count"], 1.0)
    return {
        "loss": t["loss_sum"] / count,
        "acc": t["correct"] / count,
        "named": t["named"] / count,
        "pair_given_digits": t["named_correct"] / t["named"] if t["named"] else 0.0,
    }


class Prefetcher:
    """Training batches by stream number, the next one generated in a background thread while
    the current step runs (numpy releases the GIL in most of the rendering). The batches are
    the same as without it: each is a function of its stream number only."""

    def __init__(self, make) -> None:
        self.make = make
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="syncmnist-data")
        self.ahead: tuple[int, Future] | None = None  # (stream, its batch being generated)

    def get(self, stream: int, following: int | None):
        """Batch ``stream``; starts generating batch ``following`` (None: nothing)."""
        ahead, self.ahead = self.ahead, None
        batch = ahead[1].result() if ahead is not None and ahead[0] == stream else self.make(stream)
        if following is not None:
            self.ahead = (following, self.pool.submit(self.make, following))
        return batch


def training_inputs(model: torch.nn.Module, cfg: SyncMNISTConfig, device: torch.device, rows: slice):
    """``make(stream) -> (batch, videos, features)`` for the :class:`Prefetcher`: training batch
    ``stream``, this rank's ``videos`` on ``device``, and, when the backbone is frozen, its
    ``features`` too (``None`` otherwise), so that the frozen backbone's forward runs in the
    data thread while the step runs (on a 2-core CPU, the second core; docs/syncmnist.md)."""

    def make(stream: int):
        batch = generate(cfg.batch_size, cfg.digits, "train", cfg.seed, stream=stream, source=cfg.source)
        videos = to_tensor(batch.videos[rows]).to(device)
        if not cfg.freeze_backbone:
            return batch, videos, None
        with torch.no_grad(), _autocast(device, cfg.dtype):
            return batch, videos, model.backbone(videos)

    return make


class TrainingDiverged(_errors.TrainingDiverged):
    """The loss became NaN or infinite: the run stops, reporting no accuracy."""


def epoch_order(seed: int, epoch: int, steps: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the training batches."""
    return np.random.default_rng(np.random.SeedSequence([seed, 7919, epoch])).permutation(steps)


def main_report(result: dict) -> str:
    """The final accuracy report, as printed."""
    lines = [
        f"SyncMNIST ({result['digits']} digits, model={result['model']}, schedule={result['schedule']},"
        f" positional={result['positional']})",
        f"  test accuracy  {100 * result['test_acc']:.2f} %  on {result['test_videos']} videos"
        f"  (chance {100 / NUM_CLASSES:.2f} %)",
        f"  pair given digits {100 * result['test_pair_given_digits']:.1f} %  of the"
        f" {100 * result['test_named']:.1f} % of test predictions that name two digits of their video"
        f"  (chance {100 / math.comb(result['digits'], 2):.1f} %)",
        f"  train accuracy {100 * result['train_acc']:.2f} %  (last epoch, running;"
        f" pair given digits {100 * result['train_pair_given_digits']:.1f} %)",
        f"  epochs {result['epochs']}, {result['steps']} steps, {result['train_time_s']:.0f} s training,"
        f" device {result['device']}, dtype {result['dtype']}, world {result['world']}",
    ]
    return "\n".join(lines)


def _check_resume_config(saved: dict, cfg: SyncMNISTConfig) -> None:
    diff = cfg.resume_differences(saved)
    if diff:
        raise ValueError(f"--resume: the checkpoint was made with other settings: {diff} (checkpoint, now)")


def _rng_state(device: torch.device) -> dict:
    cuda = {"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}
    return {"torch_rng": torch.get_rng_state(), **cuda}


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def warm_up_phases(model: SyncMNISTNet | ConvLSTMNet, cfg: SyncMNISTConfig) -> list[tuple[str, torch.nn.Module, int]]:
    """The backbone warm-ups in their order, as ``(warm-up, backbone, steps)``: the
    ``--pretrain-steps`` one (``digit`` or ``motion``; none with ``--no-main-backbone``), then
    the naming backbone's."""
    from rstg_fast.experiments.syncmnist.pretrain import warm_up_of

    main = model.backbone.main if isinstance(model.backbone, SideBySide) else model.backbone
    phases = [(warm_up_of(main), main, cfg.pretrain_steps)] if main is not None else []
    if cfg.naming_pretrain_steps:
        phases.append(("naming", model.backbone.naming, cfg.naming_pretrain_steps))
    return [p for p in phases if p[2] > 0]


def _pretrain(
    model: SyncMNISTNet | ConvLSTMNet,
    cfg: SyncMNISTConfig,
    device: torch.device,
    info: DistInfo,
    ckpt_path: str,
    state: dict | None,
    phases: list[tuple[str, torch.nn.Module, int]],
) -> dict[str, list[float]]:
    """The backbone warm-ups (``pretrain.py`` says why), one after the other, resumable:
    each checkpoints into ``ckpt_path`` (with a ``"pretrain"`` entry that marks the phase and
    keeps the finished phases' hit rates) every ``--ckpt-steps`` steps, or every
    ``steps_per_epoch`` steps when that is 0, and at its end; ``state`` is such a checkpoint to
    continue from exactly. Every rank runs the same warm-ups (same data, same seed), so the
    backbones agree when DDP starts. ``phases``: :func:`warm_up_phases`. Returns each
    warm-up's hit rates per 50 steps."""
    from rstg_fast.experiments.syncmnist.pretrain import pretrain_backbone

    names = [name for name, _, _ in phases]
    done: dict[str, list[float]] = {}
    resume, first = None, 0
    if state is not None:
        model.load_state_dict(state["model"])
        _set_rng_state(state, device)
        resume = state["pretrain"]
        first = names.index(resume.get("phase", names[0]))  # a checkpoint from before phases: the first
        done = dict(resume.get("done", {}))
    every = cfg.ckpt_steps or cfg.steps_per_epoch
    for name, backbone, steps in phases[first:]:

        def save(pretrain_state: dict, name: str = name) -> None:
            if info.is_main:
                save_checkpoint(
                    ckpt_path,
                    {
                        "model": model.state_dict(),
                        "pretrain": {**pretrain_state, "phase": name, "done": done},
                        "config": cfg.as_dict(),
                        **_rng_state(device),
                    },
                )

        pbar = progress(
            steps,
            desc=f"warm-up ({name})",
            unit="step",
            initial=resume["step"] if resume else 0,
            disable=not info.is_main or cfg.progress == "none",
        )
        moved = lambda n, pbar=pbar: update_to(pbar, n)  # noqa: E731
        acc = pretrain_backbone(backbone, backbone.channels, cfg, device, moved, resume, save, every, name, steps)
        pbar.close()
        resume = None
        done[name] = acc
        if info.is_main and acc:
            measure = "top-digits presence" if name == "naming" else "accuracy"
            print(f"backbone warm-up ({name}): {measure} {100 * acc[-1]:.1f} % over its last 50 steps", file=sys.stderr)
    return done


def train(cfg: SyncMNISTConfig) -> dict | None:
    """Train and evaluate; returns the final report (``None`` if stopped early on purpose).
    Leaves torch's thread count as it found it, also when interrupted (a second run in the
    same process then splits the same cores the same way)."""
    machine_threads = torch.get_num_threads()
    try:
        return _train(cfg, machine_threads)
    finally:
        torch.set_num_threads(machine_threads)


def _train(cfg: SyncMNISTConfig, machine_threads: int) -> dict | None:
    device = parse_device(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    elif device.type == "cpu" and machine_threads > 1:
        # the data thread (Prefetcher) renders the next batch, and runs a frozen backbone, on a
        # core of its own: with every core also given to the step, both slow down (2-core VM:
        # 16.3 steps/s without the data thread at 2 threads, 11.4-13.7 with it; 16.4 with it
        # and 1 thread; bench/syncmnist_step.py, docs/syncmnist.md)
        torch.set_num_threads(machine_threads - 1)
    step_threads = torch.get_num_threads()
    # the warm-ups run before the data thread starts: they also get its core (2-core VM, the
    # naming warm-up: 33.3 steps/s on one thread, 47.4-48.2 on two; docs/syncmnist.md)
    warm_up_threads = step_threads
    if device.type == "cpu":
        warm_up_threads = min(step_threads + 1, max(machine_threads, step_threads))
    info, device = init_distributed(device)
    bsz, world, steps = cfg.batch_size, info.world, cfg.steps_per_epoch
    if bsz % world:
        raise ValueError(f"--batch-size {bsz} must be divisible by the number of processes {world}")
    out = cfg.out
    ckpt_path = os.path.join(out, "checkpoint.pt")
    os.makedirs(out, exist_ok=True)

    state = None
    if os.path.exists(ckpt_path):
        if cfg.resume:
            state = load_checkpoint(ckpt_path)
            _check_resume_config(state["config"], cfg)
        elif not cfg.overwrite:
            raise ValueError(f"--out {out} already has a checkpoint: pass --resume to continue or --overwrite")
    elif cfg.resume and info.is_main:
        print(f"--resume: no checkpoint in {out}, starting from scratch", file=sys.stderr)
    # Every rank has looked at (and loaded) the checkpoint before rank 0 may write one: the
    # backbone warm-up has no collectives, so without this a rank held back by the scheduler
    # found the warm-up checkpoint rank 0 had just written ("already has a checkpoint" on
    # that rank alone; or, with --resume, a later state than the other ranks loaded).
    barrier()

    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    phases = warm_up_phases(model, cfg)
    warm_up_acc: dict[str, list[float]] = {}
    if phases and (state is None or "pretrain" in state):
        torch.set_num_threads(warm_up_threads)
        warm_up_acc = _pretrain(model, cfg, device, info, ckpt_path, state, phases)
        torch.set_num_threads(step_threads)
        state = None  # the training phase starts afresh from the warmed-up backbones
    if cfg.freeze_backbone:  # keeps the warm-up's motion features (docs/syncmnist.md)
        model.backbone.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.dtype == "float16")
    epoch, step, history, run_time = 0, 0, [], 0.0
    running = [0.0] * len(TALLY)  # the current epoch's counts (TALLY), summed over ranks at the end
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state, device)
        epoch, step, history, run_time = state["epoch"], state["step"], state["history"], state["train_time_s"]
        if "warm_up_acc" in state:
            warm_up_acc = dict(state["warm_up_acc"])
        elif state.get("pretrain_acc"):  # a checkpoint from before the naming warm-up: one warm-up
            warm_up_acc = {phases[0][0]: list(state["pretrain_acc"])}
        running = list(state["running"]) if info.is_main else [0.0] * len(TALLY)
        running += [0.0] * (len(TALLY) - len(running))  # a checkpoint from before "named" was counted
        if info.is_main:  # a kill between the checkpoint and the log write left the log behind
            write_jsonl(os.path.join(out, "metrics.jsonl"), history)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def checkpoint(next_epoch: int, next_step: int, elapsed: float) -> None:
        totals = all_sum(running, device)  # every rank joins the reduction
        if not info.is_main:
            return
        save_checkpoint(
            ckpt_path,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(),
                **_rng_state(device),
                "epoch": next_epoch,
                "step": next_step,
                "history": history,
                "running": totals,
                "train_time_s": elapsed,
                "config": cfg.as_dict(),
                "warm_up_acc": warm_up_acc,
            },
        )

    test_set = TestSet(cfg, info)
    total = cfg.epochs * steps
    bar = progress(
        total,
        desc="train",
        unit="step",
        initial=epoch * steps + step,
        disable=not info.is_main or cfg.progress == "none",
    )
    rows = slice(info.rank * bsz // world, (info.rank + 1) * bsz // world)
    batches = Prefetcher(training_inputs(model, cfg, device, rows))
    t0 = time.perf_counter() - run_time
    model.train()
    while epoch < cfg.epochs:
        order = epoch_order(cfg.seed, epoch, steps)
        while step < steps:
            gstep = epoch * steps + step
            offset = epoch * steps if cfg.fresh_data else 0
            following = int(order[step + 1]) + offset if step + 1 < steps else None
            batch, x, features = batches.get(int(order[step]) + offset, following)
            y = torch.from_numpy(batch.labels[rows]).to(device)
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, gstep)
            with _autocast(device, cfg.dtype):
                logits = net(x, features=features)
            loss = F.cross_entropy(logits.float(), y)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"the training loss became {loss.item()} at step {gstep + 1} (epoch {epoch + 1}): the run "
                    f"diverged; no accuracy is reported. Try a lower --lr (now {cfg.lr:g})"
                    + (" or --dtype float32" if cfg.dtype != "float32" else "")
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            scaler.step(opt)
            scaler.update()
            counts = tally(loss.item() * len(y), logits.detach(), batch.labels[rows], batch.digits[rows])
            running = [a + b for a, b in zip(running, counts, strict=True)]
            step += 1
            now = measures(running)
            bar.set_postfix(loss=now["loss"], acc=now["acc"], pair=now["pair_given_digits"], refresh=False)
            bar.update(1)
            stop = cfg.stop_after_steps and gstep + 1 >= cfg.stop_after_steps
            if step < steps and (stop or (cfg.ckpt_steps and (gstep + 1) % cfg.ckpt_steps == 0)):
                checkpoint(epoch, step, time.perf_counter() - t0)
            if stop and step < steps:
                bar.close()
                return None
        train = measures(all_sum(running, device))
        test = test_set.evaluate(model, cfg, device)
        elapsed = time.perf_counter() - t0
        history.append(
            {
                "epoch": epoch + 1,
                "step": (epoch + 1) * steps,
                "lr": lr_at(cfg, (epoch + 1) * steps - 1),
                **{f"train_{k}": v for k, v in train.items()},
                **{f"test_{k}": v for k, v in test.items()},
                "time_s": round(elapsed, 3),
            }
        )
        epoch, step, running = epoch + 1, 0, [0.0] * len(TALLY)
        checkpoint(epoch, 0, elapsed)
        if info.is_main:
            write_jsonl(os.path.join(out, "metrics.jsonl"), history)
            h = history[-1]
            print(
                f"\nepoch {h['epoch']}: train loss {h['train_loss']:.4f} acc {100 * h['train_acc']:.2f} % "
                f"(pair given digits {100 * h['train_pair_given_digits']:.1f} %), test loss {h['test_loss']:.4f} "
                f"acc {100 * h['test_acc']:.2f} % (pair given digits {100 * h['test_pair_given_digits']:.1f} %, "
                f"naming two present digits {100 * h['test_named']:.1f} %) ({elapsed:.0f} s)",
                file=sys.stderr,
            )
        if cfg.stop_after_steps and epoch * steps >= cfg.stop_after_steps and epoch < cfg.epochs:
            bar.close()
            return None
    bar.close()
    last = history[-1]
    result = {
        "test_acc": last["test_acc"],
        "test_loss": last["test_loss"],
        "train_acc": last["train_acc"],
        "test_named": last["test_named"],
        "test_pair_given_digits": last["test_pair_given_digits"],
        "train_pair_given_digits": last["train_pair_given_digits"],
        "epochs": cfg.epochs,
        "steps": total,
        "train_time_s": last["time_s"],
        "digits": cfg.digits,
        "model": cfg.model,
        "schedule": cfg.schedule,
        "positional": cfg.positional,
        "device": str(device),
        "dtype": cfg.dtype,
        "world": world,
        "test_videos": cfg.test_videos,
        "torch": torch.__version__,
        "config": cfg.as_dict(),
        "threads": torch.get_num_threads(),
        "warm_up_threads": warm_up_threads,
        "warm_up_acc": warm_up_acc,
    }
    if info.is_main:
        write_json(os.path.join(out, "result.json"), result)
        if not cfg.no_plot:
            result["plot"] = plot_curves(os.path.join(out, "curves.png"), history)
        print(main_report(result))
    return result
