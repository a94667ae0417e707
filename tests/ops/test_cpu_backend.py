"""The ``cpu`` backend of ``message_attention`` in depth (C++/OpenMP, csrc/cpu/).

Checked against the float64 ``reference`` oracle with the one tolerance rule of
``rstg_testing.assert_close`` (float32: at most 2x the float32 reference's own error plus a
floor of 2e-5 x max|expected|; float64: 1e-10 x max|expected|). The shared contract tests
(test_message_attention.py) run on this backend too; this file adds the awkward shapes, the
work-plan corner cases (hub rows split into pieces, graph blocks shared between threads),
thread counts, determinism and poisoned outputs.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from rstg_testing import assert_close, child_pythonpath, deterministic_algorithms, op_inputs, random_csr

from rstg_fast._ext import require_extension
from rstg_fast.graph import grid_graph
from rstg_fast.ops import backends, message_attention
from rstg_fast.ops.backends._kernel_args import op_fields

DTYPES = {"f32": torch.float32, "f64": torch.float64}
# A gradient that is zero in exact arithmetic (N = 1: every score of a row equal, so dQ = dK
# = 0) is rounding noise in both implementations; the relative rule cannot apply. Inputs are
# O(1), so noise above these absolute bounds would be a bug.
ZERO_GRADIENT_NOISE = {torch.float32: 1e-5, torch.float64: 1e-13}

# name: (G, N, Hd, A, D, heads, graph) with graph one of
#   ("random", max_degree, skewed_row) | ("grid", scales, size) | ("star", hub_degree)
CASES = {
    "round": (4, 13, 64, 32, 64, 1, ("random", 6, None)),
    "Hd13-D40-h2": (3, 13, 13, 8, 40, 2, ("random", 5, None)),
    "D59": (2, 11, 32, 12, 59, 1, ("random", 5, None)),
    "h4": (3, 9, 16, 16, 32, 4, ("random", 4, None)),
    "N1": (3, 1, 16, 8, 24, 2, ("random", 3, None)),
    "one-layer-h2": (3, 10, 40, 8, None, 2, ("random", 5, None)),
    "one-layer-Hd13": (2, 7, 13, 4, None, 1, ("random", 4, None)),
    "skewed-row": (3, 40, 16, 8, 24, 1, ("random", 20, 5)),
    "grid-graph": (5, 14, 24, 16, 32, 2, ("grid", ((3, 3), (2, 2), (1, 1)), 6)),
    # 40 graphs of the 14-node graph: blocks of 15 graphs (about 96 rows per destination),
    # so threads own some blocks outright and share the blocks cut between their runs.
    "many-blocks": (40, 14, 8, 8, 16, 2, ("grid", ((3, 3), (2, 2), (1, 1)), 6)),
    # The `huge` topology (1,039 nodes, 17,206 edges, a hub with 1,038 sources) at small widths.
    "huge-graph": (2, 1039, 16, 8, 16, 2, ("grid", ((28, 28), (14, 14), (7, 7), (3, 3), (1, 1)), 28)),
    # One hub with 300 sources: more rows than a tile holds, so the row is cut into pieces.
    "star-hub": (2, 301, 8, 4, 16, 1, ("star", 300)),
}


@contextlib.contextmanager
def num_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def star_csr(hub_degree: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Node 0 receives from every other node (and itself twice); each leaf from node 0."""
    n = hub_degree + 1
    hub = torch.cat([torch.tensor([0, 0]), torch.arange(1, n)])
    indptr = torch.zeros(n + 1, dtype=torch.int64)
    indptr[1] = hub.numel()
    indptr[2:] = hub.numel() + torch.arange(1, n)
    return indptr, torch.cat([hub, torch.zeros(n - 1, dtype=torch.int64)])


def case_graph(name, gen):
    _, N, *_, graph = CASES[name]
    if graph[0] == "random":
        return random_csr(N, graph[1], generator=gen, empty_rows=N > 2, skewed_row=graph[2])
    if graph[0] == "grid":
        g = grid_graph(graph[1], graph[2], graph[2])
        return g.indptr, g.indices
    return star_csr(graph[1])


def run(x, indptr, indices, heads, backend, dO):
    """O, lse and the gradients of every present input, for upstream gradient dO."""
    leaves = {k: (v.detach().clone().requires_grad_(True) if v is not None else None) for k, v in x.items()}
    O, lse = message_attention(**leaves, indptr=indptr, indices=indices, heads=heads, backend=backend, return_lse=True)
    present = [k for k, v in leaves.items() if v is not None]
    grads = torch.autograd.grad(O, [leaves[k] for k in present], dO.to(O.dtype))
    return O, lse, dict(zip(present, grads, strict=True))


