"""Simulated kills for the resume tests of the training commands."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from types import ModuleType


def _at_call(module: ModuleType, name: str, call: int, act, set_attr=setattr) -> None:
    """Replace ``module.name`` (through ``set_attr``) by a wrapper that runs ``act(name, call)``
    on its ``call``-th call, counting from 1, and otherwise calls the original."""
    real, calls = getattr(module, name), []

    def wrapper(*args, **kwargs):
        calls.append(None)
        if len(calls) == call:
            act(name, call)
        return real(*args, **kwargs)

    set_attr(module, name, wrapper)


def _interrupt(name: str, call: int) -> None:
    raise KeyboardInterrupt(f"simulated kill in {name} (call {call})")


def _sigkill(name: str, call: int) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _fail(name: str, call: int) -> None:
    raise RuntimeError(f"simulated failure in {name} (call {call})")


def kill_at(monkeypatch, module: ModuleType, name: str, call: int) -> None:
    """Make ``module.name`` raise ``KeyboardInterrupt`` (what Ctrl-C or a kill looks like to the
    run: nothing after it executes) on its ``call``-th call, counting from 1."""
    _at_call(module, name, call, _interrupt, monkeypatch.setattr)


def hard_kill_at(module: ModuleType, name: str, call: int) -> None:
    """Make ``module.name`` kill its own process with SIGKILL on its ``call``-th call, counting
    from 1: a real kill (no ``finally``, no exit handler, no message to other ranks), for runs
    in a subprocess, where ``kill_at``'s exception would instead unwind through the command's
    clean-up."""
    _at_call(module, name, call, _sigkill)


def raise_at(module: ModuleType, name: str, call: int) -> None:
    """Make ``module.name`` raise ``RuntimeError("simulated failure ...")`` on its ``call``-th
    call, counting from 1 (an error in one process, which its clean-up sees)."""
    _at_call(module, name, call, _fail)


def delay_after(module: ModuleType, name: str, seconds: float) -> None:
    """Make ``module.name`` sleep ``seconds`` after each call (a process that the scheduler
    holds back at that point: how data-parallel ranks drift apart on a loaded machine)."""
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        out = real(*args, **kwargs)
        time.sleep(seconds)
        return out

    setattr(module, name, wrapper)


def _for_this_rank(spec: str) -> list[str] | None:
    """``module:name:value[:rank]`` -> ``[module, name, value]`` in the process of that
    ``RANK`` (default 0), else ``None``."""
    module, name, value, *rank = spec.split(":")
    return [module, name, value] if os.environ.get("RANK", "0") == (rank[0] if rank else "0") else None


def torchrun(argv: list[str], kill="", delay="", fail="", timeout=120) -> subprocess.CompletedProcess:
    """``rstg-fast ARGV`` under torchrun with 2 gloo processes on the CPU, through this module
    (``kill``, ``delay``, ``fail``: its ``RSTG_TEST_KILL``, ``RSTG_TEST_DELAY``,
    ``RSTG_TEST_RAISE``; none: plain ``rstg-fast``). A timeout fails the calling test."""
    import pytest
    from rstg_testing import child_pythonpath

    path = child_pythonpath(os.path.dirname(os.path.abspath(__file__)))  # this module, for -m
    faults = {"RSTG_TEST_KILL": kill, "RSTG_TEST_DELAY": delay, "RSTG_TEST_RAISE": fail}
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", **faults)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "interrupt_testing", *argv]
    # Output to files, not pipes: the workers inherit them, and after a timeout a pipe stays
    # open as long as any worker lives (reading it to its end then never returned). On a
    # timeout torchrun gets SIGTERM, which it passes on to the workers (their default
    # action: exit, also when blocked in gloo), then waits for them (up to 30 s).
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        proc = subprocess.Popen(cmd, env=env, stdout=out_file, stderr=err_file, text=True)
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=60)
            timed_out = True
        out_file.seek(0), err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if timed_out:
        pytest.fail(f"torchrun ran past {timeout} s; its stderr ends:\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def main() -> int:
    """``python -m interrupt_testing ARGS``: ``rstg-fast ARGS`` with faults for one rank, e.g.
    under ``torchrun``: ``RSTG_TEST_KILL=module:name:call[:rank]`` kills the process of that
    ``RANK`` (default 0) on the ``call``-th call of ``module.name``; ``RSTG_TEST_RAISE``, same
    form, raises there instead; ``RSTG_TEST_DELAY=module:name:seconds[:rank]`` delays it after
    every call."""
    kill = _for_this_rank(os.environ.get("RSTG_TEST_KILL") or "::0:none")
    if kill:
        hard_kill_at(importlib.import_module(kill[0]), kill[1], int(kill[2]))
    fail = _for_this_rank(os.environ.get("RSTG_TEST_RAISE") or "::0:none")
    if fail:
        raise_at(importlib.import_module(fail[0]), fail[1], int(fail[2]))
    delay = _for_this_rank(os.environ.get("RSTG_TEST_DELAY") or "::0:none")
    if delay:
        delay_after(importlib.import_module(delay[0]), delay[1], float(delay[2]))
    from rstg_fast.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
