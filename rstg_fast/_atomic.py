"""Atomic file writes: write a temporary file beside the target, then ``os.replace`` it.

A crash or an exception mid-write leaves the previous file (if any) intact and no temporary
file behind; readers never see a half-written file. The temporary file is in the target's
directory, so the final rename never crosses file systems.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path to write instead of ``path``; on a normal exit it replaces
    ``path``, on an exception it is removed (and the exception propagates).

    ``suffix`` ends the temporary name, for writers that choose the format by extension
    (``np.savez`` appends ``.npz`` unless the name has it; matplotlib's ``savefig``). The name
    holds ``.tmp`` and the process id: concurrent writers of one target do not share it.
    """
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp{suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def finite_or_none(obj):
    """``obj`` with every non-finite float (NaN, +-inf) replaced by ``None``, in nested dicts,
    lists and tuples (tuples become lists, as JSON has them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def strict_json(obj, **kwargs) -> str:
    """``json.dumps`` that writes strict JSON: non-finite floats become ``null`` (Python's
    default writes the ``NaN`` / ``Infinity`` tokens, which strict parsers -- ``jq``,
    JavaScript, most non-Python readers -- refuse), and ``allow_nan=False`` guards the rest."""
    return json.dumps(finite_or_none(obj), allow_nan=False, **kwargs)


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    """(Re)write a whole JSON-lines log atomically, in strict JSON (:func:`strict_json`). The
    training commands rebuild their metrics log from the history stored in the checkpoint, so
    after a kill and a resume the log is exactly that history: no duplicated, lost or
    half-written lines."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for row in rows:
            f.write(strict_json(row, sort_keys=True) + "\n")


def write_json(path: str | os.PathLike, obj: dict) -> None:
    """``obj`` as strict JSON (non-finite numbers as null, keys sorted), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(strict_json(obj, indent=2, sort_keys=True) + "\n")
