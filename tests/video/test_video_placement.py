"""RSTG placement inside the video trunks: one description, every paper configuration."""

from __future__ import annotations

import pytest
import torch
from video_testing import TINY, MapProbe

from rstg_fast.video import PRESETS, Placement, VideoClassifier, parse_placement

PAPER_ROWS = ["vec", "res2", "res3", "res4", "res3-4"]
TINY_RSTG = {"node_dim": 8, "message_dim": 8, "iterations": 1, "backend": "reference"}


def test_parse_placement():
    assert parse_placement("res3-4") == Placement(("res3", "res4"), False)
    assert parse_placement("vec") == Placement((), True)
    assert parse_placement("none") == Placement()
    assert parse_placement("res4+res2+vec") == Placement(("res2", "res4"), True)  # network order
    assert parse_placement(" RES4 ") == Placement(("res4",))
    for name in PRESETS:
        assert parse_placement(name).name == name
    assert parse_placement("res2+res5").name == "res2+res5"
    with pytest.raises(ValueError, match="res6"):
        parse_placement("res6")
    with pytest.raises(ValueError, match="repeat"):
        Placement(("res3", "res3"))
    with pytest.raises(ValueError, match="non-empty"):
        parse_placement("")


@pytest.mark.parametrize("placement", ["none", *PAPER_ROWS, "res2+res5+vec"])
def test_blocks_sit_where_the_placement_says(placement):
    model = VideoClassifier("i3d", 5, placement, graph_factory=MapProbe, **TINY)
    p = parse_placement(placement)
    assert list(model.graphs) == list(p.maps)
    model(torch.randn(2, 3, 8, 64, 64))
    want = {"res2": (2, 16, 4, 16, 16), "res3": (2, 32, 4, 8, 8), "res4": (2, 64, 4, 4, 4), "res5": (2, 128, 4, 2, 2)}
    for stage in p.maps:
        assert model.graphs[stage].seen == [want[stage]] and model.graphs[stage].readout == "map"
    if p.vec:
        assert model.vec_graph.seen == [want["res5"]] and model.fc.in_features == 6
    else:
        assert model.vec_graph is None and model.fc.in_features == 128


def test_state_dict_keys_keep_torchvision_names():
    model = VideoClassifier("c2d", 5, "res3-4+vec", graph_factory=MapProbe, **TINY)
    keys = list(model.state_dict())
    assert "graphs.res3.scale" in keys and "graphs.res4.proj.weight" in keys and "vec_graph.scale" in keys
    trunk = [k for k in keys if not k.startswith(("graphs.", "vec_graph."))]
    assert trunk == list(VideoClassifier("c2d", 5, **TINY).state_dict())


def _paired(placement, arch="i3d", **kw):
    torch.manual_seed(0)
    base = VideoClassifier(arch, 5, "none", dropout=0.0, **TINY).eval()
    graph = VideoClassifier(arch, 5, placement, dropout=0.0, **TINY, **kw).eval()
    missing, unexpected = graph.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("graphs.", "vec_graph.", "fc.")) for k in missing)
    return base, graph


@pytest.mark.parametrize("placement", ["res2", "res3", "res4", "res3-4"])
def test_map_probe_is_identity_at_init(placement):
    base, graph = _paired(placement, graph_factory=MapProbe)
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), base(x), rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["c2d", "i3d"])
@pytest.mark.parametrize("placement", ["res2", "res3", "res4", "res3-4"])
def test_rstg_to_map_is_identity_at_init(arch, placement):
    # the real RSTG: inserting it into a (pretrained) trunk leaves the output unchanged
    base, graph = _paired(placement, arch, rstg=TINY_RSTG)
    assert all(type(m).__name__ == "RSTG" for m in graph.graphs.values())
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(graph.forward_features(x), base.forward_features(x), rtol=1e-6, atol=1e-6)
    # ...but it is trainable: the loss reaches every RSTG parameter that the map path uses
    graph.train()
    graph(x).square().sum().backward()
    for stage, block in graph.graphs.items():
        grads = [p.grad for p in block.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), stage


def test_rstg_to_vec_head():
    torch.manual_seed(0)
    model = VideoClassifier("i3d", 5, "vec", rstg=TINY_RSTG, **TINY)
    assert model.fc.in_features == 8
    out = model(torch.randn(2, 3, 4, 96, 96))  # res5 is 3 x 3: the 3x3 scale needs at least that
    assert out.shape == (2, 5) and torch.isfinite(out).all()
