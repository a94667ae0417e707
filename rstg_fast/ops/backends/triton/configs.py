"""Tile sizes and autotuning configurations of the Triton kernels.

On a GPU each kernel is autotuned over a small set (first call of a new shape key costs a
few benchmark runs, not a sweep). Under ``TRITON_INTERPRET=1`` (CPU tests) autotuning
with more than one config cannot run (no driver for ``do_bench``), and the interpreter is
slow, so a single tiny config is used there.

Tile names: ``BG`` graphs x ``BE`` edges form the ``M = BG * BE`` rows of a GEMM tile that
share one destination row and one index list; ``BD`` output columns (within one head);
``BK`` the slice of ``Hd`` streamed per ``tl.dot`` in the forward.
"""

from __future__ import annotations

import os

import triton
import triton.testing


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET=1`` is set now (Triton reads it when kernels are defined)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# The mode this process's kernels were created in (they are created when this package is
# first imported, and keep that mode for the life of the process).
INTERPRETED = interpreting()


def quick_bench(fn, quantiles):
    """The autotuner's timer: 5 ms warm-up, 20 ms of runs (Triton's default is 25 + 100 ms),
    so the first call of a new shape spends well under a second per kernel on tuning."""
    return triton.testing.do_bench(fn, warmup=5, rep=20, quantiles=quantiles)


def _configs(options: list[dict], warps_stages: list[tuple[int, int]]) -> list[triton.Config]:
    return [triton.Config(dict(o), num_warps=w, num_stages=s) for o, (w, s) in zip(options, warps_stages, strict=True)]


if INTERPRETED:
    # The interpreter's cost is per operation, not per element: few, mid-sized tiles. Tests
    # use sizes above these (Hd > 32, D / heads > 32, rows > 8 edges, G > 4) to cross the
    # tile borders.
    FORWARD = [triton.Config({"BG": 4, "BE": 8, "BD": 32, "BK": 32})]
    BACKWARD = [triton.Config({"BG": 4, "BE": 8, "BD": 32})]
    WEIGHT_GRAD = [triton.Config({"BG": 4, "BE": 8, "BD": 32})]
else:
    # M = BG * BE rows per tl.dot: 32 or 64; tl.dot needs every dimension >= 16. Chosen so
    # that ptxas reports no spills for sm_90 at Hd = D = 512 (bench/gpu/check_triton.py
    # --compile-only); not yet timed on a GPU.
    FORWARD = _configs(
        [
            {"BG": 2, "BE": 16, "BD": 64, "BK": 32},
            {"BG": 4, "BE": 16, "BD": 64, "BK": 32},
            {"BG": 8, "BE": 8, "BD": 64, "BK": 32},
            {"BG": 4, "BE": 16, "BD": 128, "BK": 32},
        ],
        [(4, 3), (8, 3), (8, 3), (8, 3)],
    )
    # The backward kernels keep (M, Hd) and (BD, Hd) tiles in registers: small M and BD,
    # eight warps. ptxas (sm_90, bf16) reports no spills for the first two at Hd = 256 and
    # for the first at Hd = 512; larger tiles are there for smaller Hd. Not yet timed on a GPU.
    BACKWARD = _configs(
        [{"BG": 1, "BE": 16, "BD": 16}, {"BG": 2, "BE": 8, "BD": 16}, {"BG": 2, "BE": 16, "BD": 16}],
        [(8, 1), (8, 1), (8, 1)],
    )
    WEIGHT_GRAD = _configs(
        [{"BG": 1, "BE": 16, "BD": 16}, {"BG": 1, "BE": 16, "BD": 32}, {"BG": 2, "BE": 16, "BD": 16}],
        [(8, 1), (8, 1), (8, 1)],
    )
