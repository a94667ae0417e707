"""swap_in: reference RSTG blocks inside a user's model become rstg_fast.RSTG, same behaviour."""

from __future__ import annotations

import copy
import logging

import torch
from model_cases import TINY, make, video
from rstg_testing import assert_close
from torch import nn

import rstg_fast
import rstg_fast.reference
from rstg_fast.swap import fast_copy


class Net(nn.Module):
    """A user's model: a map block inside a Sequential, a vec head at the top level."""

    def __init__(self):
        super().__init__()
        block = make(rstg_fast.reference.RSTG, readout="map", seed=1, positional=True)
        self.body = nn.Sequential(nn.Conv3d(12, 12, 1), block)
        self.head = make(rstg_fast.reference.RSTG, seed=2, schedule="homogeneous", heads=2)
        self.fc = nn.Linear(TINY["node_dim"], 3)

    def forward(self, x):
        return self.fc(self.head(self.body(x)))


def test_swap_in_replaces_every_reference_block(caplog):
    net = Net().double().eval()
    x = video()
    want = net(x)
    with caplog.at_level(logging.INFO, logger="rstg_fast.swap"):
        names = rstg_fast.swap_in(net)
    assert names.model is net
    assert sorted(names) == ["body.1", "head"]
    assert "body.1" in caplog.text and "head" in caplog.text
    assert type(net.head) is rstg_fast.RSTG
    assert type(net.body[1]) is rstg_fast.RSTG
    assert not any(isinstance(m, rstg_fast.reference.RSTG) for m in net.modules())
    assert not net.training and not net.head.training
    p = next(net.head.parameters())
    assert p.dtype == torch.float64 and p.device == x.device
    assert net.head.schedule == "homogeneous" and net.body[1].readout_kind == "map" and net.body[1].positional
    assert_close(net(x), want, None, "swapped net output")
    again = rstg_fast.swap_in(net)
    assert again == [] and again.model is net  # nothing left to replace


def test_swap_in_keeps_train_mode_and_gradients_flow():
    net = Net().double().train()
    rstg_fast.swap_in(net)
    assert net.head.training and net.body[1].training
    net(video()).sum().backward()
    assert net.body[1].space.send[0].weight.grad is not None


def test_top_level_reference_model():
    ref = make(rstg_fast.reference.RSTG, heads=2, scalewise_update=True).eval()
    result = rstg_fast.swap_in(ref)
    assert result == [""]  # cannot replace itself in place: the new model comes back as .model
    assert type(ref) is rstg_fast.reference.RSTG
    x = video()
    for fast in (result.model, fast_copy(ref)):
        assert type(fast) is rstg_fast.RSTG and not fast.training
        assert_close(fast(x), ref(x), None, "swapped model output")


def test_fast_copy_keeps_frozen_parameters_frozen():
    ref = make(rstg_fast.reference.RSTG)
    ref.space.requires_grad_(False)
    fast = fast_copy(ref)
    assert all(not p.requires_grad for p in fast.space.parameters())
    assert all(p.requires_grad for p in fast.final_time.parameters())


def test_fast_copy_float32_and_backend():
    ref = rstg_fast.reference.RSTG(12, **TINY, time_cell="gru", send_layers=1, update_layers=1)
    fast = fast_copy(ref, backend="reference")
    assert fast.space.backend == "reference"
    assert fast.space.send_layers == 1 and len(fast.space.update.mlps[0]) == 2
    ref64 = copy.deepcopy(ref).double()  # the oracle; the float32 reference is the yardstick
    x = video(dtype=torch.float32)
    assert_close(fast(x), ref64(x.double()), ref(x), "fast_copy float32 output")


def test_swap_in_keeps_shared_instances_shared():
    """One reference instance in two slots (a ModuleList [r, r], or two parents) becomes one
    fast instance in both: weights stay tied (hardening #14 item 6)."""
    r = make(rstg_fast.reference.RSTG, seed=3)
    other = make(rstg_fast.reference.RSTG, seed=4)
    pair = nn.ModuleList([r, r, other])
    a, b = nn.Sequential(r), nn.Sequential(r)
    net = nn.ModuleDict({"pair": pair, "a": a, "b": b}).double().eval()
    params = sum(p.numel() for p in net.parameters())
    x = video()
    want = r(x)
    names = rstg_fast.swap_in(net)
    assert sorted(names) == ["a.0", "b.0", "pair.0", "pair.1", "pair.2"]
    fast = net["pair"][0]
    assert type(fast) is rstg_fast.RSTG
    assert net["pair"][1] is fast and net["a"][0] is fast and net["b"][0] is fast
    assert net["pair"][2] is not fast and type(net["pair"][2]) is rstg_fast.RSTG
    assert not any(isinstance(m, rstg_fast.reference.RSTG) for m in net.modules())
    assert sum(p.numel() for p in net.parameters()) == params  # tied weights are counted once, as before
    assert_close(net["b"](x), want, None, "shared swapped block output")
    with torch.no_grad():
        next(net["a"].parameters()).add_(1.0)  # an update through one parent is seen through the others
    assert torch.equal(next(net["pair"][1].parameters()), next(net["b"].parameters()))
