"""The reference space stage: every edge's message materialised, as the paper writes it.

Independent of :mod:`rstg_fast.ops` (it is the oracle for it): the send MLP runs on the
concatenated ``[v_j | v_i | p_j | p_i]`` of every edge, and the attention is a dense masked
softmax over each destination's true neighbours.
"""

from __future__ import annotations

import torch

from rstg_fast.modules.graph_cache import SizeGraph
from rstg_fast.modules.space_base import SpaceStageBase


class ReferenceSpaceStage(SpaceStageBase):
    """Same parameters as :class:`rstg_fast.SpaceStage`; ``gather`` written per edge."""

    def gather(self, v: torch.Tensor, graph: SizeGraph) -> torch.Tensor:
        G, N, _ = v.shape
        src, dst = graph.src, graph.dst  # (E,) edge j -> i
        E, h, M = src.numel(), self.heads, self.message_dim

        # send: m_ij = MLP_s([v_j | v_i | p_j | p_i])
        parts = [v[:, src], v[:, dst]]
        if self.pos is not None:
            parts += [self.pos[src].expand(G, E, -1), self.pos[dst].expand(G, E, -1)]
        m = self.send(torch.cat(parts, -1))  # (G, E, M)

        # attention logits s_ij = scale * <W_q v_i, W_k v_j> per head, on a dense (dst, src) grid
        q = self.query(v).view(G, N, h, M // h)
        k = self.key(v).view(G, N, h, M // h)
        logits = torch.einsum("gihc,gjhc->gijh", q, k) * self.scale  # (G, N, N, h)
        mask = torch.zeros(N, N, dtype=torch.bool, device=v.device)
        mask[dst, src] = True
        logits = logits.masked_fill(~mask[None, :, :, None], float("-inf"))
        # masked softmax over sources; a destination without neighbours gets all-zero weights
        row_max = logits.amax(2, keepdim=True).detach()
        row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
        e = torch.exp(logits - row_max)  # exp(-inf) = 0 off the neighbourhood
        denom = e.sum(2, keepdim=True)
        a = e / torch.where(denom > 0, denom, torch.ones_like(denom))

        # gather: sum_j a_ij m_ij, head c weighting slice c of the message
        a_edge = a[:, dst, src]  # (G, E, h)
        weighted = (a_edge.unsqueeze(-1) * m.view(G, E, h, M // h)).reshape(G, E, M)
        return weighted.new_zeros(G, N, M).index_add(1, dst, weighted)
