"""The ``triton`` backend of ``message_attention``: FlashAttention-style Triton kernels.

Files: ``plan.py`` (cached per-graph work schedule, row splitting), ``configs.py`` (tiles
and autotuning), ``forward_kernel.py`` / ``launch_forward.py``, ``backward_kernel.py`` /
``launch_backward.py``. See docs/triton_backend.md. On CPU tensors it runs only in
Triton's interpreter (``TRITON_INTERPRET=1``, for tests).
"""

from rstg_fast.ops.backends.triton import configs
from rstg_fast.ops.backends.triton.launch_backward import backward
from rstg_fast.ops.backends.triton.launch_forward import forward

__all__ = ["configs", "forward", "backward"]
