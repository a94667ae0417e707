"""The ``cuda`` backend of message_attention (csrc/cuda/message_attention_*.cu).

Three parts:
- CPU tests that always run: the host work plan, the launch limits (Python and the C++
  launchers, which must reject before touching CUDA), the backend's registration and
  build_info.
- The kernels themselves, executed on the CPU through the emulation of tests/cuda_emu (the
  same .cu source compiled by g++ against a small CUDA/WMMA emulation; needs g++, the CUDA
  headers and pybind11, no GPU; skipped, saying which is missing, without them, and a failure
  instead under RSTG_REQUIRE_CUDA_EMU=1, as .ci/run sets): forward and every gradient against
  the float64 oracle, all dtypes, both determinism modes, split rows, poisoned buffers.
- GPU tests (skipped without a CUDA device and a CUDA build): forward and every gradient
  against a float64 oracle in every dtype, heads 1/2/4, one and two send layers, empty rows,
  skewed (split) rows, odd sizes, NaN-poisoned buffers, opcheck, bitwise determinism.

The 16-bit kernels feed the tensor cores ``h = relu(S + R)`` rounded to the input dtype (as
any MMA on 16-bit operands must), so the ReLU mask of ``z = W2 h + b2`` can flip for a ``z``
within rounding of 0 and move a gradient by a whole term. The oracle therefore rounds ``h``
to the dtype too (straight-through in backward) and is otherwise float64, and the effect of
taking ``Delta`` from the stored 16-bit ``O`` on dQ, dK is added to it (both in ma_oracles.py,
shared with the triton backend's tests); the tolerance is the project's one rule
(tests/rstg_testing.py) against the same-dtype reference's own error.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import shutil
import subprocess
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from ma_oracles import (
    assert_nonfinite_like_reference,
    delta_correction,
    nonfinite_case,
    nonfinite_params,
    rounded_oracle,
)
from rstg_testing import (
    NONFINITE,
    assert_close,
    case_inputs,
    deterministic_algorithms,
    minus_inf_scores_case,
    op_inputs,
    random_csr,
)

from rstg_fast._ext import build_info, extension
from rstg_fast.graph import grid_graph
from rstg_fast.ops import backends, message_attention
from rstg_fast.ops._graph_plan import transpose_csr
from rstg_fast.ops.backends.cuda import launch as cuda_launch
from rstg_fast.ops.backends.cuda import plan as cuda_plan
from rstg_fast.ops.backends.reference import message_attention_reference

HAS_GPU = torch.cuda.is_available() and build_info()["cuda"]
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU and a CUDA build")
needs_cuda_build = pytest.mark.skipif(not build_info()["cuda"], reason="needs a CUDA build of rstg_fast._C")
LOW = (torch.float32, torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------- CPU: plan


def host_plan(indptr, other) -> types.SimpleNamespace:
    """The packed plan of a CSR (``cuda_plan.DevicePlan`` on the CPU) as numpy arrays."""
    plan = cuda_plan.DevicePlan(np.asarray(indptr), np.asarray(other), torch.device("cpu"))
    return types.SimpleNamespace(slots=plan.slots, **{f: t.numpy() for f, t in plan.tensors.items()})


def _plan_ok(indptr: np.ndarray, other: np.ndarray, plan: types.SimpleNamespace) -> None:
    n = indptr.size - 1
    sizes = plan.item_end - plan.item_begin
    assert sizes.min(initial=0) >= 0 and sizes.max(initial=0) <= cuda_plan.limits()["chunk"]
    assert np.array_equal(plan.other, other.astype(np.int32))
    for u in range(n):
        mine = np.flatnonzero(plan.item_node == u)
        assert mine.size >= 1, f"node {u} has no item (its outputs would stay unwritten)"
        assert np.all(np.diff(mine) == 1), "items of a node are consecutive"
        assert plan.item_begin[mine[0]] == indptr[u] and plan.item_end[mine[-1]] == indptr[u + 1]
        assert np.array_equal(plan.item_begin[mine[1:]], plan.item_end[mine[:-1]]), "items tile the row"
        if mine.size > 1:
            assert sizes[mine].max() - sizes[mine].min() <= 1, "split rows are balanced"
            s = int(np.flatnonzero(plan.split_node == u)[0])
            assert np.array_equal(plan.item_slot[mine], np.arange(plan.split_ptr[s], plan.split_ptr[s + 1]))
        else:
            assert plan.item_slot[mine[0]] == -1 and u not in plan.split_node
    assert plan.slots == int((plan.item_slot >= 0).sum())


@pytest.mark.parametrize("N,max_degree,skewed", [(1, 3, None), (13, 5, 3), (59, 40, 7), (7, 0, None)], ids=str)
def test_plan_cuts_rows_into_balanced_items(N, max_degree, skewed):
    gen = torch.Generator().manual_seed(N)
    indptr, indices = random_csr(N, max(max_degree, 1), generator=gen, skewed_row=skewed)
    if max_degree == 0:
        indptr, indices = torch.zeros(N + 1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    _plan_ok(indptr.numpy(), indices.numpy(), host_plan(indptr, indices))
    t_ip, t_dst = (t.numpy() for t in transpose_csr(indptr, indices))
    _plan_ok(t_ip, t_dst, host_plan(t_ip, t_dst))


def test_plan_splits_the_hub_of_huge():
    g = grid_graph(((28, 28), (14, 14), (7, 7), (3, 3), (1, 1)), 28, 28)
    plan = host_plan(g.indptr, g.indices)
    hub = g.num_nodes - 1  # the 1x1 node: every other node is a source
    _plan_ok(g.indptr.numpy(), g.indices.numpy(), plan)
    chunk = cuda_plan.limits()["chunk"]
    assert hub in plan.split_node and (plan.item_node == hub).sum() == math.ceil((g.num_nodes - 1) / chunk)


def test_plan_is_cached_per_graph_and_sees_in_place_edits():
    gen = torch.Generator().manual_seed(9)
    indptr, indices = random_csr(9, 40, generator=gen, skewed_row=2)
    first = cuda_plan.plan_for(indptr, indices, by_source=False)
    assert cuda_plan.plan_for(indptr, indices, by_source=False) is first
    assert first.slots > 0 and first.items == len(first.tensors["item_node"])
    by_source = cuda_plan.plan_for(indptr, indices, by_source=True)
    _, t_dst = transpose_csr(indptr, indices)
    assert by_source is not first and by_source.tensors["other"].tolist() == t_dst.tolist()
    indices[0] = (indices[0] + 1) % 9  # an in-place edit must invalidate the cached plan
    edited = cuda_plan.plan_for(indptr, indices, by_source=False)
    assert edited is not first and int(edited.tensors["other"][0]) == int(indices[0])


# ----------------------------------------------------------------------------- CPU: limits


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("shape", ["syncmnist", "paper", "dense"])
def test_canonical_widths_are_within_the_launch_limits(dtype, shape):
    width = {"syncmnist": 512, "paper": 512, "dense": 256}[shape]
    es = torch.empty(0, dtype=dtype).element_size()
    for heads in (1, 2, 4):
        cuda_plan.check_launch_limits(320, 1039, 17206, width, width, width, heads, es, True)
        cuda_plan.check_launch_limits(320, 1039, 17206, width, width, width, heads, es, False)


@pytest.mark.parametrize(
    "dims,match",
    [
        ((4, 14, 90, 4096, 512, 512, 1), "shared memory"),
        ((4, 14, 90, 512, 8192, 512, 1), "shared memory"),
        ((4, 14, 90, 512, 512, 16384, 1), "shared memory"),
        ((4, 14, 90, 512, 512, 512, 512), "shared memory"),
        ((4, 2**31, 90, 64, 64, 64, 1), "below 2"),
        ((0, 14, 90, 64, 64, 64, 1), "positive"),
    ],
    ids=["Hd", "D", "A", "heads", "N", "G0"],
)
def test_python_limit_check_raises_value_error(dims, match):
    with pytest.raises(ValueError, match=match):
        cuda_plan.check_launch_limits(*dims, 2, True)


def _smem_boundary(es: int, has_w2: bool) -> int:
    """Largest width W (Hd = D = A = W, multiple of 32) the Python mirror accepts."""
    w = 32
    while (
        cuda_plan.smem_bytes(True, es, w + 32, w + 32, w + 32, 1, has_w2) <= cuda_plan.limits()["smem_cap"]
        and cuda_plan.smem_bytes(False, es, w + 32, w + 32, w + 32, 1, has_w2) <= cuda_plan.limits()["smem_cap"]
    ):
        w += 32
    return w


@pytest.mark.parametrize("es", [4, 2], ids=["32-bit", "16-bit"])
@pytest.mark.parametrize("has_w2", [True, False], ids=["two-layer", "one-layer"])
def test_limits_and_layout_come_from_the_cpp_header(es, has_w2):
    """No constant of csrc/cuda/ma_layout.h is copied in Python: the module exposes them on every
    build (this one may have no CUDA), and its limit check agrees with its layout at the edge."""
    assert cuda_plan.limits() == {
        "threads": 128, "tile_n": 64, "tile_k": 32, "graphs_per_task": 8, "chunk": 32, "pad_bytes": 16,
        "smem_cap": 160 * 1024,
    }  # fmt: skip
    W = _smem_boundary(es, has_w2)
    cuda_plan.check_launch_limits(4, 14, 90, W, W, W, 1, es, has_w2)
    with pytest.raises(ValueError, match=f"{8 * es}-bit"):
        cuda_plan.check_launch_limits(4, 14, 90, W + 32, W + 32, W + 32, 1, es, has_w2)
    assert cuda_plan.pad32(W + 1) == W + 32


def _launcher_args(dtype_code: int, W: int, has_w2: bool) -> dict[str, int]:
    args = {"dtype": dtype_code, "G": 2, "N": 3, "E": 0, "Hd": W, "D": W, "A": W, "heads": 1, "scale": 1.0}
    args.update({"stream": 0, "deterministic": 0, "blocks": 1})
    pointers = "S R Q K b2 O lse o_part lse_part dO delta dS dR dQ dK dW2 db2 acc_dS acc_dK w2_slots b2_slots"
    args.update({name: 0 for name in (pointers + " d_part_h d_part_qk s_part_h s_part_qk").split()})
    for p in ("d_", "s_"):
        args.update(
            {p + f: 0 for f in ("item_node", "item_begin", "item_end", "item_slot", "other", "split_node", "split_ptr")}
        )
        args.update({p + "items": 3, p + "splits": 0, p + "slots": 0})
    args["W2"] = 256 if has_w2 else 0  # two send layers: a non-null W2 (never read before the failing CUDA call)
    return args


@needs_cuda_build
@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("dtype_code,es", [(0, 4), (1, 2), (2, 2)], ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("has_w2", [True, False], ids=["two-layer", "one-layer"])
def test_cpp_launcher_rejects_over_limit_shapes_before_any_cuda_call(direction, dtype_code, es, has_w2):
    """The C++ check (make_layout) agrees with the Python mirror at the boundary.

    Over the limit: ValueError from the launcher itself. At the limit, on a machine with no
    GPU, the launcher gets past its checks and fails at its first CUDA call (RuntimeError),
    which proves it did not reject a shape the Python side accepts.
    """
    ext = extension()
    entry = getattr(ext, f"message_attention_{direction}_cuda")
    W = _smem_boundary(es, has_w2)
    with pytest.raises(ValueError, match="shared memory"):
        entry(_launcher_args(dtype_code, W + 32, has_w2))
    with pytest.raises(ValueError, match="missing argument 'dtype'"):
        entry({})
    with pytest.raises(ValueError, match="dtype code"):
        entry(_launcher_args(7, 32, has_w2))
    if not torch.cuda.is_available():  # with a GPU, null pointers must never reach a launch
        with pytest.raises(RuntimeError, match="CUDA error"):
            entry(_launcher_args(dtype_code, W, has_w2))


def test_registration_and_build_info():
    spec = backends.BACKENDS["cuda"]
    assert spec.devices == ("cuda",) and set(spec.dtypes) == set(LOW)
    assert "cuda" not in backends.AUTO_ORDER["cuda"], "auto must not pick cuda before it is measured on a GPU"
    info = build_info()
    if info["cuda"]:
        assert {80, 90} <= set(info["cuda_archs"])
        assert spec.unavailable(torch.device("cpu")) is None
    else:
        assert (
            spec.unavailable(torch.device("cuda"))
            == "rstg_fast was built without CUDA (nvcc not found or RSTG_FAST_CUDA=0)"
        )
    x = op_inputs(1, 3, 4, 4, None, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    ip, ix = random_csr(3, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="backend 'cuda'"):
        message_attention(**x, indptr=ip, indices=ix, backend="cuda")  # CPU tensors


# ----------------------------------------------------------------------------- oracle and helpers


def oracle_and_grads(x64, dtype, indptr, indices, heads, scale, dO):
    """The kernel's float64 oracle (``rounded_oracle`` on the inputs rounded to ``dtype``, ``h``
    rounded like the tensor-core operands) and its gradients for upstream gradient ``dO``:
    ``(O64, lse64, {name: grad})``."""
    leaves = {k: (v.to(dtype).double().requires_grad_(True) if v is not None else None) for k, v in x64.items()}
    O64, lse64 = rounded_oracle(*leaves.values(), indptr, indices, heads, scale, h_dtype=dtype)
    present = [k for k, v in leaves.items() if v is not None]
    return O64, lse64, dict(zip(present, torch.autograd.grad(O64, [leaves[k] for k in present], dO), strict=True))


def _run(x, indptr, indices, heads, backend, dO):
    leaves = {k: (v.detach().requires_grad_(True) if v is not None else None) for k, v in x.items()}
    O, lse = message_attention(**leaves, indptr=indptr, indices=indices, heads=heads, backend=backend, return_lse=True)
    present = [k for k, v in leaves.items() if v is not None]
    grads = torch.autograd.grad(O, [leaves[k] for k in present], dO.to(O.dtype))
    return O, lse, dict(zip(present, grads, strict=True))


# ----------------------------------------------------------------------------- CPU: emulated kernels

ROOT = Path(__file__).resolve().parents[2]
EMU_SOURCES = [
    *sorted((ROOT / "csrc" / "cuda").glob("*")),
    ROOT / "csrc" / "message_attention_args.h",
    ROOT / "python_bindings" / "ma_args.h",
    *sorted((ROOT / "tests" / "cuda_emu").glob("*")),
]
CUDA_INCLUDE = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"


def emulation_missing(cuda_include: Path = CUDA_INCLUDE) -> str | None:
    """What the emulation build (tests/cuda_emu/build.sh) lacks on this machine, or None."""
    cxx = os.environ.get("CXX", "g++")
    missing = []
    if shutil.which(cxx) is None:
        missing.append(f"the C++20 compiler {cxx!r} (CXX) is not on PATH")
    if not (cuda_include / "cuda_bf16.h").exists():
        missing.append(f"the CUDA headers are not at {cuda_include} (no cuda_bf16.h; set CUDA_HOME)")
    if importlib.util.find_spec("pybind11") is None:
        missing.append("pybind11 is not installed (it is in the test extra: pip install '.[test]')")
    return "; ".join(missing) or None


def require_emulation(cuda_include: Path = CUDA_INCLUDE) -> None:
    """Skip, saying what is missing, when the emulation cannot be built here; fail instead
    under RSTG_REQUIRE_CUDA_EMU=1 (.ci/run sets it where nvcc, so the headers, is present)."""
    missing = emulation_missing(cuda_include)
    if missing is None:
        return
    message = f"the CUDA emulation cannot be built: {missing}"
    if os.environ.get("RSTG_REQUIRE_CUDA_EMU") == "1":
        pytest.fail(f"{message} (RSTG_REQUIRE_CUDA_EMU=1 requires the emulated kernel tests to run)", pytrace=False)
    pytest.skip(reason=message)


def test_missing_emulation_is_a_precise_skip_or_required_failure(monkeypatch, tmp_path):
    monkeypatch.delenv("RSTG_REQUIRE_CUDA_EMU", raising=False)
    with pytest.raises(pytest.skip.Exception, match=rf"CUDA headers are not at {tmp_path}"):
        require_emulation(tmp_path)
    monkeypatch.setenv("RSTG_REQUIRE_CUDA_EMU", "1")
    with pytest.raises(pytest.fail.Exception, match="RSTG_REQUIRE_CUDA_EMU=1"):
        require_emulation(tmp_path)


@pytest.fixture(scope="session")
def emulated_extension():
    """The kernels compiled against tests/cuda_emu/cuda_emulation.h (built once, cached in build/)."""
    require_emulation()
    out = ROOT / "build" / "cuda_emu"
    built = sorted(out.glob("rstg_fast_cuda_emu*.so"))
    newest_source = max(p.stat().st_mtime for p in EMU_SOURCES)
    if not built or built[0].stat().st_mtime < newest_source:
        env = {**os.environ, "PYTHON": sys.executable}
        subprocess.run(["bash", str(ROOT / "tests" / "cuda_emu" / "build.sh"), str(out)], check=True, env=env)
        built = sorted(out.glob("rstg_fast_cuda_emu*.so"))
    spec = importlib.util.spec_from_file_location("rstg_fast_cuda_emu", built[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def emulated_cuda(monkeypatch, emulated_extension):
    """rstg_fast.ops.backends.cuda's launchers, running the kernels in the emulation on CPU tensors."""
    monkeypatch.setattr(cuda_launch, "require_extension", lambda: emulated_extension)
    monkeypatch.setattr(cuda_launch, "_multiprocessors", lambda device: 1)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: types.SimpleNamespace(cuda_stream=0))
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    return cuda_launch