def compare_with_oracle(case: str, dtype: torch.dtype, threads: int, seed: int = 0) -> None:
    G, N, Hd, A, D, heads, _ = CASES[case]
    gen = torch.Generator().manual_seed(seed)
    indptr, indices = case_graph(case, gen)
    N = indptr.numel() - 1
    x64 = op_inputs(G, N, Hd, A, D, dtype=torch.float64, generator=gen)
    dO = torch.randn(G, N, D or Hd, generator=gen, dtype=torch.float64)
    oracle = run(x64, indptr, indices, heads, "reference", dO)
    low = {k: (v.to(dtype) if v is not None else None) for k, v in x64.items()}
    own = run(low, indptr, indices, heads, "reference", dO) if dtype != torch.float64 else None
    with num_threads(threads):
        got = run(low, indptr, indices, heads, "cpu", dO)
    assert got[0].dtype == dtype and got[1].dtype == dtype
    assert_close(got[0], oracle[0], own[0] if own else None, f"{case} O")
    assert_close(got[1], oracle[1], own[1] if own else None, f"{case} lse")
    for k in oracle[2]:
        assert got[2][k].dtype == dtype
        if oracle[2][k].abs().max() < 1e-12:  # exactly zero in exact arithmetic: rounding noise only
            assert got[2][k].abs().max() <= ZERO_GRADIENT_NOISE[dtype], f"{case} d{k} should be zero"
            continue
        assert_close(got[2][k], oracle[2][k], own[2][k] if own else None, f"{case} d{k}")


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("case", list(CASES))
def test_forward_and_gradients_match_oracle(case, dtype):
    compare_with_oracle(case, dtype, threads=2)


# 3 and 7 threads cut graph blocks between threads (shared blocks and their slot buffers);
# 1 thread takes the whole plan; 16 threads on star-hub leave threads between the hub's
# few large tiles with empty runs (once a segfault in the shared-block reduction).
@pytest.mark.parametrize("threads", [1, 3, 7, 16])
@pytest.mark.parametrize("case", ["round", "star-hub", "one-layer-h2", "many-blocks"])
def test_any_thread_count_matches_oracle(case, threads):
    compare_with_oracle(case, torch.float32, threads=threads, seed=threads)


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
def test_every_message_width_matches_oracle(dtype):
    # Every D from 1 to 48 (two send layers): the z product of the backward must ask for the
    # packed W2^T's own width (D in whole vectors), not the dW2 row count (also rounded to the
    # micro-tile rows). They differ where kMR (6) is not a multiple of the vector width, and
    # these once gave wrong dS, dR, dQ, dK, dW2, db2 (found by fuzzing): the 16-byte build
    # (RSTG_FAST_NATIVE=0) float32 D = 17..20, 41..44 and float64 D = 1..2, 9..10, 13..14,
    # 21..22, ...; the 32-byte (AVX2) build float64 D = 17..20, 41..44. On an AVX-512 build
    # (kMR = 8) the two widths agree: this guards the narrower builds (.ci/narrow_cpu_builds.sh).
    gen = torch.Generator().manual_seed(19)
    indptr, indices = random_csr(6, 4, generator=gen)
    for D in range(1, 49):
        x64 = op_inputs(2, 6, 5, 4, D, dtype=torch.float64, generator=gen)
        dO = torch.randn(2, 6, D, generator=gen, dtype=torch.float64)
        oracle = run(x64, indptr, indices, 1, "reference", dO)
        low = {k: v.to(dtype) for k, v in x64.items()}
        own = run(low, indptr, indices, 1, "reference", dO) if dtype != torch.float64 else None
        with num_threads(1):
            got = run(low, indptr, indices, 1, "cpu", dO)
        assert_close(got[0], oracle[0], own[0] if own else None, f"D={D} O")
        for k in oracle[2]:
            assert_close(got[2][k], oracle[2][k], own[2][k] if own else None, f"D={D} d{k}")


