"""What the training commands (``syncmnist``, ``train-video``) agree on: the checks of their
shared flags, in one place, and the typed base of a run's configuration.

A check names the flag (``batch_size`` -> ``--batch-size``), so ``rstg_fast.cli`` turns its
``ValueError`` into a one-line usage error, exit code 2.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_fields(
    obj: Any,
    positive: Iterable[str] = (),
    non_negative: Iterable[str] = (),
    rates: Iterable[str] = (),
) -> None:
    """Refuse attribute values of ``obj`` (a config or an ``argparse.Namespace``): integers that
    must be ``> 0`` or ``>= 0``, and rates that must be finite and ``>= 0`` (NaN would train
    silently to NaN)."""
    for name in positive:
        if getattr(obj, name) <= 0:
            raise ValueError(f"{flag(name)} must be > 0, got {getattr(obj, name)}")
    for name in non_negative:
        if getattr(obj, name) < 0:
            raise ValueError(f"{flag(name)} must be >= 0, got {getattr(obj, name)}")
    for name in rates:
        value = getattr(obj, name)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{flag(name)} must be a finite number >= 0, got {value}")


def parse_device(name: str | None):
    """``None``/``"auto"`` (CUDA when there is one; the GPU is picked by ``init_distributed``),
    ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> ``torch.device``; refuses a CUDA device without CUDA."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        why = "torch is built without CUDA" if torch.version.cuda is None else "no GPU found"
        raise ValueError(f"--device {name}: CUDA is not available (torch {torch.__version__}: {why})")
    return device


@dataclass(kw_only=True)
class RunConfig:
    """The fields every training command has, with their meaning fixed here.

    Subclasses add their own fields and extend the three check lists; :meth:`validate` runs
    every check.
    """

    out: str
    seed: int = 0
    device: str | None = None  # None or "auto": CUDA when there is one (parse_device)
    dtype: str = "float32"  # float32, bfloat16 or float16 (autocast)
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 1e-4
    resume: bool = False
    overwrite: bool = False
    progress: str = "auto"  # "none": no progress bars

    POSITIVE: ClassVar[tuple[str, ...]] = ("epochs", "batch_size")
    NON_NEGATIVE: ClassVar[tuple[str, ...]] = ("seed",)
    RATES: ClassVar[tuple[str, ...]] = ("lr", "weight_decay")
    DTYPES: ClassVar[tuple[str, ...]] = ("float32", "bfloat16", "float16")

    def validate(self) -> None:
        check_fields(self, self.POSITIVE, self.NON_NEGATIVE, self.RATES)
        if self.dtype not in self.DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(self.DTYPES)}, got {self.dtype!r}")
        if self.progress not in ("auto", "none"):
            raise ValueError(f"--progress must be auto or none, got {self.progress!r}")

    def as_dict(self) -> dict[str, Any]:
        """Plain values (checkpoints, result.json)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """The config saved by :meth:`as_dict`; keys it does not know (another version's) are
        ignored, missing ones take the field's default."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
