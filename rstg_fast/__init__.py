"""rstg_fast: fast, fused Recurrent Space-time Graph neural networks."""

from rstg_fast import graph, ops
from rstg_fast._ext import build_info

__version__ = "0.1.0"
__all__ = ["build_info", "graph", "ops"]
