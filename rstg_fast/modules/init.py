"""The authors' initialisation (``init="paper"``, docs/design.md §1).

TensorFlow's defaults as the released RSTG code uses them: every linear layer's weight
Glorot-uniform and its bias zero; each recurrent cell's input and hidden matrices
Glorot-uniform *per gate block* (a ``(dim, dim)`` block for each of LSTM's ``i, f, g, o`` or
GRU's ``r, z, n``, as TensorFlow builds one kernel per gate), biases zero. Norm layers keep
weight 1 and bias 0, the map readout's scale stays 0.

Why it is the default: PyTorch's defaults put biases of ``+-1/sqrt(fan_in)`` after every
layer, and through the stacked recurrent and space stages these common parts dominate: the
RSTG-to-vec output then varies across videos by about 1 % of its size at initialisation
(measured, docs/syncmnist.md), a nearly constant function of the input.
"""

from __future__ import annotations

import torch
from torch import nn

from rstg_fast.modules.time_stage import TimeStage

INITS = ("paper", "torch")


@torch.no_grad()
def paper_init_(module: nn.Module) -> nn.Module:
    """Re-initialise every ``nn.Linear`` and :class:`TimeStage` inside ``module`` in place."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, TimeStage):
            gates = m.weight_ih.shape[0] // m.dim
            for weight in (m.weight_ih, m.weight_hh):
                for block in weight.view(gates, m.dim, m.dim):
                    nn.init.xavier_uniform_(block)
            nn.init.zeros_(m.bias_ih)
            nn.init.zeros_(m.bias_hh)
    return module
