"""One training run per output folder: an advisory lock on ``OUT/.lock`` while a run writes there.

Two processes started on one ``--out`` (a command typed twice, a resume while the first run
still goes) used to write the same checkpoint and log in turn. The lock is ``flock``'s, so the
kernel drops it when its holder exits however it ends: a killed run leaves nothing to clean up
and ``--resume`` takes the folder at once. Under ``torchrun`` only rank 0 takes it (the other
ranks are the same run).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from rstg_fast._errors import UsageError

try:
    import fcntl
except ImportError:  # not POSIX: no lock
    fcntl = None

LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(out: str, flag: str = "--out") -> Iterator[None]:
    """Hold ``out/.lock`` for the block (creating ``out``); a :class:`UsageError` (a
    ``ValueError``; exit code 2 from ``rstg-fast``) naming ``flag`` when another process holds it."""
    if fcntl is None or os.environ.get("RANK", "0") != "0":
        yield
        return
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UsageError(
                f"{flag} {out} is in use by another run (process {holder} holds {path}): wait for it to end,"
                f" or choose another {flag}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
