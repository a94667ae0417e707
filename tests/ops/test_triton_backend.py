"""The ``triton`` backend of ``message_attention``: kernels against the reference.

Without a CUDA GPU these tests run Triton's CPU interpreter: this module sets
``TRITON_INTERPRET=1`` before anything creates the Triton kernels (they are created when
the backend is first used, never by ``import rstg_fast``). With a GPU the same tests run on
CUDA tensors, plus the GPU-only ones at the end (canonical shapes, poisoned outputs, TF32).

Tolerances: the forward and the one-layer gradients follow the shared rule of
``rstg_testing.assert_close`` (2x the reference's own same-dtype error + floor). Two
deliberate, FlashAttention-style differences from the reference are accounted for exactly:
(1) for two send layers in float16/bfloat16 the kernels round ``h`` to the input dtype
before the ``W2`` product (tensor-core operands), and a ReLU kink of ``z = W2 h + b2`` that
flips under that rounding changes a gradient discontinuously, so those gradients are
compared with a float64 oracle of the rounded function (straight-through rounding of the
inputs and of ``h``) within the dtype floor alone; (2) ``Delta = rowsum(dO * O)`` uses the
stored, rounded ``O``, whose exact effect on ``dQ``/``dK`` (``delta_correction``) is added to
the oracle. Both oracles live in ma_oracles.py, shared with the cuda backend's tests.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys

import pytest
import torch

if importlib.util.find_spec("triton") is None:  # not imported here: see SET_INTERPRET
    pytest.skip(reason="triton is not installed (pip install triton)", allow_module_level=True)

# Without a GPU the kernels (and triton.language's own jit functions, created when triton is
# first imported) must be created in interpreter mode: TRITON_INTERPRET=1 is set for that
# import and then taken away again, so that test modules collected after this one do not see
# the triton backend as usable on CPU; the `interpreter` fixture puts it back while this
# module's tests run.
SET_INTERPRET = not torch.cuda.is_available() and "TRITON_INTERPRET" not in os.environ
if SET_INTERPRET:
    if "triton" in sys.modules:
        raise RuntimeError(
            "triton was imported before tests/ops/test_triton_backend.py could select its CPU "
            "interpreter; run pytest with TRITON_INTERPRET=1 set in the environment"
        )
    os.environ["TRITON_INTERPRET"] = "1"
import rstg_fast.ops.backends.triton as triton_backend  # noqa: E402 - creates the kernels

if SET_INTERPRET:
    del os.environ["TRITON_INTERPRET"]

from ma_oracles import delta_correction, rounded_oracle  # noqa: E402
from rstg_testing import (  # noqa: E402
    TOLERANCE_FLOOR,
    assert_close,
    case_inputs,
    child_pythonpath,
    deterministic_algorithms,
    minus_inf_scores_case,
    op_inputs,
    random_csr,
)

from rstg_fast.graph import grid_graph  # noqa: E402
from rstg_fast.ops import message_attention  # noqa: E402
from rstg_fast.ops.backends.cuda import plan as cuda_plan  # noqa: E402
from rstg_fast.ops.backends.triton import plan as triton_plan  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
INTERPRETED = triton_backend.configs.INTERPRETED
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# name: (G, N, Hd, A, D, heads, max_degree, skewed_row); N None = the default 14-node graph.
# Sizes cross the interpreter's tiles (BG 4, BE 8, BD 32, BK 32): G = 5, Hd = 40, D / heads
# = 34; "odd-split" has a row of 36 sources, above the 32-edge chunk, so it is split and merged.
CASES = {
    "paper-graph": (3, None, 16, 8, 12, 1, None, None),
    "odd-split": (5, 13, 40, 8, 22, 2, 9, 3),
    "h4-one-layer": (2, 9, 136, 8, None, 4, 4, None),
    "N1": (2, 1, 8, 4, 8, 1, 1, None),
}
HALF_CASES = ("paper-graph", "odd-split")


@pytest.fixture(scope="module", autouse=True)
def interpreter():
    """TRITON_INTERPRET=1 while this module's tests run (see SET_INTERPRET above)."""
    if SET_INTERPRET:
        os.environ["TRITON_INTERPRET"] = "1"
    yield
    if SET_INTERPRET:
        os.environ.pop("TRITON_INTERPRET", None)


