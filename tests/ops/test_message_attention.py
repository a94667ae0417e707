"""message_attention: the contract, checked for the reference and every registered backend.

Every backend in ``rstg_fast.ops.backends.BACKENDS`` is a parameter of the backend tests
here; one that cannot run on this machine is skipped with its own reason (its
``BackendSpec.unavailable``), so a missing backend shows in the report instead of vanishing
from the suite. A backend runs on CPU tensors where it can, else on a CUDA device.

Backend-specific depth (skew, determinism, launch limits) lives in test_<backend>_backend.py;
this file holds what every backend must satisfy.
"""

from __future__ import annotations

import math
import zlib

import pytest
import torch
from ma_oracles import assert_nonfinite_like_reference, nonfinite_case, nonfinite_params, outputs_and_grads
from rstg_testing import (
    NONFINITE,
    assert_close,
    case_inputs,
    deterministic_algorithms,
    op_inputs,
    random_csr,
)

from rstg_fast.graph import grid_graph
from rstg_fast.ops import backends, message_attention
from rstg_fast.ops.backends.reference import message_attention_reference

CPU = torch.device("cpu")
ALL_BACKENDS = list(backends.BACKENDS)
FLOATS = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def usable_device(name: str) -> tuple[torch.device | None, str | None]:
    """``(device, None)``: where the suite runs backend ``name`` (CPU first, then CUDA), or
    ``(None, why)`` with the backend's own reasons for every device it supports.

    Asked at run time, not at collection: availability can depend on the environment the
    tests run in (TRITON_INTERPRET, the build, the GPU).
    """
    spec = backends.BACKENDS[name]
    why = []
    for device in (CPU, torch.device("cuda")):
        if device.type not in spec.devices:
            continue
        reason = spec.unavailable(device)
        if reason is None and device.type == "cuda" and not torch.cuda.is_available():
            reason = "no CUDA device here"
        if reason is None:
            return device, None
        why.append(f"{device.type}: {reason}")
    return None, "; ".join(why)


def device_for(name: str) -> torch.device:
    """The device to test backend ``name`` on; skips the test, saying why, when there is none."""
    device, why = usable_device(name)
    if device is None:
        pytest.skip(reason=f"backend {name!r} cannot run here ({why})")
    return device


def edge_loop(S, R, Q, K, W2, b2, indptr, indices, heads, scale):
    """The maths of docs/design.md §2 as literal loops over graphs, destinations and sources."""
    G, N, _ = S.shape
    D = W2.shape[0] if W2 is not None else S.shape[2]
    A = Q.shape[2]
    dh, da = D // heads, A // heads
    O = torch.zeros(G, N, D, dtype=torch.float64)
    lse = torch.full((G, N, heads), -math.inf, dtype=torch.float64)
    for g in range(G):
        for i in range(N):
            srcs = indices[indptr[i] : indptr[i + 1]].tolist()
            if not srcs:
                continue
            for c in range(heads):
                scores, messages = [], []
                for j in srcs:
                    h = torch.relu(S[g, j] + R[g, i])
                    m = torch.relu(W2 @ h + b2) if W2 is not None else h
                    scores.append(scale * float(Q[g, i, c * da : (c + 1) * da] @ K[g, j, c * da : (c + 1) * da]))
                    messages.append(m[c * dh : (c + 1) * dh])
                s = torch.tensor(scores, dtype=torch.float64)
                a = torch.softmax(s, 0)
                O[g, i, c * dh : (c + 1) * dh] = sum(w * m for w, m in zip(a, messages, strict=True))
                lse[g, i, c] = torch.logsumexp(s, 0)
    return O, lse


