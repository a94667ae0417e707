"""Per-call overhead of ``message_attention`` on the CPU: the Python path, not the kernel.

A tiny problem (G = 1, N = 2, one edge each way, widths 4) on the ``cpu`` backend, one
thread, best of 5 blocks of ``--calls`` calls, for each entry point a user has. Run it from
two checkouts to compare a change (docs/architecture.md, "Per-call overhead")::

    python bench/per_call_overhead.py            # this checkout
    PYTHONPATH=/tmp/before python bench/per_call_overhead.py

Timing numbers, so run it alone on the machine.
"""

from __future__ import annotations

import time

import torch

import rstg_fast
from rstg_fast._errors import ArgumentParser  # errors: one line, exit code 2
from rstg_fast.ops import message_attention


def best_us(fn, calls: int) -> float:
    for _ in range(calls // 10):
        fn()  # warm-up
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t) / calls)
    return best * 1e6


def main() -> None:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=3000)
    calls = p.parse_args().calls
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    S, R, Q, K = (torch.randn(1, 2, 4, generator=gen) for _ in range(4))
    W2, b2 = torch.randn(4, 4, generator=gen), torch.randn(4, generator=gen)
    indptr, indices = torch.tensor([0, 1, 2]), torch.tensor([1, 0])
    leaves = [t.clone().requires_grad_(True) for t in (S, R, Q, K, W2, b2)]

    def public():
        return message_attention(S, R, Q, K, W2, b2, indptr, indices, backend="cpu")

    def public_grad():
        return message_attention(*leaves, indptr, indices, backend="cpu")

    def public_fwd_bwd():
        message_attention(*leaves, indptr, indices, backend="cpu").sum().backward()

    def torch_ops():
        return torch.ops.rstg_fast.message_attention(S, R, Q, K, W2, b2, indptr, indices, 1, 0.5, "cpu")

    print(f"rstg_fast from {rstg_fast.__file__}, torch {torch.__version__}, {calls} calls x 5, best block")
    for name, fn in [
        ("torch.ops.rstg_fast.message_attention", torch_ops),
        ("public, no grad", public),
        ("public, inputs require grad", public_grad),
        ("public, forward + backward", public_fwd_bwd),
    ]:
        print(f"{name:40s} {best_us(fn, calls):7.1f} us")


if __name__ == "__main__":
    main()