EMU_CASES = {
    # name: (G, N, Hd, A, D, heads, max_degree, skewed_row): small, the emulation is slow
    "split-h2": (3, 6, 40, 8, 24, 2, 10, 1),
    "odd-groups-h1": (9, 5, 19, 4, 13, 1, 3, None),
    "one-layer-split-h2": (2, 5, 24, 4, None, 2, 9, 0),
}


def emulated_outputs_and_grads(emulated_cuda, x, indptr, indices, heads, scale, dO):
    """``(O, lse, {input: gradient})`` of the emulated kernels, for the inputs present."""
    O, lse = emulated_cuda.forward(*x.values(), indptr, indices, heads, scale)
    grads = emulated_cuda.backward(dO, *x.values(), indptr, indices, O, lse, heads, scale)
    return O, lse, {k: g for k, g in zip(x, grads, strict=True) if x[k] is not None}


@pytest.mark.parametrize("name,value,whole_row,one_layer",
                         [p.values[1:] for p in nonfinite_params(["cuda"])],
                         ids=[p.id.removeprefix("cuda-") for p in nonfinite_params(["cuda"])])  # fmt: skip
def test_emulated_nonfinite_inputs_propagate_like_the_reference(emulated_cuda, name, value, whole_row, one_layer):
    """The contract suite's non-finite cases (test_message_attention.py) on the kernels: NaN
    where the reference has NaN, +-inf where +-inf, close finite values elsewhere, in O, lse
    and every gradient. float32 runs 3xTF32, whose hi/lo split of an infinity made NaN."""
    case = nonfinite_case(name, value, whole_row, one_layer)
    got = emulated_outputs_and_grads(emulated_cuda, case["x"], case["indptr"], case["indices"], case["heads"],
                                     case["scale"], case["dO"])  # fmt: skip
    assert_nonfinite_like_reference(got, case, f"emulated cuda with {name} = {NONFINITE[value]} ({whole_row=})")


