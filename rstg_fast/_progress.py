"""Progress bars: ``tqdm``, set up once for the training commands.

On a terminal the bar redraws in place (at most 4 times a second); on a pipe or a log file
it redraws at most every ``log_every`` seconds, so long runs leave short logs. ``disable``
(non-zero DDP ranks, ``--progress none``) prints nothing. ``update_to(bar, n)`` moves a bar
to an absolute count (the callbacks of the warm-up and the shard writer report counts).
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(
    total: int, desc: str = "", unit: str = "it", initial: int = 0, disable: bool = False, log_every: float = 30.0
) -> tqdm:
    """A ``tqdm`` bar on stderr; ``initial`` counts work done before a resume (the rate counts
    this run's work only)."""
    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        disable=disable,
        file=sys.stderr,
        mininterval=0.25 if tty else log_every,
        dynamic_ncols=tty,
        smoothing=0.1,
    )


def update_to(bar: tqdm, done: int) -> None:
    """Move ``bar`` to ``done`` items."""
    bar.update(done - bar.n)
