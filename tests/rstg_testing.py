"""Shared test utilities: random CSR graphs, op inputs, and the one tolerance rule.

Tolerance rule (STYLE.md): an implementation in dtype ``d`` is compared with a float64
oracle; its error may be at most ``2x`` the error PyTorch makes computing the same maths in
``d`` itself (``message_attention_reference(..., compute_dtype=d)``), plus a floor per dtype
(table below). Failures print the worst indices.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator

import torch

# Floors, relative to the magnitude of the expected tensor (max |x|, at least 1: the inputs
# are O(1), so an exactly-zero expected gradient is still held to the dtype's resolution).
TOLERANCE_FLOOR = {
    torch.float64: 1e-10,
    torch.float32: 2e-5,
    torch.float16: 2e-3,
    torch.bfloat16: 1.6e-2,
}


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True, *, warn_only: bool = False) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(enabled, warn_only=...)`` inside the block; the
    caller's previous setting (mode and warn_only) is restored on exit, also on an exception,
    so a test never leaves the switch changed for the tests after it."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def random_csr(
    num_nodes: int,
    max_degree: int,
    *,
    generator: torch.Generator,
    empty_rows: bool = True,
    duplicates: bool = True,
    skewed_row: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random CSR-by-destination graph ``(indptr, indices)``.

    ``empty_rows`` leaves some destinations without sources; ``duplicates`` repeats some
    sources within a row; ``skewed_row`` gives that row ``4 * max_degree`` sources.
    """
    degrees = torch.randint(0 if empty_rows else 1, max_degree + 1, (num_nodes,), generator=generator)
    if empty_rows and num_nodes > 2:
        degrees[1] = 0
    if skewed_row is not None:
        degrees[skewed_row] = 4 * max_degree
    rows = []
    for i, d in enumerate(degrees.tolist()):
        if duplicates:
            row = torch.randint(0, num_nodes, (d,), generator=generator)
        else:
            row = torch.randperm(num_nodes, generator=generator)[:d]
            degrees[i] = row.numel()
        rows.append(torch.sort(row).values)
    indptr = torch.zeros(num_nodes + 1, dtype=torch.int64)
    indptr[1:] = torch.cumsum(degrees, 0)
    indices = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.int64)
    return indptr, indices.to(torch.int64)


def op_inputs(
    G: int, N: int, Hd: int, A: int, D: int | None, *, dtype: torch.dtype, generator: torch.Generator, device="cpu"
) -> dict[str, torch.Tensor | None]:
    """Random S, R, Q, K, W2, b2 (W2/b2 None when D is None), scaled to keep values O(1)."""

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=generator, dtype=torch.float64) * scale).to(dtype).to(device)

    return {
        "S": rnd(G, N, Hd),
        "R": rnd(G, N, Hd),
        "Q": rnd(G, N, A),
        "K": rnd(G, N, A),
        "W2": rnd(D, Hd, scale=Hd**-0.5) if D is not None else None,
        "b2": rnd(D, scale=0.1) if D is not None else None,
    }


def case_inputs(
    spec: tuple, generator: torch.Generator, device: torch.device | str = "cpu"
) -> tuple[dict[str, torch.Tensor | None], torch.Tensor, torch.Tensor, int]:
    """Float64 op inputs, CSR graph and head count of a test case on ``device``.

    ``spec`` is ``(G, N, Hd, A, D, heads, max_degree, skewed_row)``: ``N = None`` takes the
    paper's 3,2,1 grid graph on a 6 x 6 map (14 nodes), else a random CSR (``random_csr``)
    with empty rows when ``N > 2``; ``D = None`` is one send layer (no ``W2``).
    """
    G, N, Hd, A, D, heads, max_degree, skewed = spec
    if N is None:
        from rstg_fast.graph import grid_graph

        g = grid_graph(((3, 3), (2, 2), (1, 1)), 6, 6)
        indptr, indices, N = g.indptr, g.indices, g.num_nodes
    else:
        indptr, indices = random_csr(N, max_degree, generator=generator, empty_rows=N > 2, skewed_row=skewed)
    x = op_inputs(G, N, Hd, A, D, dtype=torch.float64, generator=generator, device=device)
    return x, indptr.to(device), indices.to(device), heads


