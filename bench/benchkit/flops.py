"""FLOP counts of a case, so achieved FLOP/s and the fraction of peak can be reported.

The op (docs/design.md §2), per graph-edge ``G * E``:
- the edge product ``W2 @ h``: ``2 * Hd * D`` (absent with one send layer);
- the score dot products: ``2 * A`` (all heads together).
Forward does each once. Forward+backward counts the work of a recomputing kernel: the edge
product 4 times (forward, recomputed ``m``, ``W2^T dz``, ``dz h^T``) and the scores 4 times
(forward, recomputed, ``dQ``, ``dK``). The same count is used for every implementation, so
GFLOP/s compare like 1 / time; implementations that store instead of recompute do less.
Elementwise work (ReLU, softmax, weighting) is not counted.

The model: the matmul FLOPs that ``torch.utils.flop_counter.FlopCounterMode`` sees in one
forward+backward of the reference model (``rstg_fast.reference.RSTG``), whose edge products
are plain linear layers; used for every model implementation alike.
"""

from __future__ import annotations

from collections.abc import Callable


def op_flops(G: int, E: int, Hd: int, D: int, A: int, send_layers: int, mode: str) -> dict:
    product = 2 * G * E * Hd * D if send_layers == 2 else 0
    scores = 2 * G * E * A
    times = 1 if mode == "fwd" else 4
    return {"flops": times * (product + scores), "edge_flops": times * product}


def counted_flops(fn: Callable[[], object]) -> tuple[object, int]:
    """``fn()``'s result and the total FLOPs that FlopCounterMode recorded while it ran."""
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415

    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, int(counter.get_total_flops())
