"""A progress bar: tqdm when installed, otherwise a plain printer (one line every few seconds).

Only the few calls the commands use: ``update(n)``, ``update_to(done)``, ``set_postfix(**kv)``,
``close()``. ``disable=True`` (e.g. on non-zero DDP ranks) prints nothing.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str = "", unit: str = "it", initial: int = 0, disable: bool = False) -> None:
        self.total, self.desc, self.unit, self.n, self.disable = total, desc, unit, initial, disable
        self._initial = initial  # done before this run (--resume): not part of its rate
        self._postfix = ""
        self._tqdm = None
        self._last = 0.0
        self._start = time.monotonic()
        if disable:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._tqdm = tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.update_to(self.n + n)

    def update_to(self, done: int) -> None:
        if self._tqdm is not None:
            self._tqdm.update(done - self.n)
        self.n = done
        self._maybe_print()

    def set_postfix(self, **values: object) -> None:
        text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(text)
        self._postfix = text

    def _maybe_print(self) -> None:
        if self.disable or self._tqdm is not None:
            return
        now = time.monotonic()
        if now - self._last >= 5.0 or self.n == self.total:
            self._last = now
            rate = (self.n - self._initial) / max(now - self._start, 1e-9)
            print(
                f"{self.desc}: {self.n}/{self.total} {self.unit} "
                f"[{now - self._start:.0f}s, {rate:.2f} {self.unit}/s] {self._postfix}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