def test_float32_weight_gradients_stay_accurate_over_many_rows():
    # dW2 and db2 sum over every row (graph x edge) a thread takes: 22,088 here on one thread,
    # most of them into one hub (500 sources, so same-sign terms per graph). Summed as one
    # float32 chain, their error grew with G x E to 2-4x the tolerance rule (found by
    # fuzzing); each tile's sum is now added to the thread's partial. The inputs are float32
    # values, so the float64 oracle sees the same numbers (no relu flips between the dtypes).
    gen = torch.Generator().manual_seed(20)
    indices = torch.cat([torch.randint(0, 3, (500,), generator=gen), torch.tensor([2, 0])])
    indptr = torch.tensor([0, 500, 501, 502])
    x = op_inputs(44, 3, 16, 8, 64, dtype=torch.float32, generator=gen)
    dO = torch.randn(44, 3, 64, generator=gen)
    oracle = run({k: v.double() for k, v in x.items()}, indptr, indices, 1, "reference", dO)
    own = run(x, indptr, indices, 1, "reference", dO)
    with num_threads(1):
        got = run(x, indptr, indices, 1, "cpu", dO)
    for k in ("W2", "b2"):
        assert_close(got[2][k], oracle[2][k], own[2][k], f"d{k}")


def test_float32_duplicate_sources_with_large_scores_give_zero_query_gradients():
    # Every destination receives 3 copies of one source: equal scores, so dQ = dK = 0 exactly.
    # With scores near +-50 (scale 3, 32 dims per head), softmax weights formed as
    # exp(s - lse) summed to 1 + ulp(|lse|), and ds = a (<dO, m> - <dO, O>) kept that much
    # of <dO, m>: float32 dQ about 7e-5 (found by fuzzing). The forward now normalises by
    # the sum, so the backward's weights differ from the forward's by one factor per row.
    gen = torch.Generator().manual_seed(21)
    N = 6
    indptr = torch.arange(0, 3 * N + 1, 3)
    indices = torch.randint(0, N, (N,), generator=gen).repeat_interleave(3)
    x64 = op_inputs(4, N, 16, 64, 32, dtype=torch.float64, generator=gen)
    dO = torch.randn(4, N, 32, generator=gen, dtype=torch.float64)
    x = {k: v.float() for k, v in x64.items()}

    def noise(backend):  # max |dQ|, |dK|: rounding noise only
        leaves = {k: v.clone().requires_grad_(True) for k, v in x.items()}
        O = message_attention(**leaves, indptr=indptr, indices=indices, heads=2, scale=3.0, backend=backend)
        return max(float(g.abs().max()) for g in torch.autograd.grad(O, [leaves["Q"], leaves["K"]], dO.float()))

    with num_threads(2):
        got = noise("cpu")
    own = noise("reference")  # the float32 reference's own noise, about 4e-6 here
    # Measured over 10 seeds: cpu / own 0.6-2.2 now, 6-15 before.
    assert got <= 4 * own, f"dQ/dK noise {got:.3g} > 4 x the float32 reference's {own:.3g}"


def test_non_contiguous_inputs_match_contiguous():
    gen = torch.Generator().manual_seed(13)
    indptr, indices = random_csr(9, 4, generator=gen)
    x = op_inputs(3, 9, 16, 8, 24, dtype=torch.float32, generator=gen)
    dO = torch.randn(3, 9, 24, generator=gen)
    # Same values, other layouts: transposed storage and a strided slice of a wider tensor.
    strided = {
        "S": x["S"].transpose(0, 1).contiguous().transpose(0, 1),
        "R": torch.cat([x["R"], x["R"]], -1)[..., :16],
        "Q": x["Q"].transpose(1, 2).contiguous().transpose(1, 2),
        "K": x["K"],
        "W2": x["W2"].t().contiguous().t(),
        "b2": torch.stack([x["b2"], x["b2"]], 1)[:, 0],
    }
    assert not any(strided[k].is_contiguous() for k in ("S", "R", "Q", "W2", "b2"))
    want = run(x, indptr, indices, 2, "cpu", dO)
    got = run(strided, indptr, indices, 2, "cpu", dO)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    for k in want[2]:
        assert torch.equal(got[2][k], want[2][k]), k


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_bitwise_deterministic_for_a_thread_count(threads):
    gen = torch.Generator().manual_seed(14)
    indptr, indices = random_csr(30, 12, generator=gen, skewed_row=4)
    x = op_inputs(6, 30, 32, 16, 48, dtype=torch.float32, generator=gen)
    dO = torch.randn(6, 30, 48, generator=gen)
    with num_threads(threads):
        first = run(x, indptr, indices, 2, "cpu", dO)
        second = run(x, indptr, indices, 2, "cpu", dO)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    for k in first[2]:
        assert torch.equal(first[2][k], second[2][k]), k


