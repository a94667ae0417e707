"""The time processing stage: one recurrent cell per node, run over the frames.

Written out (not ``nn.LSTM``) for two reasons: ``torch.compile(fullgraph=True)`` does not
trace ``nn.LSTM``/``nn.GRU``, and the ``homogeneous`` ablation needs the same cell for a
single step in the space stage. Parameter names, gate order and initialisation follow
``nn.LSTMCell`` / ``nn.GRUCell`` (gates ``i, f, g, o`` / ``r, z, n``), so their weights load
unchanged. The input projection of all frames is one matmul; only the recurrence loops.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rstg_fast.modules._args import choice, positive_int

State = tuple[torch.Tensor, ...]

_GATES = {"lstm": 4, "gru": 3}


class TimeStage(nn.Module):
    """``h_i^t = f_time(v_i^t, h_i^{t-1})`` for every node, LSTM (default) or GRU, hidden = ``dim``.

    Args:
        dim: node feature size (input and hidden size).
        cell: ``"lstm"`` or ``"gru"``.
    """

    def __init__(self, dim: int, cell: str = "lstm") -> None:
        super().__init__()
        dim = positive_int("dim", dim)
        choice("cell", cell, tuple(_GATES))
        self.dim, self.cell_type = dim, cell
        gates = _GATES[cell] * self.dim
        self.weight_ih = nn.Parameter(torch.empty(gates, self.dim))
        self.weight_hh = nn.Parameter(torch.empty(gates, self.dim))
        self.bias_ih = nn.Parameter(torch.empty(gates))
        self.bias_hh = nn.Parameter(torch.empty(gates))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.dim)  # as nn.LSTMCell / nn.GRUCell
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def initial_state(self, like: torch.Tensor) -> State:
        """Zero state ``(h,)`` or ``(h, c)``, each shaped like ``like`` ``(..., dim)``."""
        z = torch.zeros_like(like)
        return (z, z) if self.cell_type == "lstm" else (z,)

    def _recur(self, xp: torch.Tensor, state: State) -> State:
        """One step from the projected input ``xp = W_ih x + b_ih`` ``(..., gates * dim)``."""
        hp = F.linear(state[0], self.weight_hh, self.bias_hh)
        if self.cell_type == "lstm":
            i, f, g, o = (xp + hp).chunk(4, -1)
            c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        xr, xz, xn = xp.chunk(3, -1)
        hr, hz, hn = hp.chunk(3, -1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return ((1 - z) * n + z * state[0],)

    def step(self, x: torch.Tensor, state: State) -> State:
        """One step of the cell: input ``x (..., dim)``, state of the same shape. Returns the new
        state; its first element is the output."""
        return self._recur(F.linear(x, self.weight_ih, self.bias_ih), state)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Run over the frames. ``x (B, T, N, dim)`` -> ``(y (B, T, N, dim), last state)``.

        ``state`` (each ``(B, N, dim)``) continues a previous call (streaming); None = zeros.
        Eager mode uses PyTorch's fused sequence kernels (cuDNN on CUDA); under
        ``torch.compile`` the loop below is traced instead (same maths).
        """
        if state is None:
            state = self.initial_state(x[:, 0])
        if torch.compiler.is_compiling():
            return self._loop(x, state)
        return self._fused(x, state)

    def _loop(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        xp = F.linear(x, self.weight_ih, self.bias_ih)  # every frame's input projection at once
        outs = []
        for t in range(x.shape[1]):
            state = self._recur(xp[:, t], state)
            outs.append(state[0])
        return torch.stack(outs, 1), state

    def _fused(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        B, T, N, D = x.shape
        seq = x.permute(0, 2, 1, 3).reshape(B * N, T, D)  # one sequence per (video, node)
        hx = tuple(s.reshape(1, B * N, D) for s in state)
        params = [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]
        # biases, layers, dropout, train, bidirectional, batch_first; "train" only tells cuDNN to
        # keep what backward needs, so it follows grad mode (gradients in eval mode work)
        args = (params, True, 1, 0.0, torch.is_grad_enabled(), False, True)
        if self.cell_type == "lstm":
            out, h, c = torch.lstm(seq, hx, *args)
            new: State = (h.view(B, N, D), c.view(B, N, D))
        else:
            out, h = torch.gru(seq, hx[0], *args)
            new = (h.view(B, N, D),)
        return out.view(B, N, T, D).transpose(1, 2), new
