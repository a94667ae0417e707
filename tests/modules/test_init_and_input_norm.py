"""``init="paper" | "torch"`` and ``input_norm="none" | "batch"`` (docs/design.md §1), in both
model classes."""

from __future__ import annotations

import math

import pytest
import torch
from model_cases import SCHEDULES, TINY, pair, video

import rstg_fast
import rstg_fast.reference
from rstg_fast.modules.time_stage import TimeStage

MODELS = [rstg_fast.RSTG, rstg_fast.reference.RSTG]
MIN_SPREAD = 0.02  # of the output's size; the default init gives >= 3.3 % here, PyTorch's 0.09 %


def spread(model: torch.nn.Module, x: torch.Tensor) -> float:
    """How much the RSTG-to-vec output varies across the videos of ``x``, relative to its size:
    ``|std over videos| / mean |output|``."""
    with torch.no_grad():
        y = model.eval()(x)
    return float(y.std(0).norm() / y.norm(dim=1).mean())


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_default_model_is_not_a_constant_function_at_initialisation(schedule):
    torch.manual_seed(0)
    x = torch.rand(32, 16, 10, 6, 6)  # non-negative, like ReLU features: a large common part
    for node_dim in (64, 256):
        model = rstg_fast.RSTG(16, node_dim=node_dim, message_dim=node_dim, schedule=schedule)
        assert spread(model, x) > MIN_SPREAD, (schedule, node_dim)


def test_torch_init_collapses_where_the_paper_init_does_not():
    # the measurement behind the default (docs/model.md): PyTorch's biases swamp the input
    torch.manual_seed(0)
    x = torch.rand(32, 16, 10, 6, 6)
    model = rstg_fast.RSTG(16, node_dim=64, message_dim=64, init="torch")
    assert spread(model, x) < MIN_SPREAD / 4


@pytest.mark.parametrize("cls", MODELS)
def test_paper_init_is_glorot_with_zero_biases(cls):
    torch.manual_seed(0)
    model = cls(12, node_dim=32, message_dim=48, readout="map")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears
    for m in linears:
        bound = math.sqrt(6.0 / sum(m.weight.shape))
        assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.8 * bound
        assert torch.equal(m.bias, torch.zeros_like(m.bias))
    cells = [m for m in model.modules() if isinstance(m, TimeStage)]
    assert cells
    for cell in cells:
        bound = math.sqrt(6.0 / (2 * cell.dim))  # one (dim, dim) block per gate
        for w in (cell.weight_ih, cell.weight_hh):
            assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
        assert not cell.bias_ih.any() and not cell.bias_hh.any()
    assert not model.readout.scale.any()


@pytest.mark.parametrize("cls", MODELS)
def test_torch_init_keeps_module_defaults(cls):
    torch.manual_seed(0)
    model = cls(12, **TINY, init="torch")
    assert any(m.bias.abs().max() > 0 for m in model.modules() if isinstance(m, torch.nn.Linear))


@pytest.mark.parametrize("bad", [dict(init="glorot"), dict(input_norm="layer"), dict(input_norm=None)])
def test_bad_choices_name_the_argument(bad):
    (name,) = bad
    with pytest.raises(ValueError, match=name):
        rstg_fast.RSTG(12, **TINY, **bad)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_input_norm_batch_matches_across_models_and_state_dicts(schedule):
    ref, fast = pair(input_norm="batch", schedule=schedule)
    assert "input_norm.running_mean" in ref.state_dict()
    x = video()
    torch.testing.assert_close(fast(x), ref(x))  # training mode: batch statistics
    ref.load_state_dict(fast.state_dict())  # running statistics, both ways
    torch.testing.assert_close(fast.eval()(x), ref.eval()(x))


def test_input_norm_batch_statistics_cover_every_video_frame_and_node():
    model = rstg_fast.RSTG(12, **TINY, input_norm="batch").double()
    x = video(B=3, T=4)
    graph = model._graph(x)
    v = model.embed(x, graph)  # (B, T, N, D), normalised in training mode
    flat = v.reshape(-1, v.shape[-1])
    torch.testing.assert_close(flat.mean(0), torch.zeros_like(flat[0]), rtol=0, atol=1e-12)
    torch.testing.assert_close(flat.var(0, unbiased=False), torch.ones_like(flat[0]), rtol=1e-4, atol=0)
