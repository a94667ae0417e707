"""Batch normalisation whose training statistics cover the global batch under DDP.

Used for RSTG's optional input normalisation (``input_norm="batch"``, docs/design.md §1) and
by the SyncMNIST classifier head. ``torch.nn.SyncBatchNorm`` would do the same on CUDA, but
it needs a distributed group and a GPU for its training path; this one is plain PyTorch, so
one process and a CPU ``torchrun`` give the same numbers up to the reduction order.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of every rank's input is the sum of the ranks' output
    gradients (each output depends on every input with weight 1)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.Module):
    """``BatchNorm1d`` over every leading position, with statistics over all ranks' rows.

    ``x (..., D)``: one statistic per feature over every other position (video, frame, node).
    Training: mean and (biased) variance through a differentiable all-reduce, in two passes
    (mean first: features with a large common part and a small spread would cancel
    catastrophically in ``E[x^2] - E[x]^2`` in float32); running statistics as
    ``BatchNorm1d`` (momentum 0.1, unbiased variance). Evaluation: running statistics. In one
    process it equals ``nn.BatchNorm1d``; data-parallel it equals one process up to the order
    of the reduction. Statistics in float32 (or float64) under autocast; the output has the
    input's dtype.
    """

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    @staticmethod
    def _global_sum(t: torch.Tensor) -> torch.Tensor:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return _AllReduceSum.apply(t)
        return t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape, dtype = x.shape, x.dtype
        x = x.reshape(-1, shape[-1])
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        if not self.training:
            mean, var = self.running_mean, self.running_var
        else:
            n = self._global_sum(x.new_tensor([float(x.shape[0])]))
            mean = self._global_sum(x.sum(0)) / n
            var = self._global_sum(((x - mean) ** 2).sum(0)) / n
            with torch.no_grad():
                unbiased = var * (n / (n - 1).clamp(min=1))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), self.momentum)
        y = (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return y.view(shape).to(dtype)  # what follows sees the dtype it would without the norm

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, momentum={self.momentum}"
