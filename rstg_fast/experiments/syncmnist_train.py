"""The SyncMNIST training loop behind ``rstg-fast syncmnist`` (see ``syncmnist.py`` for the
data order and the files written)."""

from __future__ import annotations

import math
import os
import sys
import time

import torch
import torch.nn.functional as F

from rstg_fast._atomic import write_jsonl
from rstg_fast._checkpoint import load_checkpoint, save_checkpoint
from rstg_fast._distributed import DistInfo, all_sum, barrier, init_distributed
from rstg_fast._progress import Progress
from rstg_fast.data.shards import to_tensor
from rstg_fast.data.syncmnist import generate
from rstg_fast.experiments.syncmnist import RESUME_FREE, dump_json, epoch_order, main_report
from rstg_fast.experiments.syncmnist_model import SyncMNISTNet
from rstg_fast.experiments.syncmnist_runtime import plot_curves

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_model(cfg: dict) -> SyncMNISTNet:
    return SyncMNISTNet(
        cfg["channels"],
        node_dim=cfg["node_dim"],
        message_dim=cfg["message_dim"],
        iterations=cfg["iterations"],
        schedule=cfg["schedule"],
        positional=cfg["positional"],
        backend=cfg["backend"],
    )


def lr_at(cfg: dict, step: int) -> float:
    """Linear warm-up over the first 5 % of the steps, then cosine decay to 0."""
    total = cfg["epochs"] * cfg["steps_per_epoch"]
    warm = max(1, total // 20)
    return cfg["lr"] * min(1.0, (step + 1) / warm) * 0.5 * (1.0 + math.cos(math.pi * step / total))


def _autocast(device: torch.device, dtype: str):
    return torch.autocast(device.type, dtype=_DTYPES[dtype], enabled=dtype != "float32")


class TestSet:
    """This rank's share of the test videos, generated once: blocks ``c = rank, rank+W, ...``
    of ``eval_batch_size`` videos, block ``c`` being ``generate(..., "test", seed, stream=c)``."""

    def __init__(self, cfg: dict, info: DistInfo) -> None:
        n, bs = cfg["test_videos"], cfg["eval_batch_size"]
        self.blocks = []
        for c in range(info.rank, -(-n // bs), info.world):
            b = generate(min(bs, n - c * bs), cfg["digits"], "test", cfg["seed"], stream=c, source=cfg["source"])
            self.blocks.append((b.videos, b.labels))

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, cfg: dict, device: torch.device) -> tuple[float, float]:
        """Mean loss and accuracy over the whole test set (all ranks)."""
        model.eval()
        loss_sum = correct = count = 0.0
        for videos, labels in self.blocks:
            x, y = to_tensor(videos).to(device), torch.from_numpy(labels).to(device)
            with _autocast(device, cfg["dtype"]):
                logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            count += len(labels)
        model.train()
        loss_sum, correct, count = all_sum([loss_sum, correct, count], device)
        return loss_sum / count, correct / count


def _check_resume_config(old: dict, new: dict) -> None:
    diff = {
        k: (old.get(k), new.get(k)) for k in set(old) | set(new) if k not in RESUME_FREE and old.get(k) != new.get(k)
    }
    if diff:
        raise ValueError(f"--resume: the checkpoint was made with other settings: {diff} (checkpoint, now)")


def _rng_state(device: torch.device) -> dict:
    cuda = {"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}
    return {"torch_rng": torch.get_rng_state(), **cuda}


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def _pretrain(
    model: SyncMNISTNet, cfg: dict, device: torch.device, info: DistInfo, ckpt_path: str, state: dict | None
) -> list[float]:
    """The single-digit warm-up of the backbone (syncmnist_pretrain.py says why), resumable:
    it checkpoints into ``ckpt_path`` (with a ``"pretrain"`` entry that marks the phase) every
    ``--ckpt-steps`` steps, or every ``steps_per_epoch`` steps when that is 0, and at its end;
    ``state`` is such a checkpoint to continue from exactly. Every rank runs the same warm-up
    (same data, same seed), so the backbones agree when DDP starts."""
    from rstg_fast.experiments.syncmnist_pretrain import pretrain_backbone

    resume = None
    if state is not None:
        model.load_state_dict(state["model"])
        _set_rng_state(state, device)
        resume = state["pretrain"]

    def save(pretrain_state: dict) -> None:
        if info.is_main:
            save_checkpoint(
                ckpt_path,
                {"model": model.state_dict(), "pretrain": pretrain_state, "config": cfg, **_rng_state(device)},
            )

    pbar = Progress(
        cfg["pretrain_steps"],
        desc="pretrain backbone",
        unit="step",
        initial=resume["step"] if resume else 0,
        disable=not info.is_main or cfg["progress"] == "none",
    )
    every = cfg["ckpt_steps"] or cfg["steps_per_epoch"]
    acc = pretrain_backbone(model.backbone, cfg["channels"], cfg, device, pbar.update_to, resume, save, every)
    pbar.close()
    if info.is_main and acc:
        print(
            f"backbone pretraining: single-digit accuracy {100 * acc[-1]:.1f} % over its last 50 steps",
            file=sys.stderr,
        )
    return acc


def train(cfg: dict) -> dict | None:
    """Train and evaluate; returns the final report (``None`` if stopped early on purpose)."""
    if cfg["threads"] > 0:
        torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"] or ("cuda" if torch.cuda.is_available() else "cpu"))
    info, device = init_distributed(device)
    bsz, world, steps = cfg["batch_size"], info.world, cfg["steps_per_epoch"]
    if bsz % world:
        raise ValueError(f"--batch-size {bsz} must be divisible by the number of processes {world}")
    out = cfg["out"]
    ckpt_path = os.path.join(out, "checkpoint.pt")
    os.makedirs(out, exist_ok=True)

    state = None
    if os.path.exists(ckpt_path):
        if cfg["resume"]:
            state = load_checkpoint(ckpt_path)
            _check_resume_config(state["config"], cfg)
        elif not cfg["overwrite"]:
            raise ValueError(f"--out {out} already has a checkpoint: pass --resume to continue or --overwrite")
    elif cfg["resume"] and info.is_main:
        print(f"--resume: no checkpoint in {out}, starting from scratch", file=sys.stderr)
    # Every rank has looked at (and loaded) the checkpoint before rank 0 may write one: the
    # backbone warm-up has no collectives, so without this a rank held back by the scheduler
    # found the warm-up checkpoint rank 0 had just written ("already has a checkpoint" on
    # that rank alone; or, with --resume, a later state than the other ranks loaded).
    barrier()

    torch.manual_seed(cfg["seed"])
    model = build_model(cfg).to(device)
    pretrain_acc: list[float] = []
    if cfg["pretrain_steps"] > 0 and (state is None or "pretrain" in state):
        pretrain_acc = _pretrain(model, cfg, device, info, ckpt_path, state)
        state = None  # the training phase starts afresh from the warmed-up backbone
    if cfg["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9, weight_decay=cfg["weight_decay"])
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    scaler = torch.amp.GradScaler(device.type, enabled=cfg["dtype"] == "float16")
    epoch, step, history, run_time = 0, 0, [], 0.0
    running = [0.0, 0.0, 0.0]  # loss sum, correct, count of the current epoch (all ranks)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state, device)
        epoch, step, history, run_time = state["epoch"], state["step"], state["history"], state["train_time_s"]
        pretrain_acc = list(state["pretrain_acc"])
        running = list(state["running"]) if info.is_main else [0.0, 0.0, 0.0]
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
                "config": cfg,
                "pretrain_acc": pretrain_acc,
            },
        )

    test_set = TestSet(cfg, info)
    total = cfg["epochs"] * steps
    bar = Progress(
        total,
        desc="train",
        unit="step",
        initial=epoch * steps + step,
        disable=not info.is_main or cfg["progress"] == "none",
    )
    rows = slice(info.rank * bsz // world, (info.rank + 1) * bsz // world)
    t0 = time.perf_counter() - run_time
    model.train()
    while epoch < cfg["epochs"]:
        order = epoch_order(cfg["seed"], epoch, steps)
        while step < steps:
            gstep = epoch * steps + step
            stream = int(order[step]) + (epoch * steps if cfg["fresh_data"] else 0)
            batch = generate(bsz, cfg["digits"], "train", cfg["seed"], stream=stream, source=cfg["source"])
            x = to_tensor(batch.videos[rows]).to(device)
            y = torch.from_numpy(batch.labels[rows]).to(device)
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, gstep)
            with _autocast(device, cfg["dtype"]):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            scaler.step(opt)
            scaler.update()
            running[0] += loss.item() * len(y)
            running[1] += (logits.argmax(1) == y).sum().item()
            running[2] += len(y)
            step += 1
            bar.set_postfix(loss=running[0] / running[2], acc=running[1] / running[2])
            bar.update(1)
            stop = cfg["stop_after_steps"] and gstep + 1 >= cfg["stop_after_steps"]
            if step < steps and (stop or (cfg["ckpt_steps"] and (gstep + 1) % cfg["ckpt_steps"] == 0)):
                checkpoint(epoch, step, time.perf_counter() - t0)
            if stop and step < steps:
                bar.close()
                return None
        loss_sum, correct, count = all_sum(running, device)
        test_loss, test_acc = test_set.evaluate(model, cfg, device)
        elapsed = time.perf_counter() - t0
        history.append(
            {
                "epoch": epoch + 1,
                "step": (epoch + 1) * steps,
                "lr": lr_at(cfg, (epoch + 1) * steps - 1),
                "train_loss": loss_sum / count,
                "train_acc": correct / count,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "time_s": round(elapsed, 3),
            }
        )
        epoch, step, running = epoch + 1, 0, [0.0, 0.0, 0.0]
        checkpoint(epoch, 0, elapsed)
        if info.is_main:
            write_jsonl(os.path.join(out, "metrics.jsonl"), history)
            h = history[-1]
            print(
                f"\nepoch {h['epoch']}: train loss {h['train_loss']:.4f} acc {100 * h['train_acc']:.2f} %, "
                f"test loss {h['test_loss']:.4f} acc {100 * h['test_acc']:.2f} % ({elapsed:.0f} s)",
                file=sys.stderr,
            )
        if cfg["stop_after_steps"] and epoch * steps >= cfg["stop_after_steps"] and epoch < cfg["epochs"]:
            bar.close()
            return None
    bar.close()
    last = history[-1]
    result = {
        "test_acc": last["test_acc"],
        "test_loss": last["test_loss"],
        "train_acc": last["train_acc"],
        "epochs": cfg["epochs"],
        "steps": total,
        "train_time_s": last["time_s"],
        "digits": cfg["digits"],
        "schedule": cfg["schedule"],
        "positional": cfg["positional"],
        "device": str(device),
        "dtype": cfg["dtype"],
        "world": world,
        "test_videos": cfg["test_videos"],
        "torch": torch.__version__,
        "config": cfg,
        "threads": torch.get_num_threads(),
        "pretrain_acc": pretrain_acc,
    }
    if info.is_main:
        dump_json(os.path.join(out, "result.json"), result)
        if not cfg["no_plot"]:
            result["plot"] = plot_curves(os.path.join(out, "curves.png"), history)
        print(main_report(result))
    return result