@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "deterministic"])
def test_emulated_minus_inf_scores_split_and_whole_rows_match_reference(emulated_cuda, deterministic):
    """A whole row whose scores are all -inf is NaN, as in the reference (exp(-inf - -inf)); an
    all -inf item of a split row only weighs 0 and its row stays finite."""
    gen = torch.Generator().manual_seed(11)
    x64, indptr, indices = minus_inf_scores_case(gen)
    assert host_plan(indptr, indices).slots > 0, "the hub must be split"
    x = {k: v.float() for k, v in x64.items()}
    dO = torch.randn(2, 41, 6, generator=gen, dtype=torch.float64).float()
    scale = 1 / math.sqrt(2)
    with deterministic_algorithms(deterministic):
        got = emulated_outputs_and_grads(emulated_cuda, x, indptr, indices, 2, scale, dO)
    leaves = {k: v.double().requires_grad_(True) for k, v in x.items()}
    want_O, want_lse = message_attention_reference(**leaves, indptr=indptr, indices=indices, heads=2, scale=scale)
    want = torch.autograd.grad(want_O, list(leaves.values()), dO.double())
    assert want_lse[0, 1, 0].isnan() and want_lse[0, 0, 0].isfinite(), "the case must have both kinds of rows"
    assert_close(got[0], want_O, None, "emulated O")
    assert_close(got[1], want_lse, None, "emulated lse")
    for name, w in zip(x, want, strict=True):
        assert_close(got[2][name], w, None, f"emulated d{name}")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("case", list(EMU_CASES))
