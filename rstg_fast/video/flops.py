"""Parameter and FLOP counts of the video configurations (``python -m rstg_fast.video.flops``).

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` on the forward pass of one clip:
it counts matrix products and convolutions (a multiply-add = 2 FLOPs) and ignores
elementwise ops, norms, pooling and softmax. Papers usually quote multiply-adds, so the table
gives GMACs = FLOPs / 2 too. RSTG is counted as ``rstg_fast.reference.RSTG`` (same constructor and weights as
``rstg_fast.RSTG``), which runs the send MLP on every edge: the same arithmetic the fused
op does without storing the messages.
Models are built on the ``meta`` device when possible (no memory, no compute).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from rstg_fast._errors import ArgumentParser  # errors: one line, exit code 2
from rstg_fast.video.model import VideoClassifier

PAPER_CONFIGS: list[tuple[str, str]] = [
    ("c2d", "none"), ("c2d", "res4"),
    ("i3d", "none"), ("i3d", "vec"), ("i3d", "res2"), ("i3d", "res3"), ("i3d", "res4"), ("i3d", "res3-4"),
]


def count(model: torch.nn.Module, input_shape: tuple[int, ...], device: str = "meta") -> dict[str, Any]:
    """``{"params", "flops", "by_module"}`` of one forward pass on zeros of ``input_shape``.

    ``by_module`` maps FlopCounterMode's module paths (``"VideoClassifier.graphs.res4"``) to
    their FLOPs, sub-modules included.
    """
    model = model.to(device).eval()
    x = torch.zeros(input_shape, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    per = counter.get_flop_counts()
    by_module = {k: sum(v.values()) for k, v in per.items()}
    return {"params": sum(p.numel() for p in model.parameters()), "flops": counter.get_total_flops(),
            "by_module": by_module}


def table(frames: int = 32, size: int = 224, num_classes: int = 174, rstg: dict[str, Any] | None = None,
          device: str = "meta") -> str:
    from rstg_fast.reference import RSTG as ReferenceRSTG  # noqa: PLC0415

    kw = dict(rstg or {})

    def factory(in_channels: int, readout: str) -> torch.nn.Module:
        return ReferenceRSTG(in_channels, readout=readout, **kw)
    rows = ["| backbone | placement | params (M) | GFLOPs | GMACs | of which RSTG (GFLOPs) |",
            "|---|---|---:|---:|---:|---:|"]
    for arch, placement in PAPER_CONFIGS:
        with torch.device(device):
            model = VideoClassifier(arch, num_classes, placement, graph_factory=factory)
        c = count(model, (1, 3, frames, size, size), device)
        blocks = [f"VideoClassifier.graphs.{s}" for s in model.placement.maps] + ["VideoClassifier.vec_graph"]
        graph = sum(c["by_module"].get(k, 0) for k in blocks)
        rows.append(f"| {arch.upper()} ResNet-50 | {placement} | {c['params'] / 1e6:.2f} | {c['flops'] / 1e9:.1f} | "
                    f"{c['flops'] / 2e9:.1f} | {graph / 1e9:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--device", default="meta", help="meta (no compute) or cpu")
    p.add_argument("--scalewise-update", action=argparse.BooleanOptionalAction, default=True,
                   help="as train-video's default (the authors' Something-Something setting)")
    a = p.parse_args(argv)
    print(f"input 1 x 3 x {a.frames} x {a.size} x {a.size}, 174 classes, RSTG defaults (docs/design.md §3) "
          f"with scalewise_update={a.scalewise_update}")
    print(table(a.frames, a.size, rstg={"scalewise_update": a.scalewise_update}, device=a.device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
