"""The ``rstg-fast`` command: one entry point, one module per subcommand.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; they are imported only when chosen, so ``rstg-fast --help`` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "syncmnist": ("rstg_fast.experiments.syncmnist", "train and evaluate RSTG on SyncMNIST (the main job)"),
    "make-syncmnist": ("rstg_fast.data.syncmnist_cli", "write a SyncMNIST dataset to disk in shards"),
    "train-video": ("rstg_fast.experiments.video", "train/evaluate C2D or I3D + RSTG on Something-Something"),
    "info": ("rstg_fast.cli_info", "print what this build of rstg_fast contains"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="rstg-fast", description="Recurrent Space-time Graph networks, fast.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    return int(importlib.import_module(SUBCOMMANDS[args.command][0]).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
