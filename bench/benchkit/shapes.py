"""The canonical shapes of docs/design.md §5, and scaled-down copies of them.

A scaled copy keeps the graph (scales and map size, so the same nodes, edges and degree
skew) and the widths, and shrinks only the number of graphs ``G = B * T``: the per-graph
work is what a kernel is judged on, and the cost of every implementation is linear in G.
The scale is part of the case id (``dense-G16of64``) and of ``extra_info``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch

from rstg_fast.graph import Graph, grid_graph


@dataclass(frozen=True)
class Shape:
    """One benchmark shape: a batch of ``B`` videos of ``T`` frames on one RSTG graph."""

    name: str
    B: int
    T: int
    scales: tuple[tuple[int, int], ...]
    H: int
    W: int
    dim: int  # node_dim = message_dim = Hd = D = attention width A
    in_channels: int  # backbone channels C of the model input (B, C, T, H, W)
    full_B: int = 0  # B and T of the canonical shape this one was scaled from (0: not scaled)
    full_T: int = 0
    skip_reason: str = ""  # non-empty: the cases of this shape are skipped, for this reason

    @property
    def G(self) -> int:
        return self.B * self.T

    @property
    def full_G(self) -> int:
        return (self.full_B or self.B) * (self.full_T or self.T)

    @property
    def is_scaled(self) -> bool:
        return self.G != self.full_G

    @property
    def case_id(self) -> str:
        """``paper`` at full size, ``dense-G16of64`` scaled down."""
        return f"{self.name}-G{self.G}of{self.full_G}" if self.is_scaled else self.name

    @property
    def scale_note(self) -> str:
        if not self.is_scaled:
            return "full size"
        return (
            f"scaled down: G={self.G} of {self.full_G} graphs (B={self.B} of {self.full_B or self.B}, "
            f"T={self.T} of {self.full_T or self.T}); same graph and widths"
        )

    def graph(self) -> Graph:
        return _graph(self.scales, self.H, self.W)

    def scaled_to(self, max_graphs: int) -> Shape:
        """A copy with at most ``max_graphs`` graphs: B shrinks first, then T."""
        if self.G <= max_graphs:
            return self
        B = max(1, min(self.B, max_graphs // self.T))
        T = self.T if B * self.T <= max_graphs else max(1, max_graphs // B)
        return dataclasses.replace(self, B=B, T=T, full_B=self.full_B or self.B, full_T=self.full_T or self.T)

    def describe(self) -> dict:
        g = self.graph()
        return {
            "shape": self.name,
            "case": self.case_id,
            "scale": self.scale_note,
            "B": self.B,
            "T": self.T,
            "G": self.G,
            "full_G": self.full_G,
            "scales": [list(s) for s in self.scales],
            "H": self.H,
            "W": self.W,
            "N": g.num_nodes,
            "E": g.num_edges,
            "max_degree": int(g.degrees().max()),
            "dim": self.dim,
            "edges_total": self.G * g.num_edges,
        }


@functools.cache
def _graph(scales, H, W) -> Graph:
    return grid_graph(scales, H, W)


_S321 = ((3, 3), (2, 2), (1, 1))
CANONICAL: dict[str, Shape] = {
    # in_channels: what feeds RSTG in the paper's setting (SyncMNIST: a small conv net,
    # taken as wide as the nodes; Something-Something: I3D res4 has 1024 channels).
    "syncmnist": Shape("syncmnist", 32, 10, _S321, 6, 6, 512, 512),
    "paper": Shape("paper", 8, 16, _S321, 14, 14, 512, 1024),
    "dense": Shape("dense", 4, 16, ((14, 14), (7, 7), (3, 3), (1, 1)), 14, 14, 256, 256),
    "huge": Shape("huge", 2, 16, ((28, 28), (14, 14), (7, 7), (3, 3), (1, 1)), 28, 28, 256, 256),
}

# Default number of graphs per shape on a CPU, chosen so `pytest bench/` stays within about
# ten minutes on 2 cores: the op at full size up to `dense` (its reference forward+backward
# takes seconds), `huge` at 2 of its 32 graphs; the model step at `syncmnist` and `paper`
# only (None: skipped; each model shape costs a torch.compile of the whole model, about a
# minute on 2 cores, on top of seconds per step). `--bench-scale=full` or `=N` lifts these.
CPU_MAX_GRAPHS_OP = {"syncmnist": 320, "paper": 128, "dense": 64, "huge": 2}
CPU_MAX_GRAPHS_MODEL = {"syncmnist": 320, "paper": 128, "dense": None, "huge": None}


def resolve(names: list[str], device: str, scale: str, level: str) -> list[Shape]:
    """Shapes to run: canonical ones, scaled down on CPU unless ``scale == "full"``.

    ``scale`` is ``auto`` (the CPU defaults above; full size on GPU), ``full``, or an
    integer cap on G applied to every shape.
    """
    limits = CPU_MAX_GRAPHS_OP if level == "op" else CPU_MAX_GRAPHS_MODEL
    out = []
    for name in names:
        shape = CANONICAL[name]
        if scale == "full":
            pass
        elif scale == "auto":
            if device == "cpu" and limits[name] is None:
                shape = dataclasses.replace(
                    shape,
                    skip_reason=f"{level} at {name} is not run on CPU by default (keeps `pytest bench/` near ten "
                    "minutes on 2 cores); pass --bench-scale=full or --bench-scale=N to include it",
                )
            elif device == "cpu":
                shape = shape.scaled_to(limits[name])
        else:
            shape = shape.scaled_to(int(scale))
        out.append(shape)
    return out


def make_op_inputs(shape: Shape, dtype: torch.dtype, device: str, seed: int, heads: int = 1) -> dict:
    """Fresh random inputs of ``message_attention`` at ``shape`` (never zeros).

    Magnitudes follow the model: S, R and Q, K are outputs of linear layers of unit-variance
    node features, so entries are O(1) and the scores have unit variance after scaling.
    """
    g = shape.graph()
    gen = torch.Generator().manual_seed(seed)
    G, N, Hd = shape.G, g.num_nodes, shape.dim
    D = A = shape.dim

    def rnd(*size, std=1.0):
        return (torch.randn(*size, generator=gen, dtype=torch.float64) * std).to(device=device, dtype=dtype)

    return {
        "S": rnd(G, N, Hd),
        "R": rnd(G, N, Hd),
        "Q": rnd(G, N, A),
        "K": rnd(G, N, A),
        "W2": rnd(D, Hd, std=1.0 / math.sqrt(Hd)),
        "b2": rnd(D, std=0.1),
        "indptr": g.indptr.to(device),
        "indices": g.indices.to(device),
        "heads": heads,
        "scale": 1.0 / math.sqrt(A // heads),
    }


DIFF_INPUTS = ("S", "R", "Q", "K", "W2", "b2")
