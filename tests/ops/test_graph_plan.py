"""The work plans shared by the ``cuda`` and ``triton`` launchers (``rstg_fast.ops._graph_plan``).

That both launchers pack the same split is tested in test_triton_backend.py (which must import
triton first)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rstg_testing import random_csr

from rstg_fast.ops._graph_cache import per_graph
from rstg_fast.ops._graph_plan import split_rows, transpose_csr, transposed
from rstg_fast.ops.backends.reference import destinations


def test_transpose_csr_lists_destinations_by_source():
    gen = torch.Generator().manual_seed(5)
    indptr, indices = random_csr(11, 6, generator=gen)
    t_ip, t_dst = transpose_csr(indptr, indices)
    dst = destinations(indptr, indices.numel())
    for j in range(11):
        want = sorted(dst[indices == j].tolist())
        assert t_dst[t_ip[j] : t_ip[j + 1]].tolist() == want
    assert transposed(indptr, indices) is transposed(indptr, indices)


@pytest.mark.parametrize("chunk", [0, 1, 5, 32], ids=lambda c: f"chunk{c}")
def test_split_rows_cuts_every_row_into_balanced_consecutive_items(chunk):
    gen = torch.Generator().manual_seed(chunk)
    indptr, _ = random_csr(17, 12, generator=gen, skewed_row=3)
    cut = split_rows(indptr, chunk)
    ip = indptr.numpy()
    for u in range(17):
        mine = np.flatnonzero(cut.item_node == u)
        sizes = cut.item_end[mine] - cut.item_begin[mine]
        deg = ip[u + 1] - ip[u]
        assert mine.size == (max(1, -(-deg // chunk)) if chunk > 0 else 1)
        assert sizes.max() - sizes.min() <= 1 and sizes.sum() == deg
        assert cut.item_begin[mine[0]] == ip[u] and np.array_equal(cut.item_begin[mine[1:]], cut.item_end[mine[:-1]])
    assert cut.slots == int((cut.item_slot >= 0).sum())


def test_per_graph_caches_per_key_and_forgets_edited_graphs():
    calls = []

    @per_graph
    def degree_sum(indptr, indices, scale):
        calls.append(scale)
        return int(indptr[-1]) * scale

    gen = torch.Generator().manual_seed(1)
    indptr, indices = random_csr(5, 3, generator=gen)
    assert degree_sum(indptr, indices, 2) == degree_sum(indptr, indices, 2) and calls == [2]
    degree_sum(indptr, indices, 3)
    indices.add_(0)  # an in-place edit bumps the version: everything derived is rebuilt
    degree_sum(indptr, indices, 2)
    assert calls == [2, 3, 2] and degree_sum.uncached(indptr, indices, 1) == indices.numel()
