"""Training checkpoints: atomic saves, weights-only loads (no user file is ever unpickled).

A checkpoint that cannot be read -- empty, cut short, random bytes, a flipped byte, or a file
holding pickled objects other than tensors and plain containers -- is a :class:`CheckpointError`
naming the file and what to do; a missing or unreadable file keeps its own ``OSError``.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from typing import Any

import torch

from rstg_fast._atomic import atomic_path
from rstg_fast._errors import CommandError, reading


class CheckpointError(CommandError, ValueError):
    """A checkpoint file that cannot be read. The training commands print it as one line and
    exit with code 1."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``: a crash
    leaves the previous checkpoint, never a half-written one. Creates the parent folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


RESTART = "delete or move it to start the run over (or pass train-video --restart, syncmnist --overwrite)"


def load_checkpoint(
    path: str | os.PathLike, map_location: torch.device | str = "cpu", *, what: str = "checkpoint",
    advice: str = RESTART,
) -> Any:
    """Tensors and plain containers only (``weights_only=True``: arbitrary objects are refused).

    Every record's CRC-32 is checked first (``torch.load`` does not: a flipped byte in a
    tensor would load as a wrong weight), one more read of the file. Raises
    :class:`CheckpointError` if the file is damaged or not a weights-only file: one line,
    ``"{what} {path} cannot be read (why): ...; {advice}"``.
    """
    path = os.fspath(path)

    def damaged(why: str) -> CheckpointError:
        return CheckpointError(
            f"{what} {path} cannot be read ({why}): it is damaged (cut short, overwritten) or not a "
            f"weights-only torch.save file; {advice}"
        )

    # the file is torch.load's only input here (map_location aside): whatever it raises on
    # random bytes (UnpicklingError, RuntimeError from miniz, IndexError, ...) is a damaged file
    with reading(lambda exc: damaged(_short(exc)), Exception), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bad = None
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        state = None if bad is not None else torch.load(path, map_location=map_location, weights_only=True)
    if bad is not None:
        raise damaged(f"record {bad} fails its CRC-32 check")
    for w in caught:  # torch's warnings about a file it could read (on a damaged one, noise)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return state


def _short(exc: BaseException) -> str:
    """What went wrong, in one short line (torch's weights-only message is a page long and
    suggests ``weights_only=False``, which is not advice for a damaged or foreign file)."""
    text = str(exc)
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n|$)", text)
    if m:
        return f"not a weights-only file: {m.group(1).strip().rstrip('.')}"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first[:160]}" if first else type(exc).__name__
