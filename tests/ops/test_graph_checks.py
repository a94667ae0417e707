"""The CSR a kernel reads is always checked: edits behind the version counter, inference
tensors, and the one cache rule of ``rstg_fast.ops._graph_cache`` (issue: hardening)."""

from __future__ import annotations

import pytest
import torch
from test_message_attention import ALL_BACKENDS, _valid, device_for

from rstg_fast.ops import backends, message_attention
from rstg_fast.ops._graph_cache import GraphCache, checked_csr


def _edit_behind_version(t: torch.Tensor, i: int, value: int) -> None:
    if t.device.type == "cpu":
        t.numpy()[i] = value  # numpy writes do not bump the version counter
    else:
        t.data[i] = value


@pytest.mark.parametrize("value", [1000, 10**12, -5], ids=["1000", "1e12", "negative"])
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_edit_behind_the_version_counter_never_reaches_a_kernel(backend, value):
    device = device_for(backend)
    kw = _valid(device)
    message_attention(**kw, backend=backend)  # a checked call first (it used to be cached)
    version = kw["indices"]._version
    _edit_behind_version(kw["indices"], 5, value)
    assert kw["indices"]._version == version  # the edit is invisible to PyTorch
    if device.type == "cpu":  # checked on every call: the edit is seen
        with pytest.raises(ValueError, match=rf"indices\[5\] = {value}"):
            message_attention(**kw, backend=backend)
    else:  # CUDA: the kernels read the private copy checked before the edit
        torch.testing.assert_close(
            message_attention(**kw, backend=backend), message_attention(**_valid(device), backend=backend)
        )


# CPU tensors only: CUDA kernels read the private copy checked in the forward (test above)
@pytest.mark.parametrize("backend", [b for b in ALL_BACKENDS if "cpu" in backends.BACKENDS[b].devices])
def test_edit_between_forward_and_backward_is_checked(backend):
    device = device_for(backend)
    assert device.type == "cpu"
    kw = _valid(device)
    for k in ("S", "R", "Q", "K", "W2", "b2"):
        kw[k].requires_grad_(True)
    out = message_attention(**kw, backend=backend)
    _edit_behind_version(kw["indices"], 3, 10**12)
    with pytest.raises(ValueError, match=r"indices\[3\]"):
        out.sum().backward()


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_inference_tensors(backend):
    device = device_for(backend)
    kw = _valid(device)
    expected = message_attention(**kw, backend=backend)
    with torch.inference_mode():
        inference_kw = {k: v.clone() for k, v in kw.items()}  # inference tensors: no version counter
        for _ in range(2):
            torch.testing.assert_close(message_attention(**inference_kw, backend=backend), expected)
    torch.testing.assert_close(message_attention(**kw, backend=backend), expected)


def test_graph_cache_rule():
    cache = GraphCache()
    indptr, indices = torch.tensor([0, 1, 2]), torch.tensor([1, 0])
    calls = []

    def build():
        calls.append(1)
        return len(calls)

    assert cache.get(indptr, indices, "k", build) == 1
    assert cache.get(indptr, indices, "k", build) == 1  # hit
    assert cache.get(indptr, indices, "other", build) == 2  # keys are separate
    indices.add_(0)  # an in-place edit bumps the version: every key of the graph is stale
    assert cache.get(indptr, indices, "k", build) == 3
    assert cache.get(indptr.clone(), indices, "k", build) == 4  # another indptr: another graph
    with torch.inference_mode():
        ip, ix = torch.tensor([0, 1, 2]), torch.tensor([1, 0])
        assert cache.get(ip, ix, "k", build) == 5
        assert cache.get(ip, ix, "k", build) == 6  # never cached: no version counter


def test_checked_csr_widens_int32_and_refuses_bad_graphs():
    ip, ix = checked_csr(torch.tensor([0, 1, 2], dtype=torch.int32), torch.tensor([1, 0], dtype=torch.int32))
    assert ip.dtype == ix.dtype == torch.int64
    with pytest.raises(ValueError, match=r"indices\[1\] = 2"):
        checked_csr(torch.tensor([0, 1, 2]), torch.tensor([1, 2]))
