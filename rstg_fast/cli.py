"""The ``rstg-fast`` command: one entry point, one module per subcommand.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; they are imported only when chosen, so ``rstg-fast --help`` is quick.

Errors (rstg_fast/_errors.py), handled here for every subcommand:

* A module may also define ``check_args(args) -> None``, called after parsing and before
  ``run``: it validates and resolves the arguments (it may set more attributes on ``args``
  for ``run``). Any ``ValueError`` it raises -- or that ``run`` raises inside
  ``with rstg_fast._errors.argument_errors():`` -- is a usage error: one line
  ``rstg-fast CMD: error: ...`` and exit code 2, as for a flag argparse refuses (no usage
  block: ``rstg_fast._errors.ArgumentParser``).
  Parameter names in the message are shown as flags: the command's own ``dest`` names
  (``crop_size`` -> ``--crop-size``) and the module's ``FLAG_NAMES`` (``{"num_digits":
  "--digits"}``) for library parameters named otherwise.
* A :class:`~rstg_fast._errors.CommandError` from ``run`` (a damaged checkpoint, a diverged
  run) is one line ``rstg-fast CMD: error: ...`` on stderr and exit code 1.
* Anything else keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from rstg_fast._errors import ArgumentParser, CommandError, UsageError, argument_errors, one_line

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "syncmnist": ("rstg_fast.experiments.syncmnist.cli", "train and evaluate RSTG on SyncMNIST (the main job)"),
    "make-syncmnist": ("rstg_fast.experiments.syncmnist.make_data", "write a SyncMNIST dataset to disk in shards"),
    "syncmnist-attention": (
        "rstg_fast.experiments.syncmnist.attention",
        "draw a trained SyncMNIST model's attention between nodes (needs matplotlib)",
    ),
    "train-video": ("rstg_fast.experiments.video", "train/evaluate C2D or I3D + RSTG on Something-Something"),
    "info": ("rstg_fast.cli_info", "print what this build of rstg_fast contains"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = ArgumentParser(prog="rstg-fast", description="Recurrent Space-time Graph networks, fast.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    parsers = {}
    for name, (module, help_text) in SUBCOMMANDS.items():
        parsers[name] = p = sub.add_parser(name, help=help_text)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    mod = importlib.import_module(SUBCOMMANDS[args.command][0])
    p = parsers[args.command]
    try:
        check_args = getattr(mod, "check_args", None)
        if check_args is not None:
            with argument_errors():
                check_args(args)
        return int(mod.run(args) or 0)
    except UsageError as exc:
        p.error(flag_names(str(exc), p, getattr(mod, "FLAG_NAMES", {})))  # exits with code 2
    except CommandError as exc:
        print(f"{p.prog}: error: {one_line(str(exc))}", file=sys.stderr)
        return 1


# a parameter name: the message's first word, or a word holding an underscore anywhere (an
# identifier, not English); never inside a path or a flag
_NAME = re.compile(r"(?<![\w/.\-])(?:^[a-z][a-z0-9_]*|[a-z][a-z0-9]*(?:_[a-z0-9]+)+)(?![\w/\-])")


def flag_names(message: str, parser: argparse.ArgumentParser, aliases: dict[str, str]) -> str:
    """``message`` (one line) with the parameter names of ``parser``'s options shown as their
    flags (``crop_size`` -> ``--crop-size``), and ``aliases`` (library name -> flag) too."""
    flags = {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings and a.dest != "help"}
    flags.update(aliases)
    return _NAME.sub(lambda m: flags.get(m.group(0), m.group(0)), one_line(message))


if __name__ == "__main__":
    sys.exit(main())
