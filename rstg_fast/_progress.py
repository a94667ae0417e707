"""A dependency-free progress line on stderr: ``desc n/total [elapsed<eta, rate unit/s] postfix``.

On a terminal it redraws in place (at most 4 times a second); on a pipe or a log it prints a
line every ``log_every`` seconds and at the end, so CI logs stay short. ``disable=True`` (e.g.
on non-zero DDP ranks) prints nothing.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(
        self,
        total: int,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        disable: bool = False,
        log_every: float = 30.0,
    ) -> None:
        self.total, self.desc, self.unit, self.disable, self.log_every = total, desc, unit, disable, log_every
        self.n = self._initial = initial  # the rate counts this run's work only (resumed runs start past 0)
        self.postfix = ""
        self._start, self._last = time.monotonic(), float("-inf")  # the first update draws
        self._tty = sys.stderr.isatty()

    def update(self, n: int = 1, postfix: str = "") -> None:
        self.update_to(self.n + n, postfix)

    def update_to(self, done: int, postfix: str = "") -> None:
        self.n = done
        self.postfix = postfix or self.postfix
        now = time.monotonic()
        if not self.disable and (now - self._last >= (0.25 if self._tty else self.log_every) or self.n >= self.total):
            self._last = now
            self._draw(now)

    def set_postfix(self, **values: object) -> None:
        """Shown from the next drawn line on (floats with 4 significant digits)."""
        self.postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())

    def _draw(self, now: float) -> None:
        elapsed = now - self._start
        rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 else float("nan")
        line = f"{self.desc} {self.n}/{self.total} [{elapsed:.0f}s<{eta:.0f}s, {rate:.2f}{self.unit}/s] {self.postfix}"
        sys.stderr.write(("\r" + line.rstrip() + "\x1b[K") if self._tty else line.rstrip() + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if not self.disable and self._tty:
            sys.stderr.write("\n")
