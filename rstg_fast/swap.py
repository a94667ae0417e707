"""``swap_in``: replace reference RSTG blocks inside a user's model by the fast ``rstg_fast.RSTG``."""

from __future__ import annotations

import logging

from torch import nn

logger = logging.getLogger(__name__)


def fast_copy(ref: nn.Module, backend: str = "auto") -> nn.Module:
    """A :class:`rstg_fast.RSTG` with ``ref``'s configuration, weights, device, dtype, train/eval
    mode and ``requires_grad`` flags (hooks registered on ``ref`` are not carried over)."""
    from rstg_fast.modules.rstg import RSTG

    fast = RSTG(**{**ref.config, "backend": backend})
    param = next(ref.parameters(), None)
    if param is not None:
        fast.to(device=param.device, dtype=param.dtype)
    fast.load_state_dict(ref.state_dict())
    frozen = {name for name, p in ref.named_parameters() if not p.requires_grad}
    for name, p in fast.named_parameters():
        p.requires_grad_(name not in frozen)
    fast.train(ref.training)
    return fast


def swap_in(model: nn.Module, backend: str = "auto") -> list[str]:
    """Replace every :class:`rstg_fast.reference.RSTG` inside ``model`` by an equivalent
    :class:`rstg_fast.RSTG` (same configuration, weights, device, dtype, train/eval mode).

    Replacement is in place, on the parent module. Returns the qualified names replaced (also
    logged at INFO). A ``model`` that *is* a reference RSTG has no parent to replace it in:
    it is returned unchanged with ``[""]`` as the name list; use :func:`fast_copy` for it::

        fast = rstg_fast.swap.fast_copy(ref) if isinstance(ref, RefRSTG) else ref
    """
    from rstg_fast.reference import RSTG as RefRSTG

    if isinstance(model, RefRSTG):
        logger.info("swap_in: the model itself is a reference RSTG; use fast_copy(model)")
        return [""]
    replaced = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, RefRSTG):
                setattr(module, child_name, fast_copy(child, backend))
                replaced.append(f"{name}.{child_name}" if name else child_name)
    for name in replaced:
        logger.info("swap_in: replaced %s by rstg_fast.RSTG", name)
    return replaced
