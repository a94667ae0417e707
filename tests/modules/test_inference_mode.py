"""Serving: ``torch.inference_mode()`` and a stream of input sizes (issue: hardening)."""

from __future__ import annotations

import pytest
import torch
from rstg_testing import cpu_device_for

import rstg_fast
from rstg_fast.modules.graph_cache import MAX_SIZES


@pytest.mark.parametrize("readout", ["vec", "map"])
@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
def test_inference_mode_gives_the_no_grad_output_and_leaves_the_model_usable(backend, readout):
    device = cpu_device_for(backend)
    torch.manual_seed(0)
    model = rstg_fast.RSTG(4, node_dim=8, message_dim=8, readout=readout, backend=backend).to(device)
    x = torch.randn(2, 4, 3, 6, 6, device=device)
    with torch.inference_mode():  # the first call at this size: the graph is built here
        served = model(x)
        stream = model.stream()
        streamed = [stream.step(x[:, :, t]) for t in range(3)]
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(served, expected, rtol=0, atol=0)
    torch.testing.assert_close(streamed[-1], expected if readout == "vec" else expected[:, :, -1])
    y = model(x)  # outside inference mode the cached graph still works, with autograd
    y.sum().backward()
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)  # grad mode may pick other LSTM kernels


def test_graph_cache_keeps_the_most_recently_used_sizes():
    model = rstg_fast.RSTG(4, node_dim=8, message_dim=8)
    sizes = list(range(3, 3 + MAX_SIZES + 4))
    for h in sizes:
        model(torch.randn(1, 4, 1, h, h))
    model(torch.randn(1, 4, 1, sizes[-MAX_SIZES], sizes[-MAX_SIZES]))  # used again: kept
    model(torch.randn(1, 4, 1, 40, 40))  # one more size: the least recently used goes
    kept = list(model.graphs.sizes.keys())
    assert len(kept) == MAX_SIZES
    assert (
        f"{sizes[-MAX_SIZES]}x{sizes[-MAX_SIZES]}" in kept
        and f"{sizes[-MAX_SIZES + 1]}x{sizes[-MAX_SIZES + 1]}" not in kept
    )
    assert kept[-1] == "40x40"
