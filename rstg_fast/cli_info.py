"""``rstg-fast info``: what this build contains."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    import torch

    from rstg_fast import build_info
    from rstg_fast.ops import backends

    info = build_info()
    info["torch"] = torch.__version__
    info["auto_backend_cpu"] = backends.auto_backend(torch.device("cpu"), torch.float32)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>18}: {value}")
    return 0
