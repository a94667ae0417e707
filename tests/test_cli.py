"""The ``rstg-fast`` entry point: argument errors are one argparse-style line with exit code 2
naming the flag, before any work (hardening #14 item 9); failures a user can act on are one
line and exit code 1, never a traceback; ``info`` says whether the CUDA kernels can run here
(item 14)."""

from __future__ import annotations

import argparse
import json
import sys
import types

import pytest

from rstg_fast import cli
from rstg_fast.cli import main


def usage_error(capsys, argv, command) -> str:
    """Run ``argv``; check exit code 2 and one error line on stderr, nothing else (no usage
    block, no traceback); return that line."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rstg-fast {command}: error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--digits", "1"), ("--digits", "11"), ("--num-videos", "0"), ("--shard-size", "-2"), ("--examples", "-1"),
     ("--seed", "-1"), ("--source", "no/such/dir")],
)
def test_make_syncmnist_argument_errors_name_the_flag(tmp_path, capsys, flag, value):
    out = tmp_path / "ds"
    argv = ["make-syncmnist", "--out", str(out), "--num-videos", "3", flag, value]
    line = usage_error(capsys, argv, "make-syncmnist")
    assert f"error: {flag} " in line and "num_digits" not in line and "num_videos" not in line
    assert not out.exists()  # refused before anything was written


def fake_command(monkeypatch, check_args=None, run=None):
    """Register ``rstg-fast fake`` (flags --num-things, --out-dir) backed by a stub module."""
    mod = types.ModuleType("fake_command")

    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--num-things", type=int, default=1)
        p.add_argument("--out-dir", default=".")

    mod.add_arguments = add_arguments
    mod.run = run or (lambda args: 0)
    if check_args is not None:
        mod.check_args = check_args
    monkeypatch.setitem(sys.modules, "fake_command", mod)
    monkeypatch.setitem(cli.SUBCOMMANDS, "fake", ("fake_command", "a test command"))
    return mod


def test_check_args_value_errors_become_usage_errors_naming_the_flag(monkeypatch, capsys):
    ran = []

    def check_args(args):
        if args.num_things < 1:  # a library check names its parameter; the CLI shows the flag
            raise ValueError(f"num_things must be a positive int, got {args.num_things}; see out_dir")

    fake_command(monkeypatch, check_args, run=lambda args: ran.append(args) or 0)
    line = usage_error(capsys, ["fake", "--num-things", "0"], "fake")
    assert line == "rstg-fast fake: error: --num-things must be a positive int, got 0; see --out-dir"
    assert ran == []
    assert main(["fake", "--num-things", "2"]) == 0 and ran[0].num_things == 2


def test_argument_errors_inside_run_are_usage_errors_too(monkeypatch, capsys):
    from rstg_fast._errors import argument_errors

    def run(args):
        with argument_errors():
            raise ValueError("out_dir: /x/y holds another dataset")

    fake_command(monkeypatch, run=run)
    assert usage_error(capsys, ["fake"], "fake") == "rstg-fast fake: error: --out-dir: /x/y holds another dataset"


def test_command_errors_are_one_line_and_exit_1(monkeypatch, capsys):
    from rstg_fast._errors import CommandError

    def run(args):
        raise CommandError("the loss became nan at step 3")

    fake_command(monkeypatch, run=run)
    assert main(["fake"]) == 1
    err = capsys.readouterr().err
    assert err == "rstg-fast fake: error: the loss became nan at step 3\n"


def test_other_value_errors_in_run_keep_their_traceback(monkeypatch):
    def run(args):
        raise ValueError("a bug, not a flag")

    fake_command(monkeypatch, run=run)
    with pytest.raises(ValueError, match="a bug"):
        main(["fake"])


def info(capsys) -> dict:
    assert main(["info", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_says_whether_the_cuda_kernels_are_usable(monkeypatch, capsys):
    import torch

    import rstg_fast

    got = info(capsys)
    assert isinstance(got["cuda_usable"], bool)
    if not torch.cuda.is_available():
        assert got["cuda_usable"] is False and "CUDA" in got["cuda_unusable_reason"]
    # compiled, but torch without CUDA or no device: not usable, and why
    built = rstg_fast.build_info()
    monkeypatch.setattr(rstg_fast._ext, "_build_info", lambda: {**built, "cuda": True})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    got = info(capsys)
    assert got["cuda"] is True and got["cuda_usable"] is False and got["cuda_unusable_reason"]
    # compiled, a device present (sm_90): usable
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    got = info(capsys)
    assert got["cuda_usable"] is True and got["cuda_unusable_reason"] is None
    # not compiled: never usable
    monkeypatch.setattr(rstg_fast._ext, "_build_info", lambda: {"cpu": True, "cuda": False})
    assert info(capsys)["cuda_usable"] is False


def test_info_text_output(capsys):
    assert main(["info"]) == 0
    assert "cuda_usable" in capsys.readouterr().out



@pytest.mark.parametrize(
    ("argv", "command", "flag"),
    [(["syncmnist", "--epochs", "abc"], "rstg-fast syncmnist", "--epochs"),  # argparse: a type
     (["syncmnist", "--model", "mlp"], "rstg-fast syncmnist", "--model"),  # argparse: a choice
     (["syncmnist", "--epochs", "-1"], "rstg-fast syncmnist", "--epochs"),  # the config's check
     (["syncmnist", "--bogus"], "rstg-fast", "--bogus"),  # argparse: an unknown flag
     (["train-video"], "rstg-fast train-video", "--data-root")],  # argparse: a required flag
)
def test_every_refused_flag_is_one_line(capsys, argv, command, flag):
    # one line naming the flag, exit code 2, without argparse's usage block (30 lines for syncmnist)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{command}: error: ") and flag in line
