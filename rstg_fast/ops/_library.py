"""Registration of the ``rstg_fast::message_attention`` torch ops.

Two ops, forward and backward, each with a real kernel for CPU and CUDA tensors (which
hands over to the chosen backend), a fake kernel for ``torch.compile``/meta tensors, and
autograd tying them together. ``torch.library.define``/``impl`` is used rather than the
``custom_op`` decorator: same semantics, a few microseconds less per call.
"""

from __future__ import annotations

import torch

from rstg_fast.ops import backends
from rstg_fast.ops._checks import check_backward_tensors, check_inputs, check_tensors
from rstg_fast.ops._dtypes import acc_dtype
from rstg_fast.ops._graph_cache import checked_csr

_lib = torch.library.Library("rstg_fast", "DEF")  # noqa: TOR901 - we own this namespace
_lib.define(
    "message_attention(Tensor S, Tensor R, Tensor Q, Tensor K, Tensor? W2, Tensor? b2, "
    "Tensor indptr, Tensor indices, int heads, float scale, str backend) -> (Tensor, Tensor)"
)
_lib.define(
    "message_attention_backward(Tensor dO, Tensor S, Tensor R, Tensor Q, Tensor K, Tensor? W2, "
    "Tensor? b2, Tensor indptr, Tensor indices, Tensor O, Tensor lse, int heads, float scale, "
    "str backend) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)"
)


def _contiguous(*ts):
    return tuple(t.contiguous() if t is not None else None for t in ts)


def launch_forward(S, R, Q, K, W2, b2, indptr, indices, heads, scale, backend):
    """The backend's forward on validated arguments (``check_inputs`` ran, backend resolved)."""
    indptr, indices = checked_csr(indptr, indices)  # every call: the kernels only see a checked graph
    S, R, Q, K, W2, b2 = _contiguous(S, R, Q, K, W2, b2)
    return backends.module(backend).forward(S, R, Q, K, W2, b2, indptr, indices, heads, scale)


def launch_backward(dO, S, R, Q, K, W2, b2, indptr, indices, O, lse, heads, scale, backend):
    """The backend's backward on validated arguments; ``(dS, dR, dQ, dK, dW2, db2)``, the last
    two None without ``W2``."""
    # the saved indptr/indices are the caller's tensors, maybe edited since the forward
    indptr, indices = checked_csr(indptr, indices)
    # Incoming gradients may be expanded views with stride 0: kernels see contiguous memory.
    dO, S, R, Q, K, W2, b2, O, lse = _contiguous(dO, S, R, Q, K, W2, b2, O, lse)
    return backends.module(backend).backward(dO, S, R, Q, K, W2, b2, indptr, indices, O, lse, heads, scale)


# The registered ops serve torch.compile and torch.ops callers: they always validate.


def _forward_impl(S, R, Q, K, W2, b2, indptr, indices, heads, scale, backend):
    scale, backend = check_inputs(S, R, Q, K, W2, b2, indptr, indices, heads, scale, backend)
    return launch_forward(S, R, Q, K, W2, b2, indptr, indices, heads, scale, backend)


def _backward_impl(dO, S, R, Q, K, W2, b2, indptr, indices, O, lse, heads, scale, backend):
    scale, backend = check_inputs(S, R, Q, K, W2, b2, indptr, indices, heads, scale, backend)
    check_backward_tensors(dO, O, lse, S, W2, heads)
    dS, dR, dQ, dK, dW2, db2 = launch_backward(dO, S, R, Q, K, W2, b2, indptr, indices, O, lse, heads, scale, backend)
    if W2 is None:  # the schema returns Tensors: empty stand-ins for absent W2/b2
        dW2, db2 = S.new_empty(0), S.new_empty(0)
    return dS, dR, dQ, dK, dW2, db2


for _key in ("CPU", "CUDA"):
    _lib.impl("message_attention", _forward_impl, _key)
    _lib.impl("message_attention_backward", _backward_impl, _key)


@torch.library.register_fake("rstg_fast::message_attention")
def _forward_fake(S, R, Q, K, W2, b2, indptr, indices, heads, scale, backend):
    check_tensors(S, R, Q, K, W2, b2, indptr, indices, heads, scale)  # no data, no backend: the impl checks those
    G, N, Hd = S.shape
    D = W2.shape[0] if W2 is not None else Hd
    return S.new_empty((G, N, D)), S.new_empty((G, N, heads), dtype=acc_dtype(S.dtype))


