"""``rstg-fast info``: what this build contains, and whether its CUDA kernels can run here."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def cuda_unusable_reason(compiled: bool) -> str | None:
    """Why the compiled CUDA kernels cannot run in this process (None: they can). ``cuda`` in
    ``build_info()`` says only that they were compiled; running them also needs a torch built
    with CUDA, a visible GPU, and compute capability 8.0 or newer."""
    import torch

    from rstg_fast.ops.backends import BACKENDS

    if not compiled:
        return "rstg_fast was built without CUDA kernels (nvcc not found or RSTG_FAST_CUDA=0)"
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            return f"torch {torch.__version__} is built without CUDA"
        return "no CUDA device is visible (no GPU, no driver, or CUDA_VISIBLE_DEVICES is empty)"
    return BACKENDS["cuda"].unavailable(torch.device("cuda"))


def run(args: argparse.Namespace) -> int:
    import torch

    from rstg_fast import build_info
    from rstg_fast.ops import backends

    info = {}
    for key, value in build_info().items():
        info[key] = value
        if key == "cuda":  # compiled; usable here?
            info["cuda_usable"] = (why := cuda_unusable_reason(value)) is None
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