@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "deterministic"])
def test_emulated_kernels_match_oracle(emulated_cuda, case, dtype, deterministic, poisoned):
    check_emulated_case(emulated_cuda, case, dtype, deterministic, zlib.crc32(f"{case}-{dtype}".encode()))


def check_emulated_case(emulated_cuda, case, dtype, deterministic, seed):
    G, N, Hd, A, D, heads, max_degree, skewed = EMU_CASES[case]
    gen = torch.Generator().manual_seed(seed)
    indptr, indices = random_csr(N, max_degree, generator=gen, skewed_row=skewed)
    if skewed is not None:
        assert host_plan(indptr, indices).slots > 0, "case must exercise split rows"
    x64 = op_inputs(G, N, Hd, A, D, dtype=torch.float64, generator=gen)
    scale = 1.0 / math.sqrt(A // heads)
    dO = torch.randn(G, N, D or Hd, generator=gen, dtype=torch.float64)

    # The oracle sees the inputs the kernel sees (rounded to dtype), in float64.
    O64, lse64, g64 = oracle_and_grads(x64, dtype, indptr, indices, heads, scale, dO)
    low = {k: (v.to(dtype) if v is not None else None) for k, v in x64.items()}
    ref = _run(low, indptr, indices, heads, "reference", dO)

    O, lse = emulated_cuda.forward(*low.values(), indptr, indices, heads, scale)
    with deterministic_algorithms(deterministic):
        grads = emulated_cuda.backward(dO.to(dtype), *low.values(), indptr, indices, O, lse, heads, scale)
    assert_close(O, O64, ref[0], f"emulated O [{case}]")
    assert_close(lse, lse64, ref[1], f"emulated lse [{case}]")
    corr = delta_correction(low["Q"].double(), low["K"].double(), indptr, indices, heads, scale, dO, O64, O)
    for name, got in zip(("S", "R", "Q", "K", "W2", "b2"), grads, strict=True):
        if name in g64:
            assert got.dtype == dtype
            want = g64[name] + corr[name] if name in corr else g64[name]
            assert_close(got, want, ref[2][name], f"emulated d{name} [{case}]")
        else:
            assert got is None


@pytest.mark.slow
def test_emulated_deterministic_backward_is_bitwise_reproducible(emulated_cuda):
    G, N, Hd, A, D, heads, max_degree, skewed = EMU_CASES["split-h2"]
    gen = torch.Generator().manual_seed(21)
    indptr, indices = random_csr(N, max_degree, generator=gen, skewed_row=skewed)
    x = op_inputs(G, N, Hd, A, D, dtype=torch.float16, generator=gen)
    O, lse = emulated_cuda.forward(*x.values(), indptr, indices, heads, 0.5)
    dO = torch.randn(O.shape, generator=gen).half()
    with deterministic_algorithms(True):
        runs = [emulated_cuda.backward(dO, *x.values(), indptr, indices, O, lse, heads, 0.5) for _ in range(2)]
    for name, a, b in zip(("dS", "dR", "dQ", "dK", "dW2", "db2"), *runs, strict=True):
        assert torch.equal(a, b), f"{name} differs between two deterministic runs"


# ----------------------------------------------------------------------------- GPU


GPU_CASES = {
    # name: (G, N, Hd, A, D, heads, max_degree, skewed_row)
    "grid-h1": (3, None, 64, 16, 64, 1, None, None),
    "N1": (2, 1, 8, 4, 8, 1, 1, None),
    "odd-h2": (9, 13, 40, 12, 58, 2, 5, 3),
    "skewed-h4": (11, 59, 59, 16, 112, 4, 12, 7),
    "split-odd": (3, 40, 111, 8, 59, 1, 20, 0),
    "one-layer-h4": (2, 9, 40, 8, None, 4, 4, None),
    "one-layer-skewed": (5, 30, 24, 6, None, 2, 10, 2),
}


@needs_gpu
@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("case", list(GPU_CASES))
@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "deterministic"])
def test_forward_and_gradients_match_oracle(case, dtype, deterministic, poisoned):
    gen = torch.Generator().manual_seed(zlib.crc32(f"{case}-{dtype}".encode()))
    x64, indptr, indices, heads = case_inputs(GPU_CASES[case], gen)
    G, N = x64["S"].shape[:2]
    D = x64["W2"].shape[0] if x64["W2"] is not None else x64["S"].shape[2]
    dO = torch.randn(G, N, D, generator=gen, dtype=torch.float64)
    scale = 1.0 / math.sqrt((x64["Q"].shape[-1]) // heads)

    # The oracle sees the inputs the kernel sees (rounded to dtype), in float64.
    O64, lse64, g64 = oracle_and_grads(x64, dtype, indptr, indices, heads, scale, dO)

    low = {k: (v.to(dtype) if v is not None else None) for k, v in x64.items()}
    ref = _run(low, indptr, indices, heads, "reference", dO)
    dev = {k: (v.cuda() if v is not None else None) for k, v in low.items()}
    with deterministic_algorithms(deterministic):
        O, lse, grads = _run(dev, indptr.cuda(), indices.cuda(), heads, "cuda", dO.cuda())
    assert O.dtype == dtype and lse.dtype == torch.float32
    assert_close(O, O64, ref[0], f"cuda O [{case}]")
    assert_close(lse, lse64, ref[1], f"cuda lse [{case}]")
    corr = delta_correction(low["Q"].double(), low["K"].double(), indptr, indices, heads, scale, dO, O64, O)
    for k in g64:
        assert grads[k].dtype == dtype
        want = g64[k] + corr[k] if k in corr else g64[k]
        assert_close(grads[k], want, ref[2][k], f"cuda d{k} [{case}]")


@needs_gpu
@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_deterministic_mode_is_bitwise_reproducible(dtype):
    gen = torch.Generator().manual_seed(11)
    x64, indptr, indices, heads = case_inputs(GPU_CASES["skewed-h4"], gen)
    x = {k: (v.to(dtype).cuda() if v is not None else None) for k, v in x64.items()}
    dO = torch.randn(x["S"].shape[0], x["S"].shape[1], x["W2"].shape[0], generator=gen).cuda()
    with deterministic_algorithms(True):
        first = _run(x, indptr.cuda(), indices.cuda(), heads, "cuda", dO)
        second = _run(x, indptr.cuda(), indices.cuda(), heads, "cuda", dO)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    for k in first[2]:
        assert torch.equal(first[2][k], second[2][k]), f"d{k} differs between two deterministic runs"


@needs_gpu
@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_agrees_with_the_triton_backend(dtype):
    """Second opinion (issue 7): the two GPU backends agree within the dtype's tolerance."""
    spec = backends.BACKENDS.get("triton")
    if spec is None or dtype not in spec.dtypes or spec.unavailable(torch.device("cuda")) is not None:
        pytest.skip(reason="needs the triton backend (issue 6) usable on this GPU")
    gen = torch.Generator().manual_seed(zlib.crc32(f"triton-{dtype}".encode()))
    x64, indptr, indices, heads = case_inputs(GPU_CASES["skewed-h4"], gen)
    x = {k: (v.to(dtype).cuda() if v is not None else None) for k, v in x64.items()}
    dO = torch.randn(x["S"].shape[0], x["S"].shape[1], x["W2"].shape[0], generator=gen, dtype=torch.float64).cuda()
    ours = _run(x, indptr.cuda(), indices.cuda(), heads, "cuda", dO)
    theirs = _run(x, indptr.cuda(), indices.cuda(), heads, "triton", dO)
    oracle64 = _run(
        {k: (v.double() if v is not None else None) for k, v in x.items()},
        indptr.cuda(),
        indices.cuda(),
        heads,
        "reference",
        dO,
    )
    assert_close(ours[0], oracle64[0], theirs[0], "cuda O vs triton's error")
    for k in ours[2]:
        assert_close(ours[2][k], oracle64[2][k], theirs[2][k], f"cuda d{k} vs triton's error")


@needs_gpu
def test_huge_graph_on_a_side_stream_matches_reference():
    """The canonical `huge` topology (a 1,038-source hub), two graphs, on a non-default stream."""
    g = grid_graph(((28, 28), (14, 14), (7, 7), (3, 3), (1, 1)), 28, 28)
    gen = torch.Generator().manual_seed(3)
    x = op_inputs(2, g.num_nodes, 64, 32, 64, dtype=torch.float32, generator=gen, device="cuda")
    ip, ix = g.indptr.cuda(), g.indices.cuda()
    want, want_lse = message_attention_reference(**x, indptr=ip, indices=ix, heads=2, scale=0.25)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        O, lse = message_attention(**x, indptr=ip, indices=ix, heads=2, scale=0.25, backend="cuda", return_lse=True)
    torch.cuda.current_stream().wait_stream(side)
    assert_close(O, want.double(), None, "cuda O (huge)")
    assert_close(lse, want_lse.double(), None, "cuda lse (huge)")


@needs_gpu
def test_over_limit_shape_raises_value_error_before_launch():
    x = op_inputs(1, 3, 4096, 8, 64, dtype=torch.float32, generator=torch.Generator().manual_seed(0), device="cuda")
    ip, ix = random_csr(3, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="shared memory"):
        message_attention(**x, indptr=ip.cuda(), indices=ix.cuda(), backend="cuda")
