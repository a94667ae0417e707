"""Errors the ``rstg-fast`` commands report as one line, without a traceback.

Two kinds, both handled in one place, :func:`rstg_fast.cli.main`:

* :class:`UsageError` -- a bad argument. ``main`` turns it into the parser's error exit: one
  line ``rstg-fast CMD: error: MESSAGE`` naming the flag, exit code 2 (:class:`ArgumentParser`:
  no usage block before it; ``--help`` shows the usage).
  Commands rarely raise it themselves: every ``ValueError`` raised by a command's optional
  ``check_args(args)`` hook (called by ``main`` after parsing, before ``run``), or inside an
  ``argument_errors()`` block, becomes one. Parameter names in the message (``num_digits``,
  ``crop_size``) are shown as the command's flags (``--digits``, ``--crop-size``).
* :class:`CommandError` -- a failure the user can act on that is not a bad flag (a damaged
  checkpoint, a run whose loss became NaN): one line ``rstg-fast CMD: error: MESSAGE`` on
  stderr, exit code 1. Library callers see an ordinary exception (subclasses also derive from
  ``ValueError`` or ``RuntimeError``).

Any other exception keeps its traceback: it is a bug to report, not a message for the user.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from typing import NoReturn


class UsageError(ValueError):
    """A bad command-line argument: ``rstg-fast`` prints this one line, exit code 2."""


class CommandError(Exception):
    """A failure the user can act on: ``rstg-fast`` prints this one line, exit code 1."""


class TrainingDiverged(CommandError, RuntimeError):
    """The training loss became NaN or infinite: the run stops and reports no accuracy."""


@contextlib.contextmanager
def argument_errors() -> Iterator[None]:
    """Inside this block, a ``ValueError`` is a bad argument: it is re-raised as a
    :class:`UsageError` (one line naming the flag, exit code 2). ``check_args`` hooks run
    inside one; use it around argument resolution that has to happen in ``run``."""
    try:
        yield
    except (UsageError, CommandError):
        raise  # already classified (a damaged checkpoint is a CommandError and a ValueError)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


@contextlib.contextmanager
def reading(damaged: Callable[[BaseException], Exception], *more: type[BaseException]) -> Iterator[None]:
    """Reading a file inside this block: what a damaged file raises (``EOFError``,
    ``ValueError``, ``KeyError``, an ``OSError`` other than a missing or unreadable file, and
    the types in ``more``) is re-raised as ``damaged(exc)``, an error that names the file and
    says what to do. A missing or unreadable file keeps its own ``OSError``, and a
    :class:`CommandError` passes unchanged."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, CommandError):
        raise
    except (OSError, ValueError, KeyError, EOFError, *more) as exc:
        raise damaged(exc) from exc


def one_line(message: str) -> str:
    """``message``'s non-blank lines joined by "; " (an error is reported on one line)."""
    return "; ".join(part.strip() for part in message.strip().splitlines() if part.strip())


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line, ``PROG: error: MESSAGE``, and exit
    code 2. argparse prints the usage first, which for ``rstg-fast syncmnist`` is 30 lines that
    bury the line naming the bad flag; ``--help`` still shows it. Subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")
