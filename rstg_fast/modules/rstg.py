"""``rstg_fast.RSTG``: the RSTG model on the fused ``message_attention`` op."""

from __future__ import annotations

from rstg_fast.modules.base import RSTGBase
from rstg_fast.modules.space_base import SpaceStageBase
from rstg_fast.modules.space_stage import SpaceStage


class RSTG(RSTGBase):
    """Recurrent Space-time Graph block (docs/design.md §1, §3), fast version.

    Input ``x (B, C, T, H, W)`` (backbone features, Conv3d layout); output ``(B, node_dim)``
    for ``readout="vec"`` or ``(B, C, T, H, W)`` for ``readout="map"`` (the identity at
    initialisation). Same constructor, forward and ``state_dict`` keys as
    :class:`rstg_fast.reference.RSTG`; ``backend`` picks the ``message_attention`` backend.

    Args:
        in_channels: C. A linear projection ``C -> node_dim`` is added when they differ.
        node_dim: node feature size (and recurrent hidden size).
        message_dim: send MLP width, message size D, and attention width A (query/key size).
        scales: node grids, numbered scale by scale, row-major.
        iterations: K, the number of (time stage -> space stage) rounds.
        send_layers, update_layers: 1 or 2 linear+ReLU layers.
        heads: attention heads; must divide ``message_dim``.
        attention_scale: score scale, a finite number > 0; None = ``1 / sqrt(message_dim / heads)``.
        positional, dim_map: Gaussian position maps (``dim_map x dim_map``) on the send input.
        norm: ``"layer"`` (LayerNorm after the update) or ``"none"``.
        time_cell: ``"lstm"`` or ``"gru"``.
        schedule: ``all_time_stages``, ``one_time_stage``, ``space_only``, ``time_only`` or
            ``homogeneous`` (see docs/model.md).
        scalewise_update: one update MLP per scale.
        readout: ``"vec"`` or ``"map"``; time_readout: ``"mean"`` or ``"last"`` (vec only).
        init: ``"paper"`` (the authors' Glorot weights and zero biases, the default) or
            ``"torch"`` (PyTorch's module defaults); see :mod:`rstg_fast.modules.init`.
        input_norm: ``"none"`` or ``"batch"`` (a BatchNorm of the node features after pooling
            and projection, statistics over every video, frame and node, global under DDP).
        backend: ``message_attention`` backend (``"auto"``, ``"reference"``, ...).
    """

    space_stage_class = SpaceStage

    def _make_space_stage(self, node_dim: int, message_dim: int, backend: str, kwargs: dict) -> SpaceStageBase:
        return SpaceStage(node_dim, message_dim, backend=backend, **kwargs)

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        """Change the op backend of the space stage too."""
        self._backend = name
        space = self.__dict__.get("_modules", {}).get("space")
        if space is not None:
            space.backend = name
