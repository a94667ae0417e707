"""The ``cuda`` backend of ``message_attention``: CUDA C++ kernels in ``rstg_fast._C``.

Files: ``plan.py`` (the shared row split packed for the kernels, cached per graph; launch
limits), ``launch.py`` (allocation, float32 scratch, dispatch on PyTorch's current stream).
Kernels: ``csrc/cuda/``. Design and limits: docs/cuda_backend.md.

Determinism: with ``torch.use_deterministic_algorithms(True)`` the backward computes dS and
dK in a second, source-major pass instead of float32 atomics; everything else is
deterministic in both modes (fixed-order reductions).
"""

from rstg_fast.ops.backends.cuda.launch import backward, forward

__all__ = ["forward", "backward"]
