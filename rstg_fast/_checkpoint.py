"""Training checkpoints: atomic saves, weights-only loads (no user file is ever unpickled)."""

from __future__ import annotations

import os
from typing import Any

import torch

from rstg_fast._atomic import atomic_path


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``: a crash
    leaves the previous checkpoint, never a half-written one. Creates the parent folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Tensors and plain containers only (``weights_only=True``: arbitrary objects are refused)."""
    return torch.load(path, map_location=map_location, weights_only=True)