_SMALLER_TEAM_SCRIPT = """
import sys, torch
from test_cpu_backend import bitwise_case
torch.set_num_threads(4)
torch.save(bitwise_case(), sys.argv[1])
"""


def bitwise_case():
    """O, lse and every gradient of a fixed float32 case with a skewed row, on the cpu backend."""
    gen = torch.Generator().manual_seed(14)
    indptr, indices = random_csr(30, 12, generator=gen, skewed_row=4)
    x = op_inputs(6, 30, 32, 16, 48, dtype=torch.float32, generator=gen)
    dO = torch.randn(6, 30, 48, generator=gen)
    O, lse, grads = run(x, indptr, indices, 2, "cpu", dO)
    return {"O": O, "lse": lse, **{f"d{k}": g for k, g in grads.items()}}


def test_team_smaller_than_planned_gives_the_same_bits(tmp_path):
    # The runtime may give a parallel region fewer threads than the kernels plan for
    # (OMP_THREAD_LIMIT, OMP_DYNAMIC, a call from inside another parallel region). The
    # planned per-thread runs are then dealt out over the team: same bits as a full team
    # (once: silently skipped runs, wrong outputs and NaN gradients).
    import os
    import subprocess
    import sys

    out = tmp_path / "limited.pt"
    # The child imports the same rstg_fast as this process, whatever its working directory
    # holds, and this test module from its folder.
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, OMP_THREAD_LIMIT="1", PYTHONPATH=child_pythonpath(tests_dir))
    subprocess.run([sys.executable, "-c", _SMALLER_TEAM_SCRIPT, str(out)], env=env, cwd=tmp_path, check=True)
    limited = torch.load(out, weights_only=True)
    with num_threads(4):
        full = bitwise_case()
    assert limited.keys() == full.keys()
    for k in full:
        assert torch.equal(limited[k], full[k]), k


def test_runs_under_use_deterministic_algorithms():
    gen = torch.Generator().manual_seed(15)
    indptr, indices = random_csr(8, 4, generator=gen)
    x = op_inputs(2, 8, 8, 4, 8, dtype=torch.float32, generator=gen)
    dO = torch.randn(2, 8, 8, generator=gen)
    with deterministic_algorithms(True):
        a = run(x, indptr, indices, 1, "cpu", dO)
        b = run(x, indptr, indices, 1, "cpu", dO)
    assert torch.equal(a[0], b[0]) and all(torch.equal(a[2][k], b[2][k]) for k in a[2])


@pytest.mark.parametrize("one_layer", [False, True], ids=["two-layer", "one-layer"])
def test_kernels_write_every_output_element(one_layer):
    """Outputs start as NaN: an element a kernel forgets to write shows up as NaN.

    Hd = 14: a row tail in every vector width, and (one layer, D = Hd) two heads of 7
    columns. It was 13 with two heads, which the op rejects (heads must divide D): the
    kernels then left column 12 of the backward's dh scratch unwritten, and the heap garbage
    there made about 2 % of one-layer runs fail with one NaN in dS and dR. The entry points
    now reject that too (test_kernel_fields_are_named_and_checked)."""
    ext = require_extension()
    gen = torch.Generator().manual_seed(16)
    indptr, indices = random_csr(20, 8, generator=gen, skewed_row=2)
    x = op_inputs(5, 20, 14, 8, None if one_layer else 40, dtype=torch.float32, generator=gen)
    G, N, Hd, A, D = 5, 20, 14, 8, (14 if one_layer else 40)
    nan = lambda *shape: torch.full(shape, float("nan"))  # noqa: E731
    O, lse = nan(G, N, D), nan(G, N, 2)
    fields = op_fields(*x.values(), indices, 2, 0.5)
    fields.update(indptr=indptr.data_ptr(), indices=indices.data_ptr(), O=O.data_ptr(), lse=lse.data_ptr(), threads=3)
    with num_threads(3):
        ext.message_attention_forward_cpu(fields)
    assert not O.isnan().any() and not lse.isnan().any()
    empty = indptr[1:] == indptr[:-1]
    assert empty.any() and (O[:, empty] == 0).all() and (lse[:, empty] == float("-inf")).all()
    dO = torch.randn(G, N, D, generator=gen)
    grads = {"dS": nan(G, N, Hd), "dR": nan(G, N, Hd), "dQ": nan(G, N, A), "dK": nan(G, N, A)}
    if not one_layer:
        grads.update(dW2=nan(D, Hd), db2=nan(D))
    fields.update(dO=dO.data_ptr(), **{k: g.data_ptr() for k, g in grads.items()})
    ext.message_attention_backward_cpu(fields)
    for g in grads.values():
        assert not g.isnan().any()


