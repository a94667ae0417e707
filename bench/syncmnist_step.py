"""The SyncMNIST training step of the ``--quick`` recipe, timed as the trainer runs it.

Side by side in one run, on the same model and the same batches (``generate(16, 3, "train",
0, stream=s)``), three ways of feeding the step (motion backbone frozen, RSTG node width 64,
2 iterations, batch 16, AdamW, clipping, as ``rstg-fast syncmnist --quick``):

* ``inline`` -- render the batch, run the backbone and the step, one after the other (the
  trainer before session 4);
* ``data-ahead`` -- the next batch rendered in a background thread while the step runs
  (session 4);
* ``features-ahead`` -- the background thread also runs the frozen backbone on it (session 5,
  the trainer now).

``--naming-channels N`` adds the second, naming backbone of width ``N`` beside the motion one
(frozen too, ``--naming-pretrain-steps`` runs), the model of the runs of record;
``--no-main-backbone`` leaves the motion one out (the naming backbone alone); ``--naming-depth
4`` gives it a fourth conv (``rstg-fast syncmnist --naming-depth 4``).

Reported per variant: steps/s and videos/s (median of ``--rounds`` rounds of ``--steps``
steps, after a warm-up), GFLOP/s and the fraction of the CPU's float32 FMA peak (measured in
the same run: ``rstg_fast._C.cpu_fma_peak_gflops`` on one thread and on all of them). FLOPs of
a step: ``torch.utils.flop_counter`` on the same step with ``backend="reference"`` (the fused
op is invisible to the counter; the reference computes the same edge products as matmuls).
``--profile`` adds a ``torch.profiler`` table of the ``features-ahead`` step.

Timing numbers: run it alone on the machine (``uptime`` before and after is printed)::

    python bench/syncmnist_step.py --threads 1
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from rstg_fast._errors import ArgumentParser  # errors: one line, exit code 2
from rstg_fast.data.shards import to_tensor
from rstg_fast.data.syncmnist import generate
from rstg_fast.experiments.syncmnist.config import SyncMNISTConfig
from rstg_fast.experiments.syncmnist.train import Prefetcher, build_model, training_inputs


def make_step(model: torch.nn.Module):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)

    def step(batch, videos, features):
        logits = model(videos, features=features)
        loss = F.cross_entropy(logits, torch.from_numpy(batch.labels))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()

    return step


def frozen_quick_model(cfg: SyncMNISTConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(cfg)
    model.backbone.requires_grad_(False)
    return model.train()


def feeders(cfg: SyncMNISTConfig, model: torch.nn.Module):
    rows = slice(0, cfg.batch_size)
    cpu = torch.device("cpu")
    inline_cfg = dataclasses.replace(cfg, freeze_backbone=False)
    inline = training_inputs(model, inline_cfg, cpu, rows)  # videos only: the model runs the backbone
    ahead = training_inputs(model, cfg, cpu, rows)
    return {
        "inline": lambda: lambda s, nxt: inline(s),
        "data-ahead": lambda: Prefetcher(inline).get,
        "features-ahead": lambda: Prefetcher(ahead).get,
    }


def time_variant(get_factory, step, steps: int, rounds: int, start: int) -> list[float]:
    get = get_factory()
    stream = start
    for _ in range(3):  # warm-up
        step(*get(stream, stream + 1))
        stream += 1
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            step(*get(stream, stream + 1))
            stream += 1
        rates.append(steps / (time.perf_counter() - t0))
    return rates


def step_flops(cfg: SyncMNISTConfig) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    model = frozen_quick_model(dataclasses.replace(cfg, backend="reference"))
    step = make_step(model)
    batch = generate(cfg.batch_size, 3, "train", 0, stream=0)
    videos = to_tensor(batch.videos)
    with FlopCounterMode(display=False) as counter:
        step(batch, videos, None)
    return int(counter.get_total_flops())


def main() -> None:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads of the training step")
    p.add_argument("--steps", type=int, default=60, help="steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--naming-channels",
        type=int,
        default=0,
        help="> 0: the recipe of record's naming backbone of this width beside the motion one (frozen too)",
    )
    p.add_argument(
        "--no-main-backbone",
        dest="main_backbone",
        action="store_false",
        help="with --naming-channels: the naming backbone alone (rstg-fast syncmnist --no-main-backbone)",
    )
    p.add_argument(
        "--naming-depth", type=int, choices=(3, 4), default=3, help="with --naming-channels: its conv layers"
    )
    p.add_argument("--profile", action="store_true")
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    load_before = os.getloadavg()
    if not a.main_backbone and not a.naming_channels:
        p.error("--no-main-backbone needs --naming-channels > 0 (the naming backbone it keeps)")
    if a.naming_depth != 3 and not a.naming_channels:
        p.error("--naming-depth needs --naming-channels > 0 (the naming backbone it deepens)")
    naming = {}
    if a.naming_channels:
        naming = dict(naming_pretrain_steps=1, naming_channels=a.naming_channels, naming_depth=a.naming_depth)
    if not a.main_backbone:
        naming.update(main_backbone=False, pretrain_steps=0)
    cfg = SyncMNISTConfig.preset_config("quick", **naming)
    model = frozen_quick_model(cfg)
    step = make_step(model)
    flops = step_flops(cfg)
    from rstg_fast import _C

    peak_1 = float(_C.cpu_fma_peak_gflops(1, 1.0))
    peak_all = float(_C.cpu_fma_peak_gflops(os.cpu_count() or 1, 1.0))
    results = {}
    for i, (name, factory) in enumerate(feeders(cfg, model).items()):
        rates = time_variant(factory, step, a.steps, a.rounds, start=10_000 * (i + 1))
        rate = statistics.median(rates)
        gflops = rate * flops / 1e9
        results[name] = {
            "steps_per_s": round(rate, 2),
            "videos_per_s": round(rate * cfg.batch_size, 1),
            "gflops": round(gflops, 2),
            "fraction_of_one_core_peak": round(gflops / peak_1, 4),
            "fraction_of_machine_peak": round(gflops / peak_all, 4),
            "rounds_steps_per_s": [round(r, 2) for r in rates],
        }
        print(name, json.dumps(results[name]), flush=True)
    base = results["inline"]["steps_per_s"]
    for r in results.values():
        r["speedup_vs_inline"] = round(r["steps_per_s"] / base, 3)
    report = {
        "torch": torch.__version__,
        "threads": a.threads,
        "naming_channels": a.naming_channels,
        "main_backbone": a.main_backbone,
        "naming_depth": a.naming_depth,
        "cpus": os.cpu_count(),
        "step_gflop": round(flops / 1e9, 3),
        "fma_peak_gflops_one_core": round(peak_1, 1),
        "fma_peak_gflops_machine": round(peak_all, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "variants": results,
    }
    print(json.dumps(report, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        get = Prefetcher(training_inputs(model, cfg, torch.device("cpu"), slice(0, cfg.batch_size))).get
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for s in range(20):
                step(*get(90_000 + s, 90_001 + s))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
