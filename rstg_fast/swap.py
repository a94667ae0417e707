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


class SwapResult(list):
    """The qualified names replaced (a ``list[str]``), plus ``.model``: the model to use from
    now on (the same object, changed in place, or the new fast RSTG when the model itself was
    a reference RSTG)."""

    def __init__(self, names: list[str], model: nn.Module) -> None:
        super().__init__(names)
        self.model = model


def swap_in(model: nn.Module, backend: str = "auto") -> SwapResult:
    """Replace every :class:`rstg_fast.reference.RSTG` inside ``model`` by an equivalent
    :class:`rstg_fast.RSTG` (same configuration, weights, device, dtype, train/eval mode and
    ``requires_grad`` flags; see :func:`fast_copy`).

    Submodules are replaced in place, on their parent. A reference instance held in several
    places (``ModuleList([r, r])``, one block under two parents) becomes one fast instance in
    all of them, so shared weights stay shared. Returns the qualified names replaced
    (also logged at INFO) as a list that also carries ``.model``. A ``model`` that *is* a
    reference RSTG has no parent to be replaced in: it is left untouched, the names are
    ``[""]`` and ``.model`` is the new fast RSTG. So one line serves both cases::

        model = rstg_fast.swap_in(model).model
    """
    from rstg_fast.reference import RSTG as RefRSTG

    if isinstance(model, RefRSTG):
        fast = fast_copy(model, backend)
        logger.info("swap_in: replaced the top-level reference RSTG by rstg_fast.RSTG (returned as .model)")
        return SwapResult([""], fast)
    # Every slot is visited (named_children() skips a module it has already listed, so the
    # second slot of ModuleList([r, r]) was missed), and each reference instance gets one fast
    # copy, put in every slot that held it: weights shared before stay shared.
    fast_of: dict[int, nn.Module] = {}
    replaced = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module._modules.items()):
            if isinstance(child, RefRSTG):
                if id(child) not in fast_of:
                    fast_of[id(child)] = fast_copy(child, backend)
                setattr(module, child_name, fast_of[id(child)])
                replaced.append(f"{name}.{child_name}" if name else child_name)
    for name in replaced:
        logger.info("swap_in: replaced %s by rstg_fast.RSTG", name)
    return SwapResult(replaced, model)
