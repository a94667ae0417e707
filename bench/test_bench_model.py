"""Benchmark of a whole RSTG training step (forward + backward, LSTM time stages and all).

Providers: ``reference`` (``rstg_fast.reference.RSTG``, per-edge space stage),
``compile-reference`` (``torch.compile`` of it) and ``fast-<backend>``
(``rstg_fast.RSTG(backend=<backend>)``), all with the same weights (one ``state_dict``,
loaded across the two classes) and input ``x (B, C, T, H, W)``. The step is
``loss = <model(x), g>`` for a fixed random ``g`` and the gradients of every parameter.
Gate: output and every parameter gradient against the float64 reference model, on the
case's input or, when that model does not fit in memory, on a copy with fewer videos.
"""

from __future__ import annotations

import pytest
import torch
from benchkit.cases import base_info
from benchkit.flops import counted_flops
from benchkit.gate import check, tolerance
from benchkit.providers import compiled
from benchkit.runner import measure, run_case, skip_unrunnable
from benchkit.shapes import Shape

try:
    import rstg_fast.reference as reference_models
    from rstg_fast import RSTG as FastRSTG
except ImportError as exc:  # the model lands on its own branch; the op suite works without it
    FastRSTG = reference_models = None
    _MISSING = f"rstg_fast.RSTG / rstg_fast.reference.RSTG not importable ({exc})"
else:
    _MISSING = None

ITERATIONS = 3  # docs/design.md §1 default K
# Peak bytes of the reference model's step in units of G * E * message_dim elements: each
# of the K space stages keeps about a dozen edge tensors for backward.
EDGE_TENSORS_AT_PEAK = 12 * ITERATIONS


def edge_bytes(shape: Shape, dtype: torch.dtype) -> int:
    itemsize = torch.empty((), dtype=dtype).element_size()
    return EDGE_TENSORS_AT_PEAK * shape.G * shape.graph().num_edges * shape.dim * itemsize


def config(shape: Shape) -> dict:
    return dict(
        in_channels=shape.in_channels,
        node_dim=shape.dim,
        message_dim=shape.dim,
        scales=shape.scales,
        iterations=ITERATIONS,
    )


def model_inputs(shape: Shape, dtype: torch.dtype, device: str, seed: int):
    """Input ``x (B, C, T, H, W)`` and the output weights ``g (B, node_dim)``, fresh random."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape.B, shape.in_channels, shape.T, shape.H, shape.W, generator=gen, dtype=torch.float64)
    g = torch.randn(shape.B, shape.dim, generator=gen, dtype=torch.float64)
    return x.to(device, dtype), g.to(device, dtype)


def build(kind: str, shape: Shape, state: dict, dtype: torch.dtype, device: str, backend: str | None = None):
    cls = FastRSTG if kind == "fast" else reference_models.RSTG
    kwargs = config(shape) | ({"backend": backend} if kind == "fast" else {})
    model = cls(**kwargs)
    model.load_state_dict(state)
    return model.to(device=device, dtype=dtype)


def make_step(model, forward, x: torch.Tensor, g: torch.Tensor):
    """Zero-argument training step; returns the output and each parameter's gradient."""
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad], strict=True)

    def step():
        out = forward(x)
        grads = torch.autograd.grad((out * g).sum(), params)
        return {"out": out, **{f"d{n}": gr for n, gr in zip(names, grads, strict=True)}}

    return step


def test_model_step(benchmark, request, bench_env, model_case):
    case, env = model_case, bench_env
    benchmark.group = case.group
    info = base_info(case, env)
    info["iterations"] = ITERATIONS
    info["in_channels"] = case.shape.in_channels
    if _MISSING:
        pytest.skip(_MISSING)
    skip_unrunnable(env, request, benchmark, info, case, edge_bytes(case.shape, case.dtype))

    def body():
        torch.manual_seed(case.seed)
        state = reference_models.RSTG(**config(case.shape)).state_dict()
        kind = "fast" if case.provider.kind == "fast" else "reference"
        model = build(kind, case.shape, state, case.dtype, env.device, case.provider.backend)
        forward = compiled(model) if case.provider.kind == "compile" else model
        if kind == "fast":
            info["backend_resolved"] = getattr(model, "backend", case.provider.backend)
        x, g = model_inputs(case.shape, case.dtype, env.device, case.seed)
        step = make_step(model, forward, x, g)
        tol = tolerance(case.dtype, env.device, "model")
        flop_box = {}

        def gate(result: dict) -> dict:
            shape = case.shape
            if edge_bytes(shape, torch.float64) > env.gate_budget_bytes():
                per_video = edge_bytes(shape.scaled_to(shape.T), torch.float64)
                shape = shape.scaled_to(shape.T * max(1, env.gate_budget_bytes() // per_video))
                gx, gg = model_inputs(shape, case.dtype, env.device, case.seed)
                result = make_step(model, forward, gx, gg)()
            else:
                gx, gg = x, g

            def oracle():
                # float64: the oracle; the case's dtype: PyTorch's own error (gate.compare)
                ref = build("reference", shape, state, torch.float64, env.device)
                ref_step = make_step(ref, ref, gx.double(), gg.double())
                out64, flops = counted_flops(ref_step)
                ref64 = {k: v.detach() for k, v in out64.items()}
                del ref, ref_step
                same = build("reference", shape, state, case.dtype, env.device)
                return ref64, {k: v.detach() for k, v in make_step(same, same, gx, gg)().items()}, flops

            key = ("model", shape.case_id, case.dtype, case.seed)
            ref, same, flops = env.cached(key, oracle)
            # FLOPs are linear in the number of graphs: scale the gate's count to the case.
            flop_box["flops"] = flops * case.shape.G // shape.G
            out = check(result, ref, tol, f"{case.provider.name} on {case.group}", same)
            out["gate_case"] = shape.case_id
            return out

        info["flops_source"] = "torch.utils.flop_counter on the float64 reference model's step"
        measure(benchmark, env, info, case.dtype, step, gate, lambda: dict(flop_box))

    run_case(benchmark, request, env, info, body)
