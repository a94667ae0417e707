"""The reference RSTG on its own: shapes, each ablation a distinct path, readouts, positional
maps, the per-edge space stage against a plain loop, validation and the graph cache."""

from __future__ import annotations

import math

import pytest
import torch
from model_cases import SCHEDULES, TINY, make, video

import rstg_fast.reference
from rstg_fast.graph import grid_graph

Ref = rstg_fast.reference.RSTG


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("HW", [(6, 6), (7, 5)], ids=["6x6", "7x5"])
def test_shapes(schedule, HW):
    x = video(H=HW[0], W=HW[1])
    assert make(Ref, schedule=schedule)(x).shape == (2, TINY["node_dim"])
    assert make(Ref, schedule=schedule, readout="map")(x).shape == x.shape


def test_map_readout_is_identity_at_init():
    torch.manual_seed(0)
    model = Ref(12, **TINY, readout="map").double()
    x = video()
    assert torch.equal(model(x), x)
    model.readout.scale.data.fill_(0.1)
    assert not torch.allclose(model(x), x)


def test_input_projection_only_when_channels_differ():
    assert make(Ref, 12).input_proj is not None
    assert make(Ref, TINY["node_dim"]).input_proj is None
    assert make(Ref, TINY["node_dim"])(video(C=TINY["node_dim"])).shape == (2, TINY["node_dim"])


def _stage_calls(model, x):
    calls = []
    stages = [n for n in ("time", "space", "final_time") if getattr(model, n) is not None]
    hooks = [getattr(model, n).register_forward_hook(lambda *a, n=n: calls.append(n)) for n in stages]
    model(x)
    for h in hooks:
        h.remove()
    return calls


def test_scheduler_order():
    x = video()
    assert _stage_calls(make(Ref, schedule="all_time_stages"), x) == ["time", "space"] * 3 + ["final_time"]
    assert _stage_calls(make(Ref, schedule="homogeneous"), x) == ["time", "space"] * 3 + ["final_time"]
    assert _stage_calls(make(Ref, schedule="one_time_stage"), x) == ["space"] * 3 + ["final_time"]
    assert _stage_calls(make(Ref, schedule="space_only"), x) == ["space"] * 3
    assert _stage_calls(make(Ref, schedule="time_only"), x) == ["time"] * 3 + ["final_time"]
    assert _stage_calls(make(Ref, iterations=1), x) == ["time", "space", "final_time"]


def test_unused_stages_are_not_created():
    assert make(Ref, schedule="one_time_stage").time is None
    assert make(Ref, schedule="space_only").time is None and make(Ref, schedule="space_only").final_time is None
    assert make(Ref, schedule="time_only").space is None
    homo = make(Ref, schedule="homogeneous")
    assert not hasattr(homo.space, "update") and homo.space.message_proj is not None  # 24 -> 16
    assert make(Ref, schedule="homogeneous", message_dim=16).space.message_proj is None


def test_space_only_ignores_frame_order_all_time_stages_does_not():
    x = video(T=4)
    perm = torch.tensor([2, 0, 3, 1])
    space_only = make(Ref, schedule="space_only")
    torch.testing.assert_close(space_only(x[:, :, perm]), space_only(x), rtol=0, atol=1e-12)
    full = make(Ref, schedule="all_time_stages")
    assert (full(x[:, :, perm]) - full(x)).abs().max() > 1e-7


def test_space_only_map_is_the_same_for_every_frame_up_to_input():
    model = make(Ref, schedule="space_only", readout="map")
    x = video(T=4)
    delta = model(x) - x
    torch.testing.assert_close(delta, delta[:, :, :1].expand_as(delta), rtol=0, atol=1e-12)


def test_time_only_ignores_node_layout_the_graph_model_does_not():
    # a horizontal flip permutes the nodes inside every scale; time_only's space stage is a
    # mean over nodes, so it cannot tell; the positional graph model can
    x = video()
    time_only = make(Ref, schedule="time_only")
    torch.testing.assert_close(time_only(x.flip(-1)), time_only(x), rtol=0, atol=1e-12)
    graph = make(Ref, positional=True)
    assert (graph(x.flip(-1)) - graph(x)).abs().max() > 1e-7
    # and it does depend on frame order (the recurrent time stages)
    assert (time_only(x.flip(2)) - time_only(x)).abs().max() > 1e-7


