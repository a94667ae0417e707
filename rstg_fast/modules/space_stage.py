"""The fast space stage: per-node projections in one matmul, then the fused op."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rstg_fast.modules.graph_cache import SizeGraph
from rstg_fast.modules.space_base import SpaceStageBase
from rstg_fast.ops import message_attention


class SpaceStage(SpaceStageBase):
    """RSTG space stage on :func:`rstg_fast.ops.message_attention`.

    The first send layer is linear in ``[v_j | v_i | p_j | p_i]``, so its weight splits by
    column blocks ``[W_src | W_dst | W_psrc | W_pdst]``; stacked with ``W_q`` and ``W_k`` they
    give ``S, R, Q, K`` from one matmul over the nodes (``b1`` goes to ``R``). The positional
    part ``P @ [W_psrc; W_pdst]^T`` is per node, computed once and broadcast over the graphs.
    Nothing per edge is materialised here. Same parameters as the reference
    (:class:`~rstg_fast.modules.space_base.SpaceStageBase`); ``backend`` picks the op backend.
    """

    def __init__(self, node_dim: int, message_dim: int, *, backend: str = "auto", **kwargs) -> None:
        super().__init__(node_dim, message_dim, **kwargs)
        self.backend = backend

    def gather(self, v: torch.Tensor, graph: SizeGraph) -> torch.Tensor:
        D, M = self.node_dim, self.message_dim
        first = self.send[0]
        W1 = first.weight  # (M, 2D + 2P)
        zeros = first.bias.new_zeros(M)
        W = torch.cat([W1[:, :D], W1[:, D : 2 * D], self.query.weight, self.key.weight])  # (4M, D)
        b = torch.cat([zeros, first.bias, self.query.bias, self.key.bias])
        S, R, Q, K = F.linear(v, W, b).split(M, -1)  # each (G, N, M)
        if self.pos is not None:
            P = self.pos_dim
            pos = F.linear(self.pos, torch.cat([W1[:, 2 * D : 2 * D + P], W1[:, 2 * D + P :]]))  # (N, 2M)
            S = S + pos[:, :M]
            R = R + pos[:, M:]
        W2 = b2 = None
        if self.send_layers == 2:
            # under autocast S is in the autocast dtype while the parameters are not; the op
            # is not autocast-aware and wants one dtype
            W2, b2 = self.send[2].weight.to(S.dtype), self.send[2].bias.to(S.dtype)
        return message_attention(
            S, R, Q, K, W2, b2, graph.indptr, graph.indices, heads=self.heads, scale=self.scale, backend=self.backend
        )
