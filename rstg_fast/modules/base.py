"""The RSTG model skeleton shared by the reference and the fast model.

Everything but the space stage is literally the same maths in both (embedding, scheduler,
time stages, readouts, streaming), so it lives here once; a subclass only names its space
stage class. docs/design.md §1 and §3; modelling choices the design leaves open are in
docs/model.md.
"""

from __future__ import annotations

import torch
from torch import nn

from rstg_fast.graph import check_scales, positional_maps
from rstg_fast.modules._args import attention_scale as _attention_scale
from rstg_fast.modules._args import choice as _choice
from rstg_fast.modules._args import flag as _flag
from rstg_fast.modules._args import integer as _integer
from rstg_fast.modules._args import layer_count as _layer_count
from rstg_fast.modules._args import positive_int as _positive_int
from rstg_fast.modules.blocks import MapReadout, vec_readout
from rstg_fast.modules.graph_cache import GraphCache, SizeGraph, static_size
from rstg_fast.modules.init import INITS, paper_init_
from rstg_fast.modules.norm import GlobalBatchNorm
from rstg_fast.modules.space_base import SpaceStageBase
from rstg_fast.modules.stream import RSTGStream
from rstg_fast.modules.time_stage import TimeStage
from rstg_fast.pooling import pool_nodes

SCHEDULES = ("all_time_stages", "one_time_stage", "space_only", "time_only", "homogeneous")

States = list  # one entry per time stage (K + 1), each a recurrent State, a running sum, or None