def run(x, indptr, indices, heads, backend, dO, fn=None):
    leaves = {k: (v.detach().requires_grad_(True) if v is not None else None) for k, v in x.items()}
    present = [k for k, v in leaves.items() if v is not None]
    if fn is None:
        O = message_attention(**leaves, indptr=indptr, indices=indices, heads=heads, backend=backend)
    else:
        O = fn(leaves)
    grads = torch.autograd.grad(O, [leaves[k] for k in present], dO.to(O.dtype))
    return O, dict(zip(present, grads, strict=True))


def check_against_reference(x64, indptr, indices, heads, dtype, dO, label):
    """triton in ``dtype`` vs the float64 reference: O and every gradient (module docstring)."""
    low = {k: (v.to(dtype) if v is not None else None) for k, v in x64.items()}

    oracle = run(x64, indptr, indices, heads, "reference", dO)
    own = run(low, indptr, indices, heads, "reference", dO) if dtype != torch.float64 else None
    got = run(low, indptr, indices, heads, "triton", dO)
    assert got[0].dtype == dtype
    assert_close(got[0], oracle[0], own[0] if own else None, f"{label}: O")

    # Half inputs: the kernels' tl.dot operands are in the input dtype (bfloat16 only on
    # the GPU: the interpreter widens it to float32), see the module docstring.
    rounded = dtype == torch.float16 or (dtype == torch.bfloat16 and not INTERPRETED)
    if x64["W2"] is not None and rounded:
        scale = 1 / math.sqrt(x64["Q"].shape[2] // heads)
        fn = lambda xs: rounded_oracle(  # noqa: E731
            *xs.values(), indptr, indices, heads, scale, input_dtype=dtype, h_dtype=dtype
        )[0]
        oracle = run(x64, indptr, indices, heads, None, dO, fn=fn)
        own = None
    zero = {k: not g.any() for k, g in oracle[1].items()}  # e.g. dQ, dK of a one-node graph
    if dtype != torch.float64:
        scale = 1 / math.sqrt(x64["Q"].shape[2] // heads)
        fixes = delta_correction(x64["Q"], x64["K"], indptr, indices, heads, scale, dO, oracle[0], got[0])
        for k, fix in fixes.items():
            oracle[1][k] = oracle[1][k] + fix
    for k, grad in got[1].items():
        assert grad.dtype == dtype
        if zero[k]:  # zero up to rounding; the relative rule has no scale for it
            assert float(grad.abs().max()) <= TOLERANCE_FLOOR[dtype], f"{label}: d{k} should be 0"
            continue
        assert_close(grad, oracle[1][k], own[1][k] if own else None, f"{label}: d{k}")


def dtype_cases():
    for name in CASES:
        for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
            if dtype in (torch.float16, torch.bfloat16) and name not in HALF_CASES:
                continue
            yield pytest.param(name, dtype, id=f"{name}-{str(dtype)[6:]}")


@pytest.mark.parametrize("case,dtype", list(dtype_cases()))
def test_forward_and_gradients_match_reference(case, dtype, poisoned):
    """Outputs and every gradient; buffers start as NaN (``poisoned``, tests/conftest.py), so an element a kernel
    fails to write shows up as a non-finite mismatch."""
    gen = torch.Generator().manual_seed(sum(map(ord, case)) + 7 * len(str(dtype)))
    x64, indptr, indices, heads = case_inputs(CASES[case], gen, DEVICE)
    D = x64["W2"].shape[0] if x64["W2"] is not None else x64["S"].shape[2]
    dO = torch.randn(x64["S"].shape[0], x64["S"].shape[1], D, generator=gen, dtype=torch.float64).to(DEVICE)
    check_against_reference(x64, indptr, indices, heads, dtype, dO, case)


def test_split_rows_match_unsplit_and_deterministic_path_is_bitwise_stable():
    """Tiny chunks (every row of more than 5 edges split and merged) give the unsplit result;
    the deterministic two-pass backward agrees with the atomic one and repeats bitwise."""
    from rstg_fast.ops.backends.triton.launch_backward import backward, backward_with_plans
    from rstg_fast.ops.backends.triton.launch_forward import forward_with_plan

    gen = torch.Generator().manual_seed(5)
    x, indptr, indices, heads = case_inputs(CASES["paper-graph"], gen, DEVICE)
    args = (*x.values(), indices)
    split = triton_plan.build_plan(indptr, chunk=5)
    whole = triton_plan.build_plan(indptr, chunk=0)
    assert split.num_slots > 0 and whole.num_slots == 0
    O1, lse1 = forward_with_plan(*args, split, heads, 0.6)
    O0, lse0 = forward_with_plan(*args, whole, heads, 0.6)
    torch.testing.assert_close(O1, O0)
    torch.testing.assert_close(lse1, lse0)

    dO = torch.randn(O0.shape, generator=gen, dtype=O0.dtype).to(DEVICE)
    g_split = backward_with_plans(dO, *x.values(), indices, O0, lse0, heads, 0.6, split)
    with deterministic_algorithms(True):
        det = [backward(dO, *x.values(), indptr, indices, O0, lse0, heads, 0.6) for _ in range(2)]
    for a, b, c in zip(det[0], det[1], g_split, strict=True):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c)


def test_kernel_float_arguments_are_exact_in_float32(monkeypatch):
    """Compiled Triton passes a Python float kernel argument as float32 (the interpreter keeps
    it float64), so a float argument that is not exactly a float32 silently loses precision on
    the GPU only: the score scale did, so float64 inputs got float32-rounded scores there.
    Every launch (forward, merge of split rows, backward, dW2) is recorded here; every float
    argument must be exactly a float32 (the scale now reaches the kernels as a tensor)."""
    import numpy as np

    from rstg_fast.ops.backends.triton import launch_backward, launch_forward

    launches, floats = [], []

    class Recorder:
        def __init__(self, name, kernel):
            self.name, self.kernel = name, kernel

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                launches.append(self.name)
                floats.extend((self.name, a) for a in (*args, *kwargs.values()) if isinstance(a, float))
                return self.kernel[grid](*args, **kwargs)

            return launch

    kernels = {
        launch_forward: ("_forward_kernel", "_merge_kernel"),
        launch_backward: ("_backward_kernel", "_weight_grad_kernel"),
    }
    for module, names in kernels.items():
        for name in names:
            monkeypatch.setattr(module, name, Recorder(name, getattr(module, name)))
    gen = torch.Generator().manual_seed(13)
    x, indptr, indices, heads = case_inputs(CASES["odd-split"], gen, DEVICE)  # a split row: merges too
    leaves = {k: v.requires_grad_(True) for k, v in x.items()}
    O = message_attention(**leaves, indptr=indptr, indices=indices, heads=heads, scale=1 / 3, backend="triton")
    O.backward(torch.randn(O.shape, generator=gen, dtype=O.dtype).to(DEVICE))
    assert set(launches) == {name for names in kernels.values() for name in names}, launches
    inexact = [(name, v) for name, v in floats if float(np.float32(v)) != v]
    assert not inexact, f"float arguments a GPU launch would round to float32: {inexact}"


def test_graph_without_edges():
    x = op_inputs(2, 4, 6, 4, 6, dtype=torch.float32, generator=torch.Generator().manual_seed(3), device=DEVICE)
    indptr = torch.zeros(5, dtype=torch.int64, device=DEVICE)
    indices = torch.zeros(0, dtype=torch.int64, device=DEVICE)
    leaves = {k: v.requires_grad_(True) for k, v in x.items()}
    O, lse = message_attention(**leaves, indptr=indptr, indices=indices, backend="triton", return_lse=True)
    assert torch.equal(O, torch.zeros_like(O)) and torch.all(lse == -math.inf)
    grads = torch.autograd.grad(O.sum(), list(leaves.values()))
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_plan_covers_every_edge_once_longest_first_and_is_cached():
    gen = torch.Generator().manual_seed(6)
    indptr, indices = random_csr(20, 6, generator=gen, skewed_row=4)  # row 4: 24 sources
    plan = triton_plan.get_plan(indptr, indices, chunk=8)
    assert triton_plan.get_plan(indptr, indices, chunk=8) is plan
    items = plan.items.tolist()
    lengths = [end - start for _, start, end, _ in items]
    assert lengths == sorted(lengths, reverse=True) and max(lengths) <= 8
    covered = sorted((start, end) for _, start, end, _ in items if end > start)
    flat = [e for start, end in covered for e in range(start, end)]
    assert flat == list(range(indices.numel()))
    assert sorted({row for row, *_ in items}) == list(range(20))  # empty rows too
    assert plan.merges.tolist() == [[4, 0, 3]]  # 24 edges -> three chunks of 8, slots 0..2
    indices.add_(0)  # an in-place edit bumps the version: the schedule is rebuilt
    assert triton_plan.get_plan(indptr, indices, chunk=8) is not plan
    assert triton_plan.default_chunk(1039, 17206) == 64 and triton_plan.default_chunk(14, 90) == 32


def test_cuda_and_triton_pack_the_same_split():
    gen = torch.Generator().manual_seed(3)
    indptr, indices = random_csr(23, 50, generator=gen, skewed_row=7)
    cuda = cuda_plan.DevicePlan(indptr.numpy(), indices.numpy(), torch.device("cpu"))
    triton = triton_plan.build_plan(indptr, chunk=cuda_plan.limits()["chunk"])
    as_rows = lambda plan: sorted(map(tuple, plan))  # noqa: E731 - local shorthand
    fields = ("item_node", "item_begin", "item_end", "item_slot")
    assert as_rows(triton.items.tolist()) == as_rows(zip(*(cuda.tensors[f].tolist() for f in fields), strict=True))
    assert triton.num_slots == cuda.slots > 0


def test_unavailable_without_interpreter_and_import_stays_light():
    """Without TRITON_INTERPRET=1 the backend refuses CPU tensors with a clear reason, and
    ``import rstg_fast`` does not import triton."""
    code = (
        "import sys, torch, rstg_fast\n"
        "assert 'triton' not in sys.modules, 'import rstg_fast imported triton'\n"
        "from rstg_fast.ops import backends, message_attention\n"
        "why = backends.BACKENDS['triton'].unavailable(torch.device('cpu'))\n"
        "assert 'TRITON_INTERPRET=1' in why, why\n"
        "x = [torch.randn(1, 2, 4) for _ in range(4)]\n"
        "ip, ix = torch.tensor([0, 1, 2]), torch.tensor([1, 0])\n"
        "try:\n"
        "    message_attention(*x, None, None, ip, ix, backend='triton')\n"
        "except ValueError as e:\n"
        "    assert 'TRITON_INTERPRET=1' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = child_pythonpath()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.slow
def test_kernels_compile_for_sm90():
    """Triton + ptxas compile every kernel for sm_90 (no GPU needed): catches what the
    interpreter accepts but the GPU compiler does not (tl.dot sizes, layouts, dtypes)."""
    import triton

    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.exists(ptxas):
        pytest.skip(reason=f"this triton build has no NVIDIA backend with ptxas ({ptxas})")
    script = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "gpu", "check_triton.py")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # a real compiler
    env["PYTHONPATH"] = child_pythonpath()
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    cmd = [sys.executable, script, "--compile-only", "--first-only", "--widths", "64", "--dtypes", "bfloat16,float64"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if "REG:" in line]
    assert len(lines) == 2 * 4, out.stdout  # forward, backward x 2, weight_grad per dtype


# ---- GPU only ------------------------------------------------------------------------

# The canonical graphs (docs/design.md §5) with a small batch and the real widths.
CANONICAL = {
    "syncmnist": ((((3, 3), (2, 2), (1, 1)), 6, 6), 512),
    "paper": ((((3, 3), (2, 2), (1, 1)), 14, 14), 512),
    "dense": ((((14, 14), (7, 7), (3, 3), (1, 1)), 14, 14), 256),
    "huge": ((((28, 28), (14, 14), (7, 7), (3, 3), (1, 1)), 28, 28), 256),
}


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", list(CANONICAL))
@pytest.mark.parametrize("heads", [1, 4])
def test_gpu_canonical_shapes(shape, dtype, heads, poisoned):
    (scales, H, W), width = CANONICAL[shape]
    graph = grid_graph(scales, H, W)
    gen = torch.Generator().manual_seed(11)
    x64 = op_inputs(4, graph.num_nodes, width, width, width, dtype=torch.float64, generator=gen, device=DEVICE)
    indptr, indices = graph.indptr.to(DEVICE), graph.indices.to(DEVICE)
    dO = torch.randn(4, graph.num_nodes, width, generator=gen, dtype=torch.float64).to(DEVICE)
    check_against_reference(x64, indptr, indices, heads, dtype, dO, f"{shape} heads={heads}")


@needs_gpu
def test_gpu_tf32_follows_torch_setting():
    """float32 edge products use TF32 exactly when torch.backends.cuda.matmul.allow_tf32."""
    gen = torch.Generator().manual_seed(12)
    graph = grid_graph(((3, 3), (2, 2), (1, 1)), 14, 14)
    x = op_inputs(8, graph.num_nodes, 512, 64, 512, dtype=torch.float32, generator=gen, device=DEVICE)
    indptr, indices = graph.indptr.to(DEVICE), graph.indices.to(DEVICE)
    ref = message_attention(**x, indptr=indptr, indices=indices, backend="reference")
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        ieee = message_attention(**x, indptr=indptr, indices=indices, backend="triton")
        torch.backends.cuda.matmul.allow_tf32 = True
        tf32 = message_attention(**x, indptr=indptr, indices=indices, backend="triton")
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    scale = float(ref.abs().max())
    assert float((ieee - ref).abs().max()) <= TOLERANCE_FLOOR[torch.float32] * scale
    assert float((tf32 - ref).abs().max()) <= 5e-3 * scale  # TF32: 10-bit mantissa operands
    assert not torch.equal(tf32, ieee), "allow_tf32 changed nothing: the switch is not wired"


@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "deterministic"])
def test_minus_inf_scores_split_and_whole_rows_match_reference(deterministic):
    """A whole row whose scores are all -inf is NaN, as in the reference (exp(-inf - -inf)):
    the kernel's test for a row without edges (running sum 0) took it for one and wrote O = 0,
    lse = -inf. An all -inf chunk of a split row only weighs 0, and its row stays finite."""
    gen = torch.Generator().manual_seed(11)
    x, indptr, indices = minus_inf_scores_case(gen)
    x, indptr, indices = {k: v.to(DEVICE) for k, v in x.items()}, indptr.to(DEVICE), indices.to(DEVICE)
    assert triton_plan.get_plan(indptr, indices).num_slots > 0, "the hub must be split"
    dO = torch.randn(2, 41, 6, generator=gen, dtype=torch.float64).to(DEVICE)

    def both(backend):
        leaves = {k: v.clone().requires_grad_(True) for k, v in x.items()}
        O, lse = message_attention(**leaves, indptr=indptr, indices=indices, heads=2, backend=backend, return_lse=True)
        return O, lse, torch.autograd.grad(O, list(leaves.values()), dO)

    want = both("reference")
    assert want[1][0, 1, 0].isnan() and want[1][0, 0, 0].isfinite(), "the case must have both kinds of rows"
    with deterministic_algorithms(deterministic):
        got = both("triton")
    assert_close(got[0], want[0], None, "O")
    assert_close(got[1], want[1], None, "lse")
    for name, a, b in zip(x, got[2], want[2], strict=True):
        assert_close(a, b, None, f"d{name}")
