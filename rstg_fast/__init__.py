"""rstg_fast: fast, fused Recurrent Space-time Graph neural networks."""

from rstg_fast import graph, ops, reference
from rstg_fast._ext import build_info
from rstg_fast.modules import RSTG, SpaceStage, TimeStage
from rstg_fast.swap import swap_in

__version__ = "0.1.0"
__all__ = ["build_info", "graph", "ops", "reference", "RSTG", "SpaceStage", "TimeStage", "swap_in"]