def assert_close(
    actual: torch.Tensor, expected_f64: torch.Tensor, expected_same_dtype: torch.Tensor | None, name: str
) -> None:
    """``actual`` vs a float64 oracle, allowed 2x the same-dtype reference's own error + floor."""
    dtype = actual.dtype
    a, e = actual.detach().double().cpu(), expected_f64.detach().double().cpu()
    assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} != expected {tuple(e.shape)}"
    finite = torch.isfinite(e)
    # Element by element, NaN where the oracle has NaN, +inf where +inf, -inf where -inf (a
    # NaN is never equal to itself, so the three masks are compared, not the values).
    for kind, mask in (("NaN", torch.isnan), ("+inf", torch.isposinf), ("-inf", torch.isneginf)):
        got, want = mask(a), mask(e)
        if not torch.equal(got, want):
            where = (got != want).nonzero()
            raise AssertionError(
                f"{name}: {kind} pattern differs at {where.shape[0]} of {e.numel()} elements, first "
                f"{[tuple(i) for i in where[:5].tolist()]} (got {[float(a[tuple(i)]) for i in where[:5]]}, "
                f"want {[float(e[tuple(i)]) for i in where[:5]]}; an unwritten, swallowed or spurious non-finite?)"
            )
    if not finite.any():
        return
    magnitude = max(1.0, float(e[finite].abs().max()))
    own_error = 0.0
    if expected_same_dtype is not None and dtype != torch.float64:
        own = expected_same_dtype.detach().double().cpu()
        both = finite & torch.isfinite(own)
        own_error = float((own - e)[both].abs().max()) if both.any() else 0.0
    bound = 2.0 * own_error + TOLERANCE_FLOOR[dtype] * magnitude
    err = torch.where(finite, a - e, 0.0).abs()  # full shape, so the worst indices are the tensor's own
    worst = float(err.max())
    if not worst <= bound:
        top = torch.topk(err.flatten(), min(5, err.numel())).indices
        detail = ", ".join(
            f"{list(idx)} got {float(a[idx]):.6g} want {float(e[idx]):.6g}"
            for idx in zip(*(c.tolist() for c in torch.unravel_index(top, err.shape)), strict=True)
        )
        raise AssertionError(
            f"{name} ({dtype}): max error {worst:.3g} > bound {bound:.3g} "
            f"(2 x own-dtype error {own_error:.3g} + floor {TOLERANCE_FLOOR[dtype]:.1g} x {magnitude:.3g}); "
            f"worst {detail}"
        )


# Non-finite values for the propagation tests (docs/design.md §2: PyTorch's semantics).
NONFINITE = {"nan": math.nan, "posinf": math.inf, "neginf": -math.inf}
OP_INPUTS = ("S", "R", "Q", "K", "W2", "b2")


def with_nonfinite(
    x: dict[str, torch.Tensor | None], name: str, value: float, whole_row: bool, indptr: torch.Tensor,
    indices: torch.Tensor,
) -> dict[str, torch.Tensor | None]:  # fmt: skip
    """A copy of the op inputs ``x`` with ``value`` written into one element of input ``name``,
    or into a whole row of it (the last dimension; all of ``b2``).

    The element is one that reaches an edge: graph 0, the busiest destination ``i`` for ``R``
    and ``Q``, its first source for ``S`` and ``K``; row 1, column 1 of ``W2``; ``b2[1]``.
    """
    x = {k: (v.clone() if v is not None else None) for k, v in x.items()}
    t = x[name]
    degrees = indptr[1:] - indptr[:-1]
    i = int(torch.argmax(degrees))
    node = int(indices[indptr[i]]) if name in ("S", "K") else i
    col = min(1, t.shape[-1] - 1)
    index = {"W2": (min(1, t.shape[0] - 1),), "b2": ()}.get(name, (0, node))
    with torch.no_grad():
        if whole_row:
            t[index] = value
        else:
            t[(*index, col)] = value
    return x


def minus_inf_scores_case(generator: torch.Generator, *, G: int = 2, Hd: int = 8, A: int = 4, D: int = 6):
    """``(x, indptr, indices)``: float64 op inputs (two heads) where scores of head 0 are -inf.

    Node 0 is a hub with sources 1..40 (split into two 20-edge items by the triton and cuda
    plans, whose chunk is 32); node 1 has source 0 twice, nodes 2..20 have it once, 21..40 none.
    In graph 0, ``K[0, 0, 0] = -inf`` with ``Q[0, 1, 0] = 1`` makes every score of node 1 -inf
    (the reference: exp(-inf - -inf), a NaN row), and the other destinations of source 0 score
    +-inf; ``K[0, 1..20, 0] = -inf`` with ``Q[0, 0, 0] = 1`` makes the hub's first item all -inf
    while its second is finite (weight 0 for those edges: a finite row). Graph 1 is untouched.
    """
    N = 41
    rows = [list(range(1, 41)), [0, 0], *[[0] for _ in range(2, 21)], *[[] for _ in range(21, 41)]]
    indptr = torch.tensor([0, *torch.tensor([len(r) for r in rows]).cumsum(0).tolist()], dtype=torch.int64)
    indices = torch.tensor([j for r in rows for j in r], dtype=torch.int64)
    x = op_inputs(G, N, Hd, A, D, dtype=torch.float64, generator=generator)
    x["K"][0, 0, 0] = -math.inf
    x["Q"][0, 1, 0] = 1.0
    x["K"][0, 1:21, 0] = -math.inf
    x["Q"][0, 0, 0] = 1.0
    return x, indptr, indices


def child_pythonpath(*extra: str) -> str:
    """PYTHONPATH for a Python subprocess of a test: the folder of the ``rstg_fast`` this
    process imported first (the installed build in CI, the source tree in a dev build), then
    ``extra`` folders, then this process's ``sys.path``. Putting the repository first instead
    made the children of a clean-clone CI import the source tree, which has no compiled
    extension, so they ran on the reference backend without saying so."""
    import rstg_fast

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(rstg_fast.__file__)))
    return os.pathsep.join([package_root, *extra, *sys.path])


def cpu_device_for(backend: str) -> torch.device:
    """The CPU, for a backend that can run on CPU tensors here (triton only under
    TRITON_INTERPRET=1, as CI runs it); otherwise the test is skipped with the backend's reason."""
    import pytest

    from rstg_fast.ops import backends

    why = backends.BACKENDS[backend].unavailable(torch.device("cpu"))
    if why is not None:
        pytest.skip(reason=f"backend {backend!r} cannot run on CPU tensors here ({why})")
    return torch.device("cpu")