class RSTGBase(nn.Module):
    """Recurrent Space-time Graph block: ``(B, C, T, H, W)`` -> ``(B, node_dim)`` (``readout="vec"``)
    or ``(B, C, T, H, W)`` (``readout="map"``). See :class:`rstg_fast.RSTG` for the arguments.

    Submodules (the ``state_dict`` contract): ``input_proj`` (only when C != node_dim),
    ``input_norm`` (only with ``input_norm="batch"``),
    ``time`` (the time stage shared by the K iterations), ``final_time``, ``space``,
    ``readout`` (map only). Stages a schedule does not use are not created.
    """

    space_stage_class: type[SpaceStageBase]

    def __init__(
        self,
        in_channels: int,
        node_dim: int = 512,
        message_dim: int = 512,
        scales=((3, 3), (2, 2), (1, 1)),
        iterations: int = 3,
        send_layers: int = 2,
        update_layers: int = 2,
        heads: int = 1,
        attention_scale: float | None = None,
        positional: bool = False,
        dim_map: int = 6,
        norm: str = "layer",
        time_cell: str = "lstm",
        schedule: str = "all_time_stages",
        scalewise_update: bool = False,
        readout: str = "vec",
        time_readout: str = "mean",
        init: str = "paper",
        input_norm: str = "none",
        backend: str = "auto",
    ) -> None:
        super().__init__()
        # the constructor arguments, to rebuild an equivalent model (swap_in)
        self.config = dict(
            in_channels=in_channels, node_dim=node_dim, message_dim=message_dim, scales=scales,
            iterations=iterations, send_layers=send_layers, update_layers=update_layers, heads=heads,
            attention_scale=attention_scale, positional=positional, dim_map=dim_map, norm=norm,
            time_cell=time_cell, schedule=schedule, scalewise_update=scalewise_update, readout=readout,
            time_readout=time_readout, init=init, input_norm=input_norm, backend=backend,
        )  # fmt: skip
        self.in_channels = _positive_int("in_channels", in_channels)
        self.node_dim = _positive_int("node_dim", node_dim)
        self.message_dim = _positive_int("message_dim", message_dim)
        self.scales = check_scales(scales)
        self.iterations = _integer("iterations", iterations, minimum=0)
        send_layers = _layer_count("send_layers", send_layers)
        update_layers = _layer_count("update_layers", update_layers)
        heads = _positive_int("heads", heads)
        _attention_scale(attention_scale)  # also for schedules without a space stage
        if message_dim % heads:
            raise ValueError(f"heads must divide message_dim (the attention width) = {message_dim}, got heads={heads}")
        self.norm_kind = _choice("norm", norm, ("layer", "none"))
        self.time_cell = _choice("time_cell", time_cell, ("lstm", "gru"))
        self.schedule = _choice("schedule", schedule, SCHEDULES)
        self.readout_kind = _choice("readout", readout, ("vec", "map"))
        self.time_readout = _choice("time_readout", time_readout, ("mean", "last"))
        self.init = _choice("init", init, INITS)
        self.input_norm_kind = _choice("input_norm", input_norm, ("none", "batch"))
        scalewise_update = _flag("scalewise_update", scalewise_update)
        if scalewise_update and schedule == "homogeneous":
            raise ValueError(
                "scalewise_update must be False with schedule='homogeneous' (the recurrent cell is the update)"
            )
        self.positional = _flag("positional", positional)
        self.dim_map = _positive_int("dim_map", dim_map)
        if self.positional and any(dim_map < max(sh, sw) for sh, sw in self.scales):
            raise ValueError(
                f"dim_map must be at least the largest scale side, got dim_map={dim_map} for scales {self.scales}"
            )
        from rstg_fast.ops.backends import check_backend_name

        self.backend = check_backend_name(backend)
        self.num_nodes = sum(sh * sw for sh, sw in self.scales)

        self.input_proj = nn.Linear(in_channels, node_dim) if in_channels != node_dim else None
        self.input_norm = GlobalBatchNorm(node_dim) if input_norm == "batch" else None
        uses_time_cell = schedule in ("all_time_stages", "time_only", "homogeneous")
        self.time = TimeStage(node_dim, time_cell) if uses_time_cell and iterations > 0 else None
        self.final_time = TimeStage(node_dim, time_cell) if schedule != "space_only" else None
        if schedule != "time_only" and iterations > 0:
            kwargs = dict(
                send_layers=send_layers,
                update_layers=update_layers,
                heads=heads,
                attention_scale=attention_scale,
                positional=positional_maps(self.scales, dim_map, torch.float64) if self.positional else None,
                norm=norm,
                scale_sizes=[sh * sw for sh, sw in self.scales] if scalewise_update else None,
                homogeneous=schedule == "homogeneous",
            )
            self.space = self._make_space_stage(node_dim, message_dim, backend, kwargs)
        else:
            self.space = None
        self.readout = MapReadout(node_dim, in_channels) if readout == "map" else None
        self.graphs = GraphCache(self.scales)
        if init == "paper":
            paper_init_(self)

    def _make_space_stage(self, node_dim: int, message_dim: int, backend: str, kwargs: dict) -> SpaceStageBase:
        return self.space_stage_class(node_dim, message_dim, **kwargs)

    # -- pieces -----------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor, rank: int, name: str = "x") -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != rank or x.shape[1] != self.in_channels:
            layout = "(B, C, T, H, W)" if rank == 5 else "(B, C, H, W)"
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must have shape {layout} with C = in_channels = {self.in_channels}, got {got}")
        if rank == 5 and x.shape[2] < 1:
            raise ValueError(f"{name} must have at least one frame (T >= 1), got shape {tuple(x.shape)}")
        # before the graph cache converts its buffers to x's dtype
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
        want = next((p.dtype for p in self.parameters()), None)
        # under autocast, float32/bfloat16/float16 activations meet float32 weights by design
        autocast = torch.is_autocast_enabled(x.device.type) and x.dtype != torch.float64
        if want is not None and x.dtype != want and not autocast:
            raise ValueError(f"{name} must have the dtype of the model's parameters ({want}), got {x.dtype}")

    def _graph(self, x: torch.Tensor) -> SizeGraph:
        return self.graphs.get(static_size(x.shape[-2]), static_size(x.shape[-1]), x)

    def embed(self, x: torch.Tensor, graph: SizeGraph) -> torch.Tensor:
        """Area-pool ``x (B, C, T, H, W)`` to the nodes, project and (``input_norm="batch"``)
        normalise: ``(B, T, N, node_dim)``."""
        v = pool_nodes(x, graph.pool)
        if self.input_proj is not None:
            v = self.input_proj(v)
        return self.input_norm(v) if self.input_norm is not None else v

    def _time_stage(self, v: torch.Tensor, k: int, state):
        """Time stage ``k`` (``k == iterations`` is the final one). ``v (B, T, N, D)``."""
        if self.schedule == "space_only":
            # a mean over time; after the first one every frame is equal, so we keep one
            # frame (T = 1, broadcast at the end) and later means are the identity.
            if v.shape[1] == 1 and k > 0:
                return v, None
            total, count = v.sum(1, keepdim=True), v.shape[1]
            if state is not None:
                total, count = total + state[0], count + state[1]
            return total / count, (total, count)
        stage = self.final_time if k == self.iterations else self.time
        return stage(v, state)

    def _space_stage(self, v: torch.Tensor, graph: SizeGraph) -> torch.Tensor:
        """Space stage on every frame: ``v (B, T, N, D)``."""
        if self.schedule == "time_only":
            return v.mean(2, keepdim=True)  # every node becomes the mean; kept as N = 1, broadcast at the end
        B, T, N, D = v.shape
        cell = self.time if self.schedule == "homogeneous" else None
        return self.space(v.reshape(B * T, N, D), graph, cell).view(B, T, N, D)

    def propagate(self, v: torch.Tensor, graph: SizeGraph, states: States | None = None) -> tuple[torch.Tensor, States]:
        """The scheduler: K x (time stage -> space stage), then the final time stage.

        ``v (B, T, N, D)``; ``states`` continues a previous call (streaming), one entry per
        time stage. Returns the final time stage's nodes ``(B, T, N, D)`` (an expanded view
        where an ablation collapsed time or nodes) and the new states.
        """
        B, T, N, D = v.shape
        states = list(states) if states is not None else [None] * (self.iterations + 1)
        new: States = [None] * (self.iterations + 1)
        for k in range(self.iterations):
            if self.schedule != "one_time_stage":
                v, new[k] = self._time_stage(v, k, states[k])
            v = self._space_stage(v, graph)
        v, new[-1] = self._time_stage(v, self.iterations, states[-1])
        return v.expand(B, T, N, D), new

    def finish(self, v: torch.Tensor, x: torch.Tensor, graph: SizeGraph) -> torch.Tensor:
        """Readout of the final nodes ``v (B, T, N, D)`` for input ``x (B, C, T, H, W)``."""
        if self.readout is None:
            return vec_readout(v, self.time_readout)
        return self.readout(v, x, graph.paint)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, T, H, W)`` -> ``(B, node_dim)`` (vec) or ``(B, C, T, H, W)`` (map)."""
        self._check_input(x, 5)
        graph = self._graph(x)
        v, _ = self.propagate(self.embed(x, graph), graph)
        return self.finish(v, x, graph)

    def stream(self) -> RSTGStream:
        """A frame-by-frame runner with this model's weights; see :class:`RSTGStream`."""
        return RSTGStream(self)

    def extra_repr(self) -> str:
        return (
            f"scales={self.scales}, iterations={self.iterations}, "
            f"schedule={self.schedule!r}, readout={self.readout_kind!r}"
        )