@torch.library.register_fake("rstg_fast::message_attention_backward")
def _backward_fake(dO, S, R, Q, K, W2, b2, indptr, indices, O, lse, heads, scale, backend):
    check_tensors(S, R, Q, K, W2, b2, indptr, indices, heads, scale)
    check_backward_tensors(dO, O, lse, S, W2, heads)
    dW2 = torch.empty_like(W2) if W2 is not None else S.new_empty(0)
    db2 = torch.empty_like(b2) if b2 is not None else S.new_empty(0)
    return torch.empty_like(S), torch.empty_like(R), torch.empty_like(Q), torch.empty_like(K), dW2, db2


def _setup_context(ctx, inputs, output):
    S, R, Q, K, W2, b2, indptr, indices, heads, scale, backend = inputs
    O, lse = output
    ctx.save_for_backward(S, R, Q, K, W2, b2, indptr, indices, O, lse)
    ctx.heads, ctx.scale, ctx.backend = heads, scale, backend
    ctx.has_w2 = W2 is not None
    ctx.mark_non_differentiable(lse)


def _backward(ctx, dO, _dlse, eager: bool = False):
    """Autograd of both paths. The registered op's backward is the registered backward op (so
    torch.compile traces it through its fake kernel, and it validates); the eager
    ``MessageAttentionFunction`` calls the launcher on its already validated arguments."""
    if torch.is_grad_enabled():  # backward(create_graph=True): the gradients must be differentiable
        return _differentiable_backward(ctx, dO)
    S, R, Q, K, W2, b2, indptr, indices, O, lse = ctx.saved_tensors
    args = (dO, S, R, Q, K, W2, b2, indptr, indices, O, lse, ctx.heads, ctx.scale, ctx.backend)
    if eager:
        grads = launch_backward(*args)
    else:
        grads = torch.ops.rstg_fast.message_attention_backward.default(*args)
        if not ctx.has_w2:
            grads = (*grads[:4], None, None)
    return (*grads, None, None, None, None, None)


def _differentiable_backward(ctx, dO):
    """Gradients as a differentiable function of the inputs and ``dO``, through the reference
    maths (materialises the edges: double backward is for checks such as gradient penalties,
    not the training path). The fused backward kernels are not themselves differentiable, and
    leaving them in the graph would make a second derivative silently zero."""
    from rstg_fast.ops.backends.reference import message_attention_reference

    S, R, Q, K, W2, b2, indptr, indices, _O, _lse = ctx.saved_tensors
    indptr, indices = checked_csr(indptr, indices)
    inputs = [S, R, Q, K] + ([W2, b2] if ctx.has_w2 else [])
    wanted = [t for t in inputs if t.requires_grad]
    out, _ = message_attention_reference(S, R, Q, K, W2, b2, indptr, indices, ctx.heads, ctx.scale)
    grads = iter(torch.autograd.grad(out, wanted, dO, create_graph=True, allow_unused=True) if wanted else ())
    result = [next(grads) if t.requires_grad else None for t in inputs]
    result += [None] * (6 - len(result))
    return (*result, None, None, None, None, None)


torch.library.register_autograd("rstg_fast::message_attention", _backward, setup_context=_setup_context)


class MessageAttentionFunction(torch.autograd.Function):
    """The eager path of the public function: the same autograd as the registered op, around
    the launchers directly. ``register_autograd`` plus the dispatcher cost tens of
    microseconds more per call (docs/architecture.md); at the paper's shapes that is as much as
    the kernel. Its arguments must have passed ``check_inputs`` (backend resolved)."""

    @staticmethod
    def forward(ctx, S, R, Q, K, W2, b2, indptr, indices, heads, scale, backend):
        args = (S, R, Q, K, W2, b2, indptr, indices, heads, scale, backend)
        output = launch_forward(*args)
        _setup_context(ctx, args, output)
        return output

    @staticmethod
    def backward(ctx, dO, _dlse):
        return _backward(ctx, dO, _dlse, eager=True)
