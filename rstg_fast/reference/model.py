"""``rstg_fast.reference.RSTG``: the paper's model with a per-edge space stage.

The scheduler, time stages and readouts are :class:`rstg_fast.modules.base.RSTGBase`, shared
with the fast model because they are the same maths; the space stage is
:class:`~rstg_fast.reference.space_stage.ReferenceSpaceStage`, which materialises every
edge's message and runs its own masked softmax.
"""

from __future__ import annotations

from rstg_fast.modules.base import RSTGBase
from rstg_fast.reference.space_stage import ReferenceSpaceStage


class RSTG(RSTGBase):
    """Reference RSTG: same constructor, forward and ``state_dict`` keys as :class:`rstg_fast.RSTG`
    (``backend`` is accepted and ignored: the reference never calls the fused op)."""

    space_stage_class = ReferenceSpaceStage
