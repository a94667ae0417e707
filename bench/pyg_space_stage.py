"""RSTG's send + attention-gather written with PyTorch Geometric, as a GNN user would.

The competitor from the graph-library world for the ``message_attention`` op: the ``G``
graphs of a batch become one big graph of ``G * N`` nodes (the usual PyG batching: one
``edge_index`` with node offsets), and a ``MessagePassing`` layer computes per edge

    h_ij = relu(S_j + R_i),  m_ij = relu(W2 h_ij + b2),  s_ij = scale * <Q_i, K_j> per head,
    a_ij = torch_geometric.utils.softmax(s_ij, index=i)

and sums ``a_ij * m_ij`` into each destination (``aggr="add"``). It takes the same
``S, R, Q, K, W2, b2`` as the op (the first send layer split into per-node terms), so the
comparison is of the edge stage alone; it computes in the input dtype, as PyG does.
Requires ``torch_geometric`` (the ``pyg`` extra); importing this module without it raises
ImportError.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import softmax


class PygMessageAttention(MessagePassing):
    """``MessagePassing`` form of the op. Node tensors are ``(G * N, .)``."""

    def __init__(self, heads: int = 1) -> None:
        super().__init__(aggr="add", flow="source_to_target", node_dim=0)
        self.heads = heads

    def forward(self, S, R, Q, K, W2, b2, edge_index, scale: float) -> torch.Tensor:
        return self.propagate(edge_index, S=S, R=R, Q=Q, K=K, W2=W2, b2=b2, scale=scale)

    def message(self, S_j, R_i, Q_i, K_j, W2, b2, scale, index, ptr, size_i):
        h = F.relu(S_j + R_i)  # (E_total, Hd)
        m = F.relu(F.linear(h, W2, b2)) if W2 is not None else h  # (E_total, D)
        n_edges = h.shape[0]
        logits = (Q_i * K_j).view(n_edges, self.heads, -1).sum(-1) * scale  # (E_total, heads)
        alpha = softmax(logits, index, ptr, size_i)
        return (m.view(n_edges, self.heads, -1) * alpha.unsqueeze(-1)).view(n_edges, -1)


def batched_edge_index(indptr: torch.Tensor, indices: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """``(2, G * E)`` ``[source; destination]`` of ``G`` copies of a CSR-by-destination graph."""
    num_nodes = indptr.numel() - 1
    dst = torch.repeat_interleave(torch.arange(num_nodes, device=indptr.device), indptr[1:] - indptr[:-1])
    offsets = (torch.arange(num_graphs, device=indptr.device) * num_nodes).view(-1, 1)
    return torch.stack([(indices.view(1, -1) + offsets).reshape(-1), (dst.view(1, -1) + offsets).reshape(-1)])


class PygSpaceStage:
    """Callable with the signature of ``message_attention_reference``; returns ``(O, None)``.

    The batched ``edge_index`` is built once per (graph, G, device) and reused, as a user
    would keep a ``Batch`` around.
    """

    def __init__(self) -> None:
        self._edge_index: dict = {}
        self._layers: dict[int, PygMessageAttention] = {}

    def __call__(self, S, R, Q, K, W2, b2, indptr, indices, heads, scale):
        G, N, _ = S.shape
        key = (indptr.data_ptr(), indices.data_ptr(), indices.numel(), G, S.device)
        edge_index = self._edge_index.get(key)
        if edge_index is None:
            edge_index = self._edge_index[key] = batched_edge_index(indptr, indices, G)
        layer = self._layers.setdefault(heads, PygMessageAttention(heads))
        out = layer(
            S.reshape(G * N, -1),
            R.reshape(G * N, -1),
            Q.reshape(G * N, -1),
            K.reshape(G * N, -1),
            W2,
            b2,
            edge_index,
            scale,
        )
        return out.view(G, N, -1), None
