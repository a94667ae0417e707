"""``rstg-fast info``: what this build contains, and whether its CUDA kernels can run here."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    import torch

    from rstg_fast import build_info
    from rstg_fast.ops import backends

    info = {}
    for key, value in build_info().items():
        info[key] = value
        if key == "cuda":  # compiled; usable here?
            # the cuda backend's own availability rule (build, torch with CUDA, a device, sm_80+)
            info["cuda_usable"] = (why := backends.BACKENDS["cuda"].unavailable(torch.device("cuda"))) is None
            info["cuda_unusable_reason"] = why
    info["torch"] = torch.__version__
    info["auto_backend_cpu"] = backends.auto_backend(torch.device("cpu"), torch.float32)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            if key == "cuda_unusable_reason":
                continue
            if key == "cuda_usable" and not value:
                value = f"False ({info['cuda_unusable_reason']})"
            print(f"{key:>18}: {value}")
    return 0
