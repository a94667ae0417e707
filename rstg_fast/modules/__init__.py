"""Model building blocks: the fast RSTG and its stages."""

from rstg_fast.modules.rstg import RSTG
from rstg_fast.modules.space_stage import SpaceStage
from rstg_fast.modules.stream import RSTGStream
from rstg_fast.modules.time_stage import TimeStage

__all__ = ["RSTG", "SpaceStage", "TimeStage", "RSTGStream"]
