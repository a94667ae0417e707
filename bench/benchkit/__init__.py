"""Helpers of the rstg_fast benchmark suite (``pytest bench/``): shapes, providers,
timing, memory, FLOPs, peaks and the correctness gate. Not part of the installed package."""
