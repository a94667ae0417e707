"""A benchmark case and the ``extra_info`` every case starts with."""

from __future__ import annotations

import platform
from dataclasses import dataclass

import torch

from benchkit.providers import Provider
from benchkit.runner import BenchEnv
from benchkit.shapes import Shape


@dataclass(frozen=True)
class Case:
    """One benchmark case: an implementation of one level on a shape, mode and dtype."""

    level: str  # op | model | paired (op, backend against reference in interleaved rounds)
    shape: Shape
    mode: str  # fwd | fwdbwd
    dtype: torch.dtype
    provider: Provider
    heads: int = 1

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def id(self) -> str:
        heads = f"-h{self.heads}" if self.heads != 1 else ""
        return f"{self.shape.case_id}-{self.mode}-{self.dtype_name}{heads}-{self.provider.name}"

    @property
    def group(self) -> str:
        """Providers of one group are compared side by side in pytest-benchmark's table."""
        heads = f" h{self.heads}" if self.heads != 1 else ""
        return f"{self.level} {self.shape.case_id} {self.mode} {self.dtype_name}{heads}"

    @property
    def seed(self) -> int:
        # Same inputs for every provider of a group, different across groups.
        return sum(ord(c) * 31**i for i, c in enumerate(self.group)) % (2**31)


def base_info(case: Case, env: BenchEnv) -> dict:
    """``extra_info`` every case starts with: what was run, where, at which size."""
    info = {
        "level": case.level,
        "provider": case.provider.name,
        "provider_label": case.provider.label,
        "provider_kind": case.provider.kind,
        "backend": case.provider.backend,
        "mode": case.mode,
        "dtype": case.dtype_name,
        "heads": case.heads,
        "device": env.device,
        "device_name": device_name(env.device),
        "commit": env.commit,
        "threads": torch.get_num_threads(),
    }
    info.update(case.shape.describe())
    return info


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return cpu_model()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
