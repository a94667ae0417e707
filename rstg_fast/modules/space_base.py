"""Parameters and update of the space processing stage, shared by the reference and the fast
space stage (so both have the same ``state_dict`` keys); they differ only in ``gather``."""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from torch import nn

from rstg_fast.graph import Graph
from rstg_fast.modules._args import attention_scale as check_attention_scale
from rstg_fast.modules._args import choice, layer_count, positive_int
from rstg_fast.modules.blocks import Update
from rstg_fast.modules.graph_cache import SizeGraph, size_graph
from rstg_fast.modules.time_stage import TimeStage


class SpaceStageBase(nn.Module, abc.ABC):
    """send -> attention gather -> update -> norm, on ``G`` graphs of ``N`` nodes at once.

    Parameters (the contract between both implementations):
        ``send.0`` Linear(2 node_dim + 2 P, message_dim) on ``[v_j | v_i | p_j | p_i]``
        (``P = dim_map**2`` with positional maps, else 0), ``send.2`` Linear(message_dim,
        message_dim) when ``send_layers == 2``; ``query``, ``key`` Linear(node_dim, message_dim)
        (attention width A = message_dim); ``gather_bias (message_dim,)``; ``update``
        (:class:`Update`, absent for ``homogeneous``); ``message_proj`` Linear(message_dim,
        node_dim) (``homogeneous`` with message_dim != node_dim only); ``norm``.
    Buffer: ``pos (N, P)`` non-persistent positional maps (absent without positional maps).
    """

    def __init__(
        self,
        node_dim: int,
        message_dim: int,
        *,
        send_layers: int = 2,
        update_layers: int = 2,
        heads: int = 1,
        attention_scale: float | None = None,
        positional: torch.Tensor | None = None,
        norm: str = "layer",
        scale_sizes: list[int] | None = None,
        homogeneous: bool = False,
    ) -> None:
        super().__init__()
        node_dim = positive_int("node_dim", node_dim)
        message_dim = positive_int("message_dim", message_dim)
        heads = positive_int("heads", heads)
        if message_dim % heads:
            raise ValueError(f"heads must divide message_dim = {message_dim}, got heads={heads}")
        send_layers = layer_count("send_layers", send_layers)
        update_layers = layer_count("update_layers", update_layers)
        choice("norm", norm, ("layer", "none"))
        attention_scale = check_attention_scale(attention_scale)
        self.node_dim, self.message_dim, self.heads = node_dim, message_dim, heads
        self.send_layers = send_layers
        self.scale = attention_scale if attention_scale is not None else 1.0 / math.sqrt(message_dim // heads)
        P = positional.shape[1] if positional is not None else 0
        self.pos_dim = P
        # The maps are fixed values (exp of a Gaussian). Kept exactly in float64 next to the
        # buffer, and every dtype/device change (.double(), .to(...)) converts from that copy
        # (_apply below): converting the float32 buffer instead left a float64 model with maps
        # rounded to float32, ~1e-8 off the defined values (found by model-level fuzzing
        # against an independent float64 oracle; both models shared the error).
        self._pos_exact = positional.detach().to(torch.float64).clone() if positional is not None else None
        if positional is not None:
            self.register_buffer("pos", self._pos_exact.to(torch.get_default_dtype()), persistent=False)
        else:
            self.pos = None
        layers: list[nn.Module] = [nn.Linear(2 * node_dim + 2 * P, message_dim), nn.ReLU()]
        if send_layers == 2:
            layers += [nn.Linear(message_dim, message_dim), nn.ReLU()]
        self.send = nn.Sequential(*layers)
        self.query = nn.Linear(node_dim, message_dim)
        self.key = nn.Linear(node_dim, message_dim)
        self.gather_bias = nn.Parameter(torch.zeros(message_dim))
        self.homogeneous = homogeneous
        if homogeneous:
            self.message_proj = nn.Linear(message_dim, node_dim) if message_dim != node_dim else None
        else:
            self.update = Update(node_dim, message_dim, update_layers, scale_sizes)
        self.norm = nn.LayerNorm(node_dim) if norm == "layer" else nn.Identity()

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self._pos_exact is not None:
            # the buffer now has the target dtype and device (``fn`` may change only one of
            # them, e.g. .cuda()); refill it from the exact copy: float32 rounds once, float64
            # keeps the exact maps
            self.pos = self._pos_exact.to(device=self.pos.device, dtype=self.pos.dtype)
        return self

    @abc.abstractmethod
    def gather(self, v: torch.Tensor, graph: SizeGraph) -> torch.Tensor:
        """``sum_j a_ij m_ij`` (before bias and ReLU): ``v (G, N, node_dim)`` -> ``(G, N, message_dim)``.

        The one place the two space stages differ: per edge (reference) or fused (fast)."""

    def forward(self, v: torch.Tensor, graph: SizeGraph | Graph, cell: TimeStage | None = None) -> torch.Tensor:
        """``v (G, N, node_dim)`` -> ``(G, N, node_dim)``.

        ``graph``: the model's cached :class:`SizeGraph`, or a :class:`rstg_fast.graph.Graph`
        (converted on each call; for using the stage on its own). ``cell``: the shared
        recurrent cell that replaces the update MLP in the ``homogeneous`` schedule.

        >>> stage = SpaceStage(64, 64)
        >>> out = stage(torch.randn(8, 14, 64), grid_graph(((3, 3), (2, 2), (1, 1)), 6, 6))
        """
        if isinstance(graph, Graph):
            graph = size_graph(graph, v)
        g = F.relu(self.gather(v, graph) + self.gather_bias)
        if self.homogeneous:
            if cell is None:
                raise ValueError("cell must be given to a homogeneous space stage")
            inp = self.message_proj(g) if self.message_proj is not None else g
            # the message is the input and the node is the state; for an LSTM the node is
            # both the hidden and the cell state (docs/model.md)
            state = (v, v) if cell.cell_type == "lstm" else (v,)
            out = cell.step(inp, state)[0]
        else:
            out = self.update(v, g)
        return self.norm(out)
