"""Simulated kills for the resume tests of the training commands."""

from __future__ import annotations

from types import ModuleType


def kill_at(monkeypatch, module: ModuleType, name: str, call: int) -> None:
    """Make ``module.name`` raise ``KeyboardInterrupt`` (what Ctrl-C or a kill looks like to the
    run: nothing after it executes) on its ``call``-th call, counting from 1."""
    real, calls = getattr(module, name), []

    def wrapper(*args, **kwargs):
        calls.append(None)
        if len(calls) == call:
            raise KeyboardInterrupt(f"simulated kill in {name} (call {call})")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