def test_one_time_stage_differs_from_all_time_stages_with_shared_weights():
    one = make(Ref, schedule="one_time_stage")
    full = make(Ref, schedule="all_time_stages")
    full.load_state_dict(one.state_dict(), strict=False)  # all but the shared time stage
    x = video()
    assert (one(x) - full(x)).abs().max() > 1e-7


def test_homogeneous_space_stage_is_the_time_cell():
    model = make(Ref, schedule="homogeneous", message_dim=16)
    x = video()
    graph = model._graph(x)
    v = model.embed(x, graph).flatten(0, 1)  # (G, N, D)
    g = torch.relu(model.space.gather(v, graph) + model.space.gather_bias)
    # LSTM with the message as input and the node as both hidden and cell state
    cell = torch.nn.LSTMCell(16, 16).double()
    cell.load_state_dict(model.time.state_dict())
    h, _ = cell(g.flatten(0, 1), (v.flatten(0, 1), v.flatten(0, 1)))
    want = model.space.norm(h.view_as(v))
    torch.testing.assert_close(model.space(v, graph, model.time), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_time_stage_matches_torch_cells(cell_type):
    model = make(Ref, time_cell=cell_type)
    torch_cell = (torch.nn.LSTMCell if cell_type == "lstm" else torch.nn.GRUCell)(16, 16).double()
    torch_cell.load_state_dict(model.time.state_dict())
    x = torch.randn(2, 3, 5, 16, dtype=torch.float64)
    y, _ = model.time(x)
    state = None
    for t in range(3):
        out = torch_cell(x[:, t].flatten(0, 1), state)
        state = out
        h = out[0] if cell_type == "lstm" else out
        torch.testing.assert_close(y[:, t].flatten(0, 1), h, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_time_stage_compile_loop_equals_fused_eager_path(cell_type):
    # eager runs torch.lstm/torch.gru; torch.compile traces the explicit loop: same maths
    stage = make(Ref, time_cell=cell_type).time
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 5, 16, generator=g, dtype=torch.float64)
    state = tuple(torch.randn(2, 5, 16, generator=g, dtype=torch.float64) for _ in stage.initial_state(x[:, 0]))
    y_loop, s_loop = stage._loop(x, state)
    y_fused, s_fused = stage._fused(x, state)
    torch.testing.assert_close(y_loop, y_fused, rtol=0, atol=1e-12)
    for a, b in zip(s_loop, s_fused, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_positional_maps_enter_the_send_function():
    pos = make(Ref, positional=True)
    plain = make(Ref, positional=False)
    x = video()
    assert (pos(x) - plain(x)).abs().max() > 1e-7  # different random weights: sanity only
    # with the positional columns of the first send layer zeroed, positional == plain
    sd = pos.state_dict()
    W = sd["space.send.0.weight"]
    D = TINY["node_dim"]
    plain_sd = dict(sd, **{"space.send.0.weight": W[:, : 2 * D].clone()})
    plain.load_state_dict(plain_sd)
    before = pos(x)
    with torch.no_grad():
        pos.space.send[0].weight[:, 2 * D :] = 0
    torch.testing.assert_close(pos(x), plain(x), rtol=0, atol=1e-12)
    assert (before - pos(x)).abs().max() > 1e-7


def test_scalewise_update_has_one_mlp_per_scale():
    model = make(Ref, scalewise_update=True)
    assert len(model.space.update.mlps) == 3
    x = video()
    graph = model._graph(x)
    v = model.embed(x, graph).flatten(0, 1)
    before = model.space(v, graph)
    with torch.no_grad():  # change only the 1x1 scale's MLP: only node 13 moves
        model.space.update.mlps[2][0].weight.add_(1.0)
    diff = (model.space(v, graph) - before).abs().amax((0, 2))
    assert diff[:13].max() == 0 and diff[13] > 1e-3


def test_time_readout_last_is_the_last_frame():
    mean = make(Ref, time_readout="mean")
    last = make(Ref, time_readout="last")
    x = video()
    graph = last._graph(x)
    v, _ = last.propagate(last.embed(x, graph), graph)
    torch.testing.assert_close(last(x), v[:, -1].sum(1), rtol=0, atol=1e-12)
    torch.testing.assert_close(mean(x), v.mean(1).sum(1), rtol=0, atol=1e-12)


def test_reference_gather_against_a_loop_over_destinations():
    model = make(Ref, heads=2, positional=True)
    x = video(H=7, W=5)
    graph = model._graph(x)
    v = model.embed(x, graph).flatten(0, 1)  # (G, N, D)
    got = model.space.gather(v, graph)
    sp, h, M = model.space, 2, TINY["message_dim"]
    g = grid_graph(model.scales, 7, 5)
    P = sp.pos
    for gi in range(v.shape[0]):
        for i in range(g.num_nodes):
            srcs = g.indices[g.indptr[i] : g.indptr[i + 1]].tolist()
            out = torch.zeros(M, dtype=torch.float64)
            msgs = torch.stack([sp.send(torch.cat([v[gi, j], v[gi, i], P[j], P[i]])) for j in srcs])
            for c in range(h):
                sl = slice(c * M // h, (c + 1) * M // h)
                q = sp.query(v[gi, i])[sl]
                s = torch.stack([q @ sp.key(v[gi, j])[sl] for j in srcs]) / math.sqrt(M // h)
                out[sl] = (torch.softmax(s, 0)[:, None] * msgs[:, sl]).sum(0)
            torch.testing.assert_close(got[gi, i], out, rtol=0, atol=1e-12)


def test_isolated_node_gathers_zero():
    model = make(Ref, scales=((1, 1),))  # one node, no edges
    x = video()
    graph = model._graph(x)
    v = model.embed(x, graph).flatten(0, 1)
    assert torch.equal(model.space.gather(v, graph), torch.zeros(6, 1, TINY["message_dim"], dtype=torch.float64))
    out = model(x)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_graph_cache_is_per_size_and_not_in_state_dict():
    model = make(Ref)
    model(video(H=6, W=6))
    model(video(H=7, W=5))
    model(video(H=6, W=6))
    assert sorted(model.graphs.sizes.keys()) == ["6x6", "7x5"]
    assert not any("graphs" in k or k.endswith("pos") for k in model.state_dict())
    model.float()
    assert model.graphs.sizes["6x6"].pool.dtype == torch.float32
    assert model(video(dtype=torch.float32)).dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(heads=5), "heads"),
        (dict(heads=0), "heads"),
        (dict(schedule="bogus"), "schedule"),
        (dict(readout="grid"), "readout"),
        (dict(time_readout="max"), "time_readout"),
        (dict(time_cell="rnn"), "time_cell"),
        (dict(norm="batch"), "norm"),
        (dict(send_layers=3), "send_layers"),
        (dict(update_layers=0), "update_layers"),
        (dict(scales=((0, 2),)), "scales"),
        (dict(positional=True, dim_map=2), "dim_map"),
        (dict(schedule="homogeneous", scalewise_update=True), "scalewise_update"),
        (dict(backend="nope"), "backend"),
        (dict(node_dim=0), "node_dim"),
        (dict(attention_scale="0.5"), "attention_scale"),
        (dict(attention_scale=float("nan")), "attention_scale"),
        (dict(attention_scale=0.0), "attention_scale"),
        (dict(attention_scale=-1.0), "attention_scale"),
        (dict(attention_scale=True), "attention_scale"),
        (dict(schedule="time_only", attention_scale=float("inf")), "attention_scale"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Ref(12, **{**TINY, **kwargs})


def test_bad_input_raises():
    model = make(Ref)
    with pytest.raises(ValueError, match="x must have shape"):
        model(video(C=5))
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.zeros(2, 12, 6, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="height"):
        model(video(H=2, W=6))  # smaller than the 3x3 scale
    with pytest.raises(ValueError, match=r"x must have at least one frame"):
        model(video(T=0))
    with pytest.raises(ValueError, match=r"x must have the dtype of the model's parameters \(torch.float64\)"):
        model(video(dtype=torch.float32))
    with pytest.raises(ValueError, match="x must be a floating-point tensor"):
        model(video().long())
    assert all(b.dtype == torch.float64 for b in model.buffers() if b.is_floating_point())  # nothing converted
    model(video())  # still usable


def test_attention_scale_is_used():
    a = make(Ref, attention_scale=2)
    assert isinstance(a.space.scale, float) and a.space.scale == 2.0
    assert make(Ref, heads=2).space.scale == 1 / math.sqrt(TINY["message_dim"] // 2)


@pytest.mark.parametrize(
    "args,name",
    [((0,), "dim"), ((-3,), "dim"), ((16.0,), "dim"), ((True,), "dim"), ((16, "rnn"), "cell")],
)
def test_time_stage_bad_arguments(args, name):
    from rstg_fast.modules.time_stage import TimeStage

    with pytest.raises(ValueError, match=rf"^{name} must"):
        TimeStage(*args)
