"""Exact area pooling (TensorFlow resize_area weights), node order, and painting."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rstg_fast.graph import grid_graph
from rstg_fast.pooling import area_matrix, paint_matrix, paint_nodes, pool_nodes, pooling_matrix


def test_area_matrix_hand_computed_5_to_3():
    # span 5/3: [0, 5/3) covers pixel 0 fully and 2/3 of pixel 1, and so on
    want = torch.tensor(
        [[3 / 5, 2 / 5, 0, 0, 0], [0, 1 / 5, 3 / 5, 1 / 5, 0], [0, 0, 0, 2 / 5, 3 / 5]], dtype=torch.float64
    )
    torch.testing.assert_close(area_matrix(5, 3), want, rtol=0, atol=1e-15)


def test_area_matrix_hand_computed_upsample_2_to_3():
    # out > in: each output cell of length 2/3 sits inside one or across two input pixels
    want = torch.tensor([[1, 0], [1 / 2, 1 / 2], [0, 1]], dtype=torch.float64)
    torch.testing.assert_close(area_matrix(2, 3), want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("n_in,n_out", [(6, 3), (14, 3), (13, 2), (7, 7), (1, 1), (28, 14), (5, 1), (59, 13)])
def test_area_matrix_equals_supersampled_block_average(n_in, n_out):
    # independent construction: repeat each pixel n_out times, average blocks of n_in samples
    eye = torch.eye(n_in, dtype=torch.float64)
    fine = eye.repeat_interleave(n_out, dim=1)  # (in, in*out)
    want = fine.reshape(n_in, n_out, n_in).mean(2).t()  # (out, in)
    got = area_matrix(n_in, n_out)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-14)
    torch.testing.assert_close(got.sum(1), torch.ones(n_out, dtype=torch.float64), rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "H,W,scales", [(6, 6, ((3, 3), (2, 2), (1, 1))), (14, 14, ((7, 7), (2, 2), (1, 1))), (6, 4, ((3, 2), (1, 1)))]
)
def test_pool_equals_adaptive_avg_pool_when_sizes_divide(H, W, scales):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, H, W, generator=g, dtype=torch.float64)
    nodes = pool_nodes(x, pooling_matrix(scales, H, W))  # (B, T, N, C)
    want = []
    for sh, sw in scales:  # scale by scale, row-major inside a scale
        p = F.adaptive_avg_pool2d(x.flatten(1, 2), (sh, sw)).view(2, 5, 3, sh * sw)
        want.append(p.permute(0, 2, 3, 1))
    torch.testing.assert_close(nodes, torch.cat(want, 2), rtol=0, atol=1e-13)


def test_pool_non_divisible_by_hand():
    # 5 x 3 map to a 3 x 1 scale: node r is the weighted row average with area_matrix(5, 3)
    x = torch.arange(15, dtype=torch.float64).view(1, 1, 1, 5, 3)
    nodes = pool_nodes(x, pooling_matrix(((3, 1),), 5, 3))[0, 0, :, 0]
    rows = x[0, 0, 0].mean(1)  # 1, 4, 7, 10, 13
    want = torch.tensor([0.6 * 1 + 0.4 * 4, 0.2 * 4 + 0.6 * 7 + 0.2 * 10, 0.4 * 10 + 0.6 * 13], dtype=torch.float64)
    torch.testing.assert_close(rows, torch.tensor([1.0, 4, 7, 10, 13], dtype=torch.float64))
    torch.testing.assert_close(nodes, want, rtol=0, atol=1e-13)


def test_node_count_matches_graph():
    scales = ((3, 3), (2, 2), (1, 1))
    assert pooling_matrix(scales, 7, 5).shape == (grid_graph(scales, 7, 5).num_nodes, 35)


@pytest.mark.parametrize("H,W", [(6, 6), (7, 5), (14, 14)])
def test_paint_is_scaled_transpose_with_unit_pixel_weights(H, W):
    scales = ((3, 3), (2, 2), (1, 1))
    pool, paint = pooling_matrix(scales, H, W), paint_matrix(scales, H, W)
    start = 0
    for sh, sw in scales:
        n = sh * sw
        block = paint[:, start : start + n]
        torch.testing.assert_close(block, pool[start : start + n].t() * (H * W / n), rtol=0, atol=1e-13)
        torch.testing.assert_close(block.sum(1), torch.ones(H * W, dtype=torch.float64), rtol=0, atol=1e-13)
        start += n


def test_paint_is_nearest_upsampling_when_sizes_divide():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)  # (B, T, N=4 of a 2x2 scale, C)
    out = paint_nodes(v, paint_matrix(((2, 2),), 6, 4), 6, 4)  # (B, C, T, 6, 4)
    grid = v.view(2, 3, 2, 2, 5).permute(0, 4, 1, 2, 3)  # (B, C, T, 2, 2)
    want = grid.repeat_interleave(3, dim=3).repeat_interleave(2, dim=4)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-14)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="in_size"):
        area_matrix(0, 3)
    with pytest.raises(ValueError, match="out_size"):
        area_matrix(3, 0)
    with pytest.raises(ValueError, match="pool"):
        pool_nodes(torch.zeros(1, 2, 1, 6, 6), pooling_matrix(((2, 2),), 5, 5))
