"""Benchmark of the fused op ``message_attention``: forward, and forward+backward.

Every provider (see ``benchkit.providers``) runs each case on the same random inputs:
``reference``, ``compile-reference``, ``pyg`` and every registered backend. A case is
gated on a float64 reference first (outputs, and all six gradients for ``fwdbwd``), on the
case's own inputs when the reference fits in memory, else on a scaled-down copy of the
shape; then its memory and time are measured (``benchkit.runner.measure``).
"""

from __future__ import annotations

import torch
from benchkit.cases import base_info
from benchkit.flops import op_flops
from benchkit.gate import check, tolerance
from benchkit.providers import build_op
from benchkit.runner import measure, run_case, skip_unrunnable
from benchkit.shapes import DIFF_INPUTS, Shape, make_op_inputs

ARGS = ("S", "R", "Q", "K", "W2", "b2", "indptr", "indices", "heads", "scale")
# Peak bytes of the edge-materialising implementations, in units of G * E * max(Hd, D)
# elements (measured on CPU: reference 7-8 forward, 10.5-12 forward+backward; PyG 8-9 and
# 12-14): a bound for any of them, and one for the reference alone (the gate's oracle).
EDGE_TENSORS_AT_PEAK = 16
REFERENCE_EDGE_TENSORS_AT_PEAK = 12


def edge_bytes(shape: Shape, dtype: torch.dtype, units: int = EDGE_TENSORS_AT_PEAK) -> int:
    """Predicted peak of a materialising implementation (the reference computes halves in float32)."""
    itemsize = max(torch.empty((), dtype=dtype).element_size(), 4)
    return units * shape.G * shape.graph().num_edges * shape.dim * itemsize


def inputs(shape: Shape, dtype: torch.dtype, device: str, seed: int, heads: int, mode: str):
    """Inputs of one case, the output gradient ``dO`` for ``fwdbwd``."""
    x = make_op_inputs(shape, dtype, device, seed, heads)
    if mode == "fwdbwd":
        for k in DIFF_INPUTS:
            x[k].requires_grad_(True)
    gen = torch.Generator().manual_seed(seed + 1)
    dO = torch.randn(shape.G, shape.graph().num_nodes, shape.dim, generator=gen, dtype=torch.float64).to(device, dtype)
    return x, dO


def make_call(fn, x: dict, mode: str, dO: torch.Tensor):
    """Zero-argument callable of one case; returns ``O`` (and ``dS`` .. ``db2`` for fwdbwd)."""
    args = [x[k] for k in ARGS]
    if mode == "fwd":

        def call():
            with torch.no_grad():
                return {"O": fn(*args)[0]}

        return call
    leaves = [x[k] for k in DIFF_INPUTS]

    def call():
        O = fn(*args)[0]
        grads = torch.autograd.grad(O, leaves, dO)
        return {"O": O, **{f"d{k}": g for k, g in zip(DIFF_INPUTS, grads, strict=True)}}

    return call


def reference_results(x: dict, mode: str, dO: torch.Tensor) -> tuple[dict, dict]:
    """The reference on exactly the values the case sees: in float64 (the oracle), and in
    the case's dtype (PyTorch's own error at that precision, see ``gate.compare``)."""
    from rstg_fast.ops.backends.reference import message_attention_reference

    def run(dtype):
        xs = {
            k: (v.detach().to(dtype).requires_grad_(mode == "fwdbwd") if k in DIFF_INPUTS else v) for k, v in x.items()
        }
        with torch.enable_grad():
            out = make_call(message_attention_reference, xs, mode, dO.to(dtype))()
        return {k: v.detach() for k, v in out.items()}

    return run(torch.float64), run(x["S"].dtype)


def gate(env, case, fn, x: dict, dO: torch.Tensor, result: dict) -> dict:
    """``result`` of ``fn`` on ``x`` against the float64 reference on the same inputs (cached
    per case, shared by its providers). When the oracle cannot run at this size, ``fn`` is
    gated on a copy of the shape with fewer graphs (same graph, widths, dtype)."""
    shape = case.shape
    oracle_bytes = edge_bytes(shape, torch.float64, REFERENCE_EDGE_TENSORS_AT_PEAK)
    if oracle_bytes > env.gate_budget_bytes():
        per_graph = edge_bytes(shape.scaled_to(1), torch.float64, REFERENCE_EDGE_TENSORS_AT_PEAK)
        shape = shape.scaled_to(max(1, env.gate_budget_bytes() // per_graph))
        x, dO = inputs(shape, case.dtype, env.device, case.seed, case.heads, case.mode)
        result = make_call(fn, x, case.mode, dO)()
    key = (shape.case_id, case.mode, case.dtype, case.heads, case.seed)
    ref, same = env.cached(key, lambda: reference_results(x, case.mode, dO))
    out = check(result, ref, tolerance(case.dtype, env.device, "op"), f"{case.provider.name} on {case.group}", same)
    out["gate_case"] = shape.case_id
    return out


def test_message_attention(benchmark, request, bench_env, op_case):
    case, env = op_case, bench_env
    benchmark.group = case.group
    info = base_info(case, env)
    skip_unrunnable(env, request, benchmark, info, case, edge_bytes(case.shape, case.dtype))

    def body():
        fn = build_op(case.provider)
        x, dO = inputs(case.shape, case.dtype, env.device, case.seed, case.heads, case.mode)
        call = make_call(fn, x, case.mode, dO)
        g, n = case.shape.G, case.shape.graph()
        flops = op_flops(g, n.num_edges, case.shape.dim, case.shape.dim, case.shape.dim, 2, case.mode)
        measure(benchmark, env, info, case.dtype, call, lambda result: gate(env, case, fn, x, dO, result), flops)

    run_case(benchmark, request, env, info, body)