def test_kernel_fields_are_named_and_checked():
    """The entry points take one dict of named fields (MaArgs): a missing size, a misspelt
    name, a dtype the CPU kernels lack, an E that is not the graph's, heads that do not
    divide A and D, or (no W2) a D other than Hd is a ValueError, in both directions.

    The size checks guard the kernels' assumptions: with heads not dividing D, the
    backward scattered the uninitialised last D % heads columns of its dh scratch into dS
    and dR (an occasional NaN), and the forward's per-head slices missed those columns."""
    ext = require_extension()
    gen = torch.Generator().manual_seed(18)
    indptr, indices = random_csr(4, 3, generator=gen)
    x = op_inputs(1, 4, 8, 4, None, dtype=torch.float32, generator=gen)
    # Buffers large enough for every broken variant below, so that a missing check shows up
    # as a call that does not raise, never as a write out of bounds.
    buffers = {k: torch.zeros(1, 4, 8) for k in ("O", "dO", "dS", "dR", "dQ", "dK")}
    buffers["lse"] = torch.zeros(1, 4, 4)
    fields = op_fields(*x.values(), indices, 1, 0.5)
    fields.update(indptr=indptr.data_ptr(), indices=indices.data_ptr(), **{k: t.data_ptr() for k, t in buffers.items()})
    for broken, match in [
        ({k: v for k, v in fields.items() if k != "heads"}, "missing argument 'heads'"),
        ({**fields, "lse_": 0}, "unknown argument 'lse_'"),
        ({**fields, "dtype": ext.dtype_codes["float16"]}, "dtype code"),
        ({**fields, "E": indices.numel() + 1}, "indptr"),
        ({**fields, "heads": 3}, "heads must divide A and D"),  # A = 4, D = 8
        ({**fields, "heads": 4, "D": 6, "Hd": 6}, "heads must divide A and D"),
        ({**fields, "D": 4}, "without W2, D must equal Hd"),
    ]:
        for entry in (ext.message_attention_forward_cpu, ext.message_attention_backward_cpu):
            with pytest.raises(ValueError, match=match):
                entry(broken)


def test_thread_counts_agree_to_rounding():
    gen = torch.Generator().manual_seed(17)
    g = grid_graph(((3, 3), (2, 2), (1, 1)), 6, 6)
    x = op_inputs(40, 14, 32, 16, 32, dtype=torch.float64, generator=gen)
    dO = torch.randn(40, 14, 32, generator=gen, dtype=torch.float64)
    results = []
    for threads in (1, 2, 4):
        with num_threads(threads):
            results.append(run(x, g.indptr, g.indices, 1, "cpu", dO))
    for other in results[1:]:
        torch.testing.assert_close(other[0], results[0][0], rtol=1e-12, atol=1e-12)
        for k in results[0][2]:
            torch.testing.assert_close(other[2][k], results[0][2][k], rtol=1e-11, atol=1e-11)


def test_auto_picks_cpu_for_float32_and_float64_only():
    cpu = torch.device("cpu")
    assert backends.auto_backend(cpu, torch.float32) == "cpu"
    assert backends.auto_backend(cpu, torch.float64) == "cpu"
    assert backends.auto_backend(cpu, torch.bfloat16) == "reference"


def test_half_inputs_rejected_with_value_error():
    gen = torch.Generator().manual_seed(18)
    g = grid_graph(((3, 3), (2, 2), (1, 1)), 6, 6)
    x = op_inputs(2, 14, 8, 4, 8, dtype=torch.bfloat16, generator=gen)
    with pytest.raises(ValueError, match="backend 'cpu' supports"):
        message_attention(**x, indptr=g.indptr, indices=g.indices, backend="cpu")


def test_peak_probes_report_positive_rates():
    ext = require_extension()
    assert ext.cpu_fma_peak_gflops(1, 0.01) > 0
    assert ext.cpu_microkernel_gflops(1, 0.01, 12, 64, 64) > 0
