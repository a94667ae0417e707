"""The pure-PyTorch reference RSTG, written for clarity (the oracle of ``rstg_fast.RSTG``)."""

from rstg_fast.reference.model import RSTG
from rstg_fast.reference.space_stage import ReferenceSpaceStage

__all__ = ["RSTG", "ReferenceSpaceStage"]
