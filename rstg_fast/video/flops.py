"""Parameter and FLOP counts of the video configurations (``python -m rstg_fast.video.flops``).

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` on the forward pass of one clip:
it counts matrix products and convolutions (a multiply-add = 2 FLOPs) and ignores
elementwise ops, norms, pooling and softmax. Papers usually quote multiply-adds, so the table
gives GMACs = FLOPs / 2 too. RSTG is counted with its ``reference`` backend, which runs the
send MLP on every edge: the same arithmetic the fused op does without storing the messages.
Models are built on the ``meta`` device when possible (no memory, no compute).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from rstg_fast.video.model import VideoClassifier

PAPER_CONFIGS: list[tuple[str, str]] = [
    ("c2d", "none"), ("c2d", "res4"),
    ("i3d", "none"), ("i3d", "vec"), ("i3d", "res2"), ("i3d", "res3"), ("i3d", "res4"), ("i3d", "res3-4"),
]


def count(model: torch.nn.Module, input_shape: tuple[int, ...], device: str = "meta") -> dict[str, Any]:
    """``{"params", "flops", "by_module"}`` of one forward pass on ``torch.empty(input_shape)``."""
    model = model.to(device).eval()
    x = torch.zeros(input_shape, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    per = counter.get_flop_counts()
    by_module = {k: sum(v.values()) for k, v in per.items() if k.count(".") <= 1}
    return {"params": sum(p.numel() for p in model.parameters()), "flops": counter.get_total_flops(),
            "by_module": by_module}


def table(frames: int = 32, size: int = 224, num_classes: int = 174, rstg: dict[str, Any] | None = None,
          device: str = "meta") -> str:
    rstg = {"backend": "reference", **(rstg or {})}
    rows = ["| backbone | placement | params (M) | GFLOPs | GMACs | of which RSTG (GFLOPs) |",
            "|---|---|---:|---:|---:|---:|"]
    for arch, placement in PAPER_CONFIGS:
        with torch.device(device):
            model = VideoClassifier(arch, num_classes, placement, rstg=rstg)
        c = count(model, (1, 3, frames, size, size), device)
        graph = sum(v for k, v in c["by_module"].items() if k.startswith(("VideoClassifier.graphs", "VideoClassifier.vec_graph")) and k.count(".") == 1)
        rows.append(f"| {arch.upper()} ResNet-50 | {placement} | {c['params'] / 1e6:.2f} | {c['flops'] / 1e9:.1f} | "
                    f"{c['flops'] / 2e9:.1f} | {graph / 1e9:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--device", default="meta", help="meta (no compute) or cpu")
    a = p.parse_args(argv)
    print(f"input 1 x 3 x {a.frames} x {a.size} x {a.size}, 174 classes, RSTG defaults (DESIGN.md §3)")
    print(table(a.frames, a.size, device=a.device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
