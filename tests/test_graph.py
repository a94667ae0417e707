"""The graph builder against hand-checked cases (docs/design.md §1)."""

import numpy as np
import pytest
import torch

from rstg_fast.graph import grid_graph, grid_regions, positional_maps

PAPER_SCALES = ((3, 3), (2, 2), (1, 1))


def edges(g):
    dst = torch.repeat_interleave(torch.arange(g.num_nodes), g.degrees())
    return {(int(s), int(d)) for s, d in zip(g.indices, dst, strict=True)}


@pytest.mark.parametrize("size", [6, 14], ids=["6x6", "14x14"])
def test_paper_scales_counts_and_degrees(size):
    g = grid_graph(PAPER_SCALES, size, size)
    assert g.num_nodes == 14 and g.num_edges == 90
    # 3x3 grid: corners 4 (2 grid neighbours + 2x2 cell + 1x1), edges 6, centre 9
    assert g.degrees().tolist() == [4, 6, 4, 6, 9, 6, 4, 6, 4, 7, 7, 7, 7, 13]
    assert g.scale_of_node.tolist() == [0] * 9 + [1] * 4 + [2]


def test_paper_scales_6x6_exact_neighbourhoods():
    g = grid_graph(PAPER_SCALES, 6, 6)
    e = edges(g)
    # 3x3 node 0 (cells [0,2)x[0,2)): grid neighbours 1 and 3 share a side; node 4 touches
    # only at the corner (2, 2) and is NOT connected; overlaps 2x2 node 9 and the 1x1 node 13.
    assert {s for s, d in e if d == 0} == {1, 3, 9, 13}
    # 2x2 node 9 (cells [0,3)x[0,3)) overlaps 3x3 nodes 0,1,3,4, shares sides with 10 and 11,
    # touches 12 only at a corner, and overlaps 13.
    assert {s for s, d in e if d == 9} == {0, 1, 3, 4, 10, 11, 13}
    assert {s for s, d in e if d == 13} == set(range(13))
    assert all((d, s) in e for s, d in e), "edges are symmetric"
    assert all(s != d for s, d in e), "no self loops by default"


def test_csr_is_sorted_by_source_and_self_loops_option():
    g = grid_graph(PAPER_SCALES, 14, 14, self_loops=True)
    assert g.num_edges == 90 + 14
    for i in range(g.num_nodes):
        row = g.indices[g.indptr[i] : g.indptr[i + 1]]
        assert torch.all(row[1:] > row[:-1]) and i in row.tolist()


def test_integer_cells_leave_leftover_uncovered():
    regions, _ = grid_regions(PAPER_SCALES, 14, 14)
    # 14 // 3 = 4: cells [0,4), [4,8), [8,12); rows 12-13 are not covered (authors' rule)
    assert regions[:9, 1].max() == 12 and regions[8].tolist() == [8, 12, 8, 12]
    assert regions[9:13].tolist() == [[0, 7, 0, 7], [0, 7, 7, 14], [7, 14, 0, 7], [7, 14, 7, 14]]


@pytest.mark.parametrize(
    "scales,size,nodes,num_edges",
    [
        (((14, 14), (7, 7), (3, 3), (1, 1)), 14, 255, 3212),
        (((28, 28), (14, 14), (7, 7), (3, 3), (1, 1)), 28, 1039, 17206),
    ],
    ids=["dense", "huge"],
)
def test_canonical_large_graphs(scales, size, nodes, num_edges):
    g = grid_graph(scales, size, size)
    assert (g.num_nodes, g.num_edges) == (nodes, num_edges)
    assert int(g.degrees()[-1]) == nodes - 1  # the 1x1 node hears everyone


def test_rectangular_scales_and_bad_input():
    g = grid_graph(((2, 3), (1, 1)), 4, 6)
    assert g.num_nodes == 7 and g.regions[5].tolist() == [2, 4, 4, 6]
    with pytest.raises(ValueError, match="scales"):
        grid_graph(((0, 2),), 4, 4)
    with pytest.raises(ValueError, match="height"):
        grid_graph(((5, 5),), 4, 4)
    with pytest.raises(ValueError, match="scales"):
        grid_graph("abc", 4, 4)


@pytest.mark.parametrize(
    "args,kwargs,name",
    [((((3, 3),), None, 6), {}, "height"), ((((3, 3),), 6.9, 6), {}, "height"), ((((3, 3),), 6, "6"), {}, "width"),
     ((((3, 3),), True, 6), {}, "height"), ((((3, 3),), torch.tensor([6, 6]), 6), {}, "height"),
     ((((2.7, 2),), 6, 6), {}, "scales"), ((((3, True),), 6, 6), {}, "scales"),
     ((((3, 3),), 6, 6), {"self_loops": "no"}, "self_loops"), ((((3, 3),), 6, 6), {"self_loops": 1}, "self_loops")],
    ids=["height-None", "height-float", "width-str", "height-bool", "height-tensor", "scale-float", "scale-bool",
         "self_loops-str", "self_loops-int"],
)
def test_grid_graph_refuses_non_integers(args, kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must"):
        grid_graph(*args, **kwargs)


def test_grid_graph_accepts_numpy_and_torch_integers():
    want = grid_graph(((3, 3), (2, 2)), 6, 7)
    got = grid_graph(((np.int64(3), torch.tensor(3)), (2, np.int32(2))), np.int64(6), torch.tensor(7), np.bool_(False))
    assert got.scales == want.scales and (got.height, got.width) == (6, 7)
    assert type(got.height) is int and type(got.scales[0][1]) is int
    assert torch.equal(got.indptr, want.indptr) and torch.equal(got.indices, want.indices)


@pytest.mark.parametrize("dim_map", [2, 0, 6.5, "6", None])
def test_positional_maps_bad_dim_map_is_named(dim_map):
    with pytest.raises(ValueError, match=r"^dim_map must"):
        positional_maps(grid_graph(((3, 3), (1, 1)), 6, 6), dim_map)


def test_positional_maps_are_cell_gaussians():
    g = grid_graph(PAPER_SCALES, 14, 14)
    maps = positional_maps(g, 6).view(14, 6, 6)
    assert maps.shape == (14, 6, 6)
    # node 0: cell [0,2)x[0,2), centre (0.5, 0.5): four equal values exp(-0.5 / 8), zero elsewhere
    expected = torch.zeros(6, 6)
    expected[:2, :2] = torch.exp(torch.tensor(-0.5 / 8))
    torch.testing.assert_close(maps[0], expected)
    # 1x1 node: whole map, centre (2.5, 2.5)
    y = torch.arange(6.0)
    full = torch.exp(-((y[:, None] - 2.5) ** 2 + (y[None, :] - 2.5) ** 2) / 8)
    torch.testing.assert_close(maps[13], full)
    assert torch.equal(positional_maps(PAPER_SCALES, 6), positional_maps(g, 6))
