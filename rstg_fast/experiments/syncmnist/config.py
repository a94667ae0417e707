"""The configuration of a ``rstg-fast syncmnist`` run: one typed dataclass, its two presets
and every check of its values (run before any work; errors name the flag)."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

from rstg_fast.experiments.run_config import RunConfig, parse_device
from rstg_fast.modules.base import SCHEDULES

PRESETS: dict[str, dict[str, Any]] = {
    # a few minutes on a 2-core CPU; learns well above chance but is far from converged
    "quick": dict(
        epochs=4,
        steps_per_epoch=800,
        batch_size=16,
        test_videos=1024,
        channels=32,
        node_dim=64,
        message_dim=64,
        iterations=2,
        lr=2e-3,  # 4,000 steps: 47.7 % at 2e-3, 41.8 % at 1e-3 (docs/syncmnist.md)
        pretrain_steps=800,
        naming_pretrain_steps=0,
        motion=True,
        freeze_backbone=True,
        input_norm="batch",
        fresh_data=True,  # rendered in the data thread, so new videos cost no step time
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
        naming_pretrain_steps=0,
        motion=False,
        freeze_backbone=False,
        input_norm="batch",
        fresh_data=False,
    ),
}
MODELS = ("rstg", "conv_lstm")
BACKBONE_DEPTHS = (3, 4)  # a ConvBackbone's conv layers (model.py; --naming-depth)
# the preset values are the flags' defaults; these have no preset (they are the same for both)
PRESET_FIELDS = tuple(PRESETS["full"])

# the full preset's training speed on the 2-core dev CPU: 7.1-8.3 s a step of 64 videos, two
# threads, measured 2026-12-06 (docs/syncmnist.md)
FULL_PRESET_CPU_VIDEOS_PER_S = 9.0


@dataclass(kw_only=True)
class SyncMNISTConfig(RunConfig):
    """Every setting of a run (the flags of ``rstg-fast syncmnist``, docs/syncmnist.md)."""

    preset: str = "full"
    digits: int = 3
    model: str = "rstg"  # or "conv_lstm", the paper's Conv+LSTM baseline
    schedule: str = "all_time_stages"
    positional: bool = False
    backend: str = "auto"
    source: str | None = None
    # the preset fields (defaults: the full preset)
    epochs: int = PRESETS["full"]["epochs"]
    steps_per_epoch: int = PRESETS["full"]["steps_per_epoch"]
    batch_size: int = PRESETS["full"]["batch_size"]
    test_videos: int = PRESETS["full"]["test_videos"]
    channels: int = PRESETS["full"]["channels"]
    node_dim: int = PRESETS["full"]["node_dim"]
    message_dim: int = PRESETS["full"]["message_dim"]
    iterations: int = PRESETS["full"]["iterations"]
    lr: float = PRESETS["full"]["lr"]
    pretrain_steps: int = PRESETS["full"]["pretrain_steps"]
    # > 0: a second (naming) backbone beside the first, warmed up this many steps on whole videos
    naming_pretrain_steps: int = PRESETS["full"]["naming_pretrain_steps"]
    motion: bool = PRESETS["full"]["motion"]
    freeze_backbone: bool = PRESETS["full"]["freeze_backbone"]
    input_norm: str = PRESETS["full"]["input_norm"]
    fresh_data: bool = PRESETS["full"]["fresh_data"]
    # the rest
    naming_channels: int = 0  # the naming backbone's width (0: --channels)
    main_backbone: bool = True  # False (--no-main-backbone): the naming backbone alone
    naming_depth: int = 3  # the naming backbone's conv layers (3 or 4; model.ConvBackbone)
    naming_augment: int = 0  # affine copies of each training digit in the naming warm-up's pool
    optimizer: str = "adamw"
    eval_batch_size: int = 128
    ckpt_steps: int = 0  # also checkpoint every N steps (0: per epoch only)
    threads: int = 0  # torch CPU threads (0: torch's default)
    no_plot: bool = False
    stop_after_steps: int = 0  # tests: simulate a kill
    out: str = ""  # "" -> runs/syncmnist-<preset>

    POSITIVE: ClassVar[tuple[str, ...]] = RunConfig.POSITIVE + (
        "steps_per_epoch",
        "test_videos",
        "channels",
        "node_dim",
        "message_dim",
        "iterations",
        "eval_batch_size",
    )
    NON_NEGATIVE: ClassVar[tuple[str, ...]] = RunConfig.NON_NEGATIVE + (
        "pretrain_steps",
        "naming_pretrain_steps",
        "naming_channels",
        "naming_augment",
        "ckpt_steps",
        "threads",
        "stop_after_steps",
    )
    # settings that may change between a run and its --resume (they do not change the maths)
    # (not eval_batch_size: test block c is generate(eval_batch_size, ..., stream=c))
    RESUME_FREE: ClassVar[frozenset[str]] = frozenset(
        {"out", "resume", "overwrite", "device", "progress", "threads", "no_plot", "stop_after_steps", "ckpt_steps"}
    )

    @classmethod
    def preset_config(cls, preset: str, **overrides: Any) -> SyncMNISTConfig:
        """The preset's values, with ``overrides`` (``None`` values mean "the preset's")."""
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(**{**PRESETS[preset], **given, "preset": preset})

    def validate(self) -> None:
        super().validate()
        self.out = self.out or os.path.join("runs", f"syncmnist-{self.preset}")
        if not 2 <= self.digits <= 10:
            raise ValueError(f"--digits must be in [2, 10], got {self.digits}")
        if self.model not in MODELS:
            raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for flag, width in (("--channels", self.channels), ("--naming-channels", self.naming_channels)):
            if width and not backbone_width_ok(width):
                raise ValueError(
                    f"{flag} must split into GroupNorm groups (a multiple of 16, or at most 8), got {width}"
                )
        if self.naming_channels and not self.naming_pretrain_steps:
            raise ValueError(
                f"--naming-channels {self.naming_channels} needs a naming backbone: pass --naming-pretrain-steps > 0"
            )
        if self.naming_depth not in BACKBONE_DEPTHS:
            raise ValueError(f"--naming-depth must be one of {BACKBONE_DEPTHS}, got {self.naming_depth}")
        if self.naming_depth != 3 and not self.naming_pretrain_steps:
            raise ValueError(
                f"--naming-depth {self.naming_depth} deepens the naming backbone: pass --naming-pretrain-steps > 0"
            )
        if self.naming_augment and not self.naming_pretrain_steps:
            raise ValueError(
                f"--naming-augment {self.naming_augment} augments the naming warm-up: pass --naming-pretrain-steps > 0"
            )
        if not self.main_backbone and not self.naming_pretrain_steps:
            raise ValueError("--no-main-backbone leaves the naming backbone alone: pass --naming-pretrain-steps > 0")
        if not self.main_backbone and self.pretrain_steps:
            raise ValueError(
                f"--pretrain-steps {self.pretrain_steps} warms up the main backbone, which --no-main-backbone"
                " leaves out: pass --pretrain-steps 0"
            )
        if self.input_norm not in ("none", "batch"):
            raise ValueError(f"--input-norm must be none or batch, got {self.input_norm!r}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"--optimizer must be adamw or sgd, got {self.optimizer!r}")

    def check_runtime(self) -> None:
        """Refuse, before any work or checkpoint, what cannot run here: a CUDA device without
        CUDA, a backend that does not run on the device or in the ``--dtype`` (the op sees the
        autocast dtype); warn about a float16 run on a CPU and the GPU-sized preset on a CPU."""
        import torch

        from rstg_fast.ops.backends import resolve_backend

        device = parse_device(self.device)
        try:
            resolve_backend(self.backend, device, getattr(torch, self.dtype))
        except ValueError as e:
            raise ValueError(f"--backend {self.backend} with --dtype {self.dtype} on {device.type}: {e}") from None
        if device.type == "cpu" and self.dtype == "float16":
            print(
                "warning: --dtype float16 on a CPU is emulated and slow; float32 or bfloat16 is faster",
                file=sys.stderr,
            )
        if device.type == "cpu" and self.preset == "full":
            videos = self.epochs * self.steps_per_epoch * self.batch_size
            print(
                f"warning: the full preset ({videos:,} training videos, node width {self.node_dim}) is sized for a"
                f" GPU; on a CPU it would take about {videos / FULL_PRESET_CPU_VIDEOS_PER_S / 3600:.0f} hours"
                " (docs/syncmnist.md). Use --quick, or a recipe from docs/syncmnist.md, on a CPU",
                file=sys.stderr,
            )

    def resume_differences(self, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """What differs between this run and a checkpoint's saved config, beyond ``RESUME_FREE``;
        a field the checkpoint's version did not have counts as its default, the checkpoint's
        preset's for a preset field (``--model``, ``--naming-pretrain-steps``,
        ``--naming-channels``, ``--no-main-backbone``, ``--naming-augment`` and ``--naming-depth`` came later: an
        older checkpoint still resumes)."""
        now = self.as_dict()
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.default is not dataclasses.MISSING}
        preset = PRESETS.get(saved.get("preset", ""), {})
        saved = {**{k: v for k, v in defaults.items() if k not in PRESET_FIELDS}, **preset, **saved}
        return {
            k: (saved.get(k), now.get(k))
            for k in set(saved) | set(now)
            if k not in self.RESUME_FREE and saved.get(k) != now.get(k)
        }


def backbone_width_ok(channels: int) -> bool:
    """Whether a conv backbone of ``channels`` (its first layer ``channels // 2``) can be built:
    each layer's width divisible by its ``min(8, width)`` GroupNorm groups (model.py)."""
    half = max(channels // 2, 1)
    return all(width % min(8, width) == 0 for width in (half, channels))


def config_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(SyncMNISTConfig))