@pytest.mark.parametrize("heads,D", [(1, 6), (2, 6), (2, None)], ids=["h1", "h2", "h2-one-layer"])
def test_reference_matches_edge_loop(heads, D):
    gen = torch.Generator().manual_seed(0)
    indptr, indices = random_csr(7, 4, generator=gen)
    x = op_inputs(3, 7, 6, 4, D, dtype=torch.float64, generator=gen)
    O, lse = message_attention(**x, indptr=indptr, indices=indices, heads=heads, backend="reference", return_lse=True)
    O_loop, lse_loop = edge_loop(*x.values(), indptr, indices, heads, 1 / math.sqrt(4 // heads))
    torch.testing.assert_close(O, O_loop)
    torch.testing.assert_close(lse, lse_loop)
    empty = (indptr[1:] == indptr[:-1]).nonzero().flatten()
    assert empty.numel() > 0 and torch.all(O[:, empty] == 0) and torch.all(lse[:, empty] == -math.inf)


CASES = {
    # name: (G, N, Hd, A, D, heads, max_degree, skewed_row)
    "paper-graph": (3, None, 16, 8, 12, 1, None, None),
    "N1": (2, 1, 8, 4, 8, 1, 1, None),
    "odd": (2, 13, 13, 8, 40, 2, 5, 3),
    "h4-one-layer": (2, 9, 16, 8, None, 4, 4, None),
}


# Backends whose 16-bit kernels differ from the reference's maths on a GPU, by design and as
# in FlashAttention: h is rounded to the input dtype for the tensor cores before the W2 product
# (a ReLU kink of z can flip under that rounding and move a gradient by a whole edge term), and
# Delta = rowsum(dO * O) takes the stored, rounded O. This file's oracle models neither; their
# own test files use an oracle that models both. Under the Triton interpreter (CPU) the triton
# cases do run here: measured within the rule for these cases and four other seed sets.
DOCUMENTED_16BIT_DEVIATION = {
    "triton": "docs/triton_backend.md, Precision; checked in tests/ops/test_triton_backend.py",
    "cuda": "docs/cuda_backend.md, Delta and the tolerance of dQ, dK; checked in tests/ops/test_cuda_backend.py",
}


def oracle_params():
    """(backend, case, dtype) for every registered backend and every dtype it claims."""
    for backend, spec in backends.BACKENDS.items():
        for case in CASES:
            for dtype in FLOATS:
                if dtype in spec.dtypes:  # an unclaimed dtype is refused (tested below), not computed
                    yield pytest.param(backend, case, dtype, id=f"{backend}-{case}-{str(dtype)[6:]}")


@pytest.mark.parametrize("backend,case,dtype", list(oracle_params()))
def test_forward_and_gradients_match_float64_oracle(backend, case, dtype):
    device = device_for(backend)
    half = dtype in (torch.float16, torch.bfloat16)
    if half and device.type == "cuda" and backend in DOCUMENTED_16BIT_DEVIATION:
        why = DOCUMENTED_16BIT_DEVIATION[backend]
        pytest.skip(reason=f"{backend} on a GPU in {dtype}: h rounded for the tensor cores and Delta from the "
                           f"rounded O, which this oracle does not model ({why})")  # fmt: skip
    # A stable seed per (backend, case, dtype): a failure reproduces on the next run.
    gen = torch.Generator().manual_seed(zlib.crc32(f"{backend}-{case}-{dtype}".encode()))
    x64, indptr, indices, heads = case_inputs(CASES[case], gen, device)
    present = {k: v for k, v in x64.items() if v is not None}
    G, N, Hd = x64["S"].shape
    D = x64["W2"].shape[0] if x64["W2"] is not None else Hd
    # Rounded to dtype once: the oracle and the backend get the same incoming gradient.
    dO = torch.randn(G, N, D, generator=gen, dtype=torch.float64).to(dtype).double().to(device)

    def run(xs, which):
        leaves = {k: (v.detach().requires_grad_(True) if v is not None else None) for k, v in xs.items()}
        if which == "pytorch-same-dtype":  # PyTorch's own error in this dtype: the yardstick
            O, _ = message_attention_reference(
                **leaves, indptr=indptr, indices=indices, heads=heads,
                scale=1 / math.sqrt(leaves["Q"].shape[-1] // heads), compute_dtype=dtype,
            )
        else:
            O = message_attention(**leaves, indptr=indptr, indices=indices, heads=heads, backend=which)
        grads = torch.autograd.grad(O, [leaves[k] for k in present], dO.to(O.dtype))
        return O, dict(zip(present, grads, strict=True))

    low = {k: (v.to(dtype) if v is not None else None) for k, v in x64.items()}
    # The oracle sees the inputs the backend sees (rounded to dtype), in float64: input
    # rounding would otherwise flip ReLUs near 0 and move a gradient by a whole edge term.
    oracle = run({k: (v.double() if v is not None else None) for k, v in low.items()}, "reference")
    same_dtype_ref = run(low, "pytorch-same-dtype") if dtype != torch.float64 else None
    got = run(low, backend)
    assert got[0].dtype == dtype
    assert_close(got[0], oracle[0], same_dtype_ref[0] if same_dtype_ref else None, f"{backend} O")
    for k in present:
        assert got[1][k].dtype == dtype
        assert_close(got[1][k], oracle[1][k], same_dtype_ref[1][k] if same_dtype_ref else None, f"{backend} d{k}")


@pytest.mark.parametrize("backend,name,value,whole_row,one_layer", list(nonfinite_params(ALL_BACKENDS)))
def test_nonfinite_inputs_propagate_like_the_reference(backend, name, value, whole_row, one_layer):
    """NaN, +inf or -inf in one element (or a row) of an input gives, in O, lse and every
    gradient, NaN exactly where the reference (PyTorch: relu(nan) = nan, a max that keeps NaN,
    0 * inf = nan) has NaN, +-inf where it has +-inf, and close finite values elsewhere: a run
    that diverges shows it (docs/design.md §2). float32, a dtype every backend claims."""
    device = device_for(backend)
    case = nonfinite_case(name, value, whole_row, one_layer)

    def op(leaves):
        on_device = {k: (v.to(device) if v is not None else None) for k, v in leaves.items()}
        graph = dict(indptr=case["indptr"].to(device), indices=case["indices"].to(device))
        return message_attention(**on_device, **graph, heads=case["heads"], scale=case["scale"], backend=backend,
                                 return_lse=True)  # fmt: skip

    got = outputs_and_grads(case, op)
    label = f"{backend} with {name} = {NONFINITE[value]} in {'a row' if whole_row else 'an element'}"
    assert_nonfinite_like_reference(got, case, label)


@pytest.mark.parametrize("backend", [b for b in ALL_BACKENDS if torch.float64 in backends.BACKENDS[b].dtypes])
@pytest.mark.parametrize("one_layer", [False, True], ids=["two-layer", "one-layer"])
def test_gradcheck_float64(backend, one_layer):
    """gradcheck of every float64 backend (the one gradcheck of the op: the per-backend files do
    not repeat it)."""
    device = device_for(backend)
    gen = torch.Generator().manual_seed(1)
    indptr, indices = random_csr(6, 3, generator=gen)
    indptr, indices = indptr.to(device), indices.to(device)
    x = op_inputs(2, 6, 6 if one_layer else 5, 4, None if one_layer else 6, dtype=torch.float64, generator=gen,
                  device=device)  # fmt: skip
    names = [k for k, v in x.items() if v is not None]
    leaves = [x[k].requires_grad_(True) for k in names]

    def f(*ts):
        kw = dict(zip(names, ts, strict=True))
        kw.setdefault("W2", None)
        kw.setdefault("b2", None)
        return message_attention(**kw, indptr=indptr, indices=indices, heads=2, backend=backend)

    assert torch.autograd.gradcheck(f, leaves)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("one_layer", [False, True], ids=["two-layer", "one-layer"])
def test_opcheck(backend, dtype, one_layer):
    """The registered op's schema, fake kernel, autograd registration and dispatch, for every
    backend in each full-precision dtype it claims (the one opcheck of the suite: the
    per-backend files do not repeat it)."""
    if dtype not in backends.BACKENDS[backend].dtypes:
        pytest.skip(reason=f"backend {backend!r} does not claim {dtype}")
    device = device_for(backend)
    gen = torch.Generator().manual_seed(2)
    indptr, indices = random_csr(5, 3, generator=gen)
    x = op_inputs(2, 5, 4, 4, None if one_layer else 6, dtype=dtype, generator=gen, device=device)
    args = [t.requires_grad_(True) if t is not None else None for t in x.values()]
    torch.library.opcheck(
        torch.ops.rstg_fast.message_attention.default, (*args, indptr.to(device), indices.to(device), 2, 0.7, backend)
    )


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("G,N,edges", [(0, 5, True), (2, 0, False), (2, 4, False)],
                         ids=["no-graphs", "no-nodes", "no-edges"])  # fmt: skip
@pytest.mark.parametrize("deterministic", [False, True], ids=["default", "deterministic"])
def test_empty_batch_graph_or_edges(backend, G, N, edges, deterministic):
    """Zero graphs, zero nodes or zero edges are valid (docs/architecture.md): empty outputs,
    or O = 0 and lse = -inf for rows without sources, and gradients exactly 0, in both modes."""
    device = device_for(backend)
    gen = torch.Generator().manual_seed(9)
    if edges:
        indptr, indices = random_csr(N, 3, generator=gen, empty_rows=False)
    else:
        indptr, indices = torch.zeros(N + 1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    x = op_inputs(G, N, 6, 4, 8, dtype=torch.float32, generator=gen, device=device)
    leaves = {k: v.requires_grad_(True) for k, v in x.items()}
    with deterministic_algorithms(deterministic):
        O, lse = message_attention(**leaves, indptr=indptr.to(device), indices=indices.to(device), heads=2,
                                   backend=backend, return_lse=True)  # fmt: skip
        assert O.shape == (G, N, 8) and lse.shape == (G, N, 2)
        if not edges:
            assert torch.equal(O, torch.zeros_like(O)) and bool(torch.all(lse == -math.inf))
        grads = torch.autograd.grad((O * torch.randn_like(O)).sum(), list(leaves.values()))
    for k, g in zip(leaves, grads, strict=True):
        assert g.shape == x[k].shape and torch.equal(g, torch.zeros_like(g)), f"d{k} must be 0"


def test_default_scale_lse_and_int32_indices():
    gen = torch.Generator().manual_seed(3)
    g = grid_graph(((3, 3), (2, 2), (1, 1)), 6, 6)
    x = op_inputs(2, 14, 8, 8, 8, dtype=torch.float64, generator=gen)
    O, lse = message_attention(**x, indptr=g.indptr, indices=g.indices, heads=2, return_lse=True, backend="reference")
    O_explicit = message_attention(**x, indptr=g.indptr.int(), indices=g.indices.int(), heads=2, scale=0.5)
    torch.testing.assert_close(O, O_explicit)  # 1 / sqrt(8 / 2) = 0.5
    ref_O, ref_lse = message_attention_reference(**x, indptr=g.indptr, indices=g.indices, heads=2, scale=0.5)
    torch.testing.assert_close(lse, ref_lse)
    assert not lse.requires_grad


def test_torch_compile_fullgraph_matches_eager():
    gen = torch.Generator().manual_seed(4)
    g = grid_graph(((3, 3), (2, 2), (1, 1)), 6, 6)
    x = op_inputs(2, 14, 8, 8, 8, dtype=torch.float32, generator=gen)

    def f(S, R, Q, K, W2, b2):
        return message_attention(S, R, Q, K, W2, b2, g.indptr, g.indices, heads=2).sum(-1)

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    leaves = [v.requires_grad_(True) for v in x.values()]
    out = compiled(*leaves)
    grads = torch.autograd.grad(out.sum(), leaves)
    eager = f(*leaves)
    torch.testing.assert_close(out, eager)
    for a, b in zip(grads, torch.autograd.grad(eager.sum(), leaves), strict=True):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- validation
def _valid(device=CPU):
    gen = torch.Generator().manual_seed(5)
    g = grid_graph(((3, 3), (2, 2), (1, 1)), 6, 6)
    x = op_inputs(2, 14, 8, 4, 6, dtype=torch.float32, generator=gen, device=device)
    return dict(x, indptr=g.indptr.to(device), indices=g.indices.to(device))


def _poke(t: torch.Tensor, i: int, value: int) -> torch.Tensor:
    """A copy of ``t`` with ``t[i] = value`` (on any device)."""
    t = t.clone()
    t[i] = value
    return t


def _bad_cases():
    def set_(key, value):
        return lambda kw: kw.__setitem__(key, value(kw))

    def narrow(**widths):  # slices of the last dimension, contiguous like a caller's tensors
        return lambda kw: kw.update({k: kw[k][..., :w].contiguous() if kw[k] is not None else None
                                     for k, w in widths.items()})  # fmt: skip

    return {
        "S-rank": ("S", set_("S", lambda kw: kw["S"][0])),
        "R-shape": ("R", set_("R", lambda kw: kw["R"][:, :3])),
        "Q-graphs": ("Q", set_("Q", lambda kw: kw["Q"][:1])),
        "K-shape": ("K", set_("K", lambda kw: kw["K"][..., :2])),
        "Q-width0": ("Q", narrow(Q=0, K=0)),
        "S-width0": ("S", narrow(S=0, R=0, W2=0)),  # Hd = 0 with W2 (D, 0): messages would be relu(b2)
        "S-width0-one-layer": ("S", lambda kw: (narrow(S=0, R=0)(kw), kw.update(W2=None, b2=None))),
        "W2-rows0": ("W2", lambda kw: kw.update(W2=kw["W2"][:0], b2=kw["b2"][:0])),  # D = 0: no message
        "W2-shape": ("W2", set_("W2", lambda kw: kw["W2"][:, :3])),
        "b2-shape": ("b2", set_("b2", lambda kw: kw["b2"][:2])),
        "b2-without-W2": ("b2", set_("W2", lambda kw: None)),
        "dtype-mixed": ("K", set_("K", lambda kw: kw["K"].double())),
        "dtype-int": ("S", lambda kw: [kw.__setitem__(k, kw[k].long()) for k in ("S", "R", "Q", "K", "W2", "b2")]),
        "indptr-length": ("indptr", set_("indptr", lambda kw: kw["indptr"][:-1])),
        "indptr-dtype": ("indptr", set_("indptr", lambda kw: kw["indptr"].float())),
        "indptr-start": ("indptr", set_("indptr", lambda kw: kw["indptr"] + 1)),
        "indptr-end": ("indptr", set_("indices", lambda kw: kw["indices"][:-1])),
        "indptr-monotone": ("indptr", set_("indptr", lambda kw: _poke(kw["indptr"], 3, 0))),
        "indices-high": ("indices", set_("indices", lambda kw: _poke(kw["indices"], 7, 14))),
        "indices-negative": ("indices", set_("indices", lambda kw: _poke(kw["indices"], 0, -1))),
        "indices-2d": ("indices", set_("indices", lambda kw: kw["indices"][None])),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_input_raises_value_error_naming_argument(case):
    name, mutate = _bad_cases()[case]
    kw = _valid()
    mutate(kw)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        message_attention(**kw, backend="reference")


@pytest.mark.parametrize(
    "options,name",
    [({"heads": 3}, "heads"), ({"heads": 0}, "heads"), ({"heads": 1.5}, "heads"), ({"scale": float("nan")}, "scale"),
     ({"backend": "nope"}, "backend"), ({"backend": 3}, "backend")],
    ids=["heads-divide", "heads-zero", "heads-float", "scale-nan", "backend-name", "backend-type"],
)
def test_bad_options_raise_value_error(options, name):
    with pytest.raises(ValueError, match=name):
        message_attention(**_valid(), **options)


def test_csr_check_is_cached_but_sees_in_place_edits():
    kw = _valid()
    message_attention(**kw, backend="reference")
    kw["indices"][5] = 99  # in-place edit bumps the version counter: checked again
    with pytest.raises(ValueError, match=r"indices\[5\] = 99"):
        message_attention(**kw, backend="reference")


def test_csr_checker_runs_in_the_compiled_extension():
    from rstg_fast._ext import require_extension

    ext = require_extension()
    g = grid_graph(((3, 3), (2, 2), (1, 1)), 6, 6)
    assert ext.check_csr_cpu(g.indptr.data_ptr(), g.indices.data_ptr(), 14, 90) == (-1, 0)
    bad = g.indices.clone()
    bad[17] = 14
    assert ext.check_csr_cpu(g.indptr.data_ptr(), bad.data_ptr(), 14, 90) == (3, 17)


# ------------------------------------------------ validation of torch.ops callers
def _op_args(kw, heads=1, scale=0.5, backend="reference"):
    return (kw["S"], kw["R"], kw["Q"], kw["K"], kw["W2"], kw["b2"], kw["indptr"], kw["indices"], heads, scale, backend)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("case", list(_bad_cases()))
def test_registered_op_validates_like_the_public_function(case, backend):
    device = device_for(backend)
    name, mutate = _bad_cases()[case]
    kw = _valid(device)
    message_attention(**kw, backend=backend)  # a checked public call first: its skip must not leak
    mutate(kw)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        torch.ops.rstg_fast.message_attention(*_op_args(kw, backend=backend))


@pytest.mark.parametrize(
    "backend,dtype",
    [pytest.param(b, d, id=f"{b}-{str(d)[6:]}") for b, spec in backends.BACKENDS.items() for d in FLOATS
     if d not in spec.dtypes],
)  # fmt: skip
def test_backend_refuses_a_dtype_it_does_not_claim(backend, dtype):
    device = device_for(backend)
    kw = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in _valid(device).items()}
    with pytest.raises(ValueError, match=rf"backend '{backend}' supports .*got {dtype}"):
        message_attention(**kw, backend=backend)


@pytest.mark.parametrize(
    "options,name",
    [({"heads": 3}, "heads"), ({"heads": 0}, "heads"), ({"scale": float("nan")}, "scale"),
     ({"backend": "nope"}, "backend"), ({"backend": "cuda"}, "backend")],
    ids=["heads-divide", "heads-zero", "scale-nan", "backend-name", "backend-device"],
)
def test_registered_op_validates_options(options, name):
    args = dict(heads=2, scale=0.5, backend="reference") | options
    with pytest.raises(ValueError, match=name):
        torch.ops.rstg_fast.message_attention(*_op_args(_valid(), **args))


def test_registered_op_accepts_auto_and_int32_indices():
    kw = _valid()
    want = message_attention(**kw, heads=2, scale=0.5, backend="reference")
    kw["indptr"], kw["indices"] = kw["indptr"].int(), kw["indices"].int()
    O, _ = torch.ops.rstg_fast.message_attention(*_op_args(kw, heads=2, backend="auto"))
    torch.testing.assert_close(O, want)


def _backward_args(**changes):
    kw = _valid()
    O, lse = message_attention(**kw, heads=2, scale=0.5, backend="reference", return_lse=True)
    args = dict(dO=torch.randn_like(O), S=kw["S"], R=kw["R"], Q=kw["Q"], K=kw["K"], W2=kw["W2"], b2=kw["b2"],
                indptr=kw["indptr"], indices=kw["indices"], O=O, lse=lse, heads=2, scale=0.5, backend="reference")
    args.update({k: (v(args) if callable(v) else v) for k, v in changes.items()})
    return tuple(args.values())


@pytest.mark.parametrize(
    "changes,name",
    [({"dO": lambda a: a["dO"][:, :3]}, "dO"), ({"dO": lambda a: a["dO"].double()}, "dO"),
     ({"O": lambda a: a["O"][..., :4]}, "O"), ({"lse": lambda a: a["lse"][..., :1]}, "lse"),
     ({"lse": lambda a: a["lse"].double()}, "lse"), ({"R": lambda a: a["R"][:1]}, "R"),
     ({"heads": 4}, "heads"), ({"backend": "nope"}, "backend"),
     ({"indices": lambda a: a["indices"].index_put((torch.tensor([7]),), torch.tensor(14))}, "indices")],
    ids=["dO-shape", "dO-dtype", "O-shape", "lse-shape", "lse-dtype", "R-shape", "heads", "backend", "indices-high"],
)
def test_registered_backward_op_validates(changes, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        torch.ops.rstg_fast.message_attention_backward(*_backward_args(**changes))


def test_fake_kernels_validate_shapes_without_data():
    from torch._subclasses.fake_tensor import FakeTensorMode

    real, real_bw = _valid(), _backward_args()
    with FakeTensorMode() as mode:  # fake tensors have no data: reading it would raise
        kw = {k: mode.from_tensor(v) if v is not None else None for k, v in real.items()}
        O, lse = torch.ops.rstg_fast.message_attention(*_op_args(kw, heads=2))
        assert O.shape == (2, 14, 6) and lse.shape == (2, 14, 2) and lse.dtype == torch.float32
        with pytest.raises(ValueError, match=r"\bR\b"):
            torch.ops.rstg_fast.message_attention(*_op_args(dict(kw, R=kw["R"][:1]), heads=2))
        bw = [mode.from_tensor(t) if isinstance(t, torch.Tensor) else t for t in real_bw]
        assert torch.ops.rstg_fast.message_attention_backward(*bw)[0].shape == (2, 14, 8)
        bw[10] = bw[10][..., :1]  # lse
        with pytest.raises(ValueError, match=r"\blse\b"):
            torch.ops.rstg_fast.message_attention_backward(*bw)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_strided_indptr_and_indices_in_backward(backend):
    # saved indptr/indices are the caller's tensors: the backward kernel must not see strides
    device = device_for(backend)
    dtype = torch.float64 if torch.float64 in backends.BACKENDS[backend].dtypes else torch.float32
    kw = _valid(device)

    def grads(which, as_dtype):
        leaves = {k: (kw[k].to(as_dtype).requires_grad_(True)) for k in ("S", "R", "Q", "K", "W2", "b2")}
        O = message_attention(**leaves, indptr=kw["indptr"], indices=kw["indices"], heads=2, backend=which)
        return torch.autograd.grad(O.sum(), [leaves["S"], leaves["Q"]])

    want = grads("reference", torch.float64)
    own = grads("reference", dtype) if dtype != torch.float64 else (None, None)
    kw["indptr"] = torch.stack([kw["indptr"], torch.full_like(kw["indptr"], 7)], 1)[:, 0]
    kw["indices"] = torch.stack([kw["indices"], torch.full_like(kw["indices"], 99)], 1)[:, 0]
    assert not kw["indptr"].is_contiguous() and not kw["indices"].is_contiguous()
    for name, a, b, c in zip(("dS", "dQ"), grads(backend, dtype), want, own, strict=True):
        assert_close(a, b, c, f"{backend} {name}")
