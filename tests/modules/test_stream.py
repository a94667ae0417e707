"""RSTG.stream(): frame by frame, equal to the batch forward on the frames so far."""

from __future__ import annotations

import pytest
import torch
from model_cases import SCHEDULES, make, video

import rstg_fast
import rstg_fast.reference


def _check_stream(model, x):
    stream = model.stream()
    T = x.shape[2]
    for t in range(T):
        got = stream.step(x[:, :, t])
        batch = model(x[:, :, : t + 1])
        want = batch[:, :, -1] if model.readout_kind == "map" else batch
        torch.testing.assert_close(got, want, rtol=0, atol=1e-11, msg=f"frame {t}")
    return stream


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("readout", ["vec", "map"])
def test_stream_equals_batch_fast(schedule, readout):
    model = make(rstg_fast.RSTG, schedule=schedule, readout=readout, positional=True, heads=2)
    _check_stream(model, video(T=4, H=7, W=5))


@pytest.mark.parametrize(
    "kwargs",
    [dict(time_readout="last"), dict(time_cell="gru", iterations=1), dict(schedule="space_only", iterations=0)],
)
def test_stream_equals_batch_options(kwargs):
    _check_stream(make(rstg_fast.RSTG, **kwargs), video(T=3))


def test_stream_reference_model_and_reset():
    model = make(rstg_fast.reference.RSTG, readout="map")
    x = video(T=3)
    stream = _check_stream(model, x)
    stream.reset()
    torch.testing.assert_close(stream(x[:, :, 0]), model(x[:, :, :1])[:, :, 0], rtol=0, atol=1e-11)


def test_stream_rejects_video_shaped_input():
    stream = make(rstg_fast.RSTG).stream()
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        stream.step(video())


def test_stream_rejects_a_batch_size_change_until_reset():
    model = make(rstg_fast.RSTG)
    stream = model.stream()
    x = video(B=3, T=2)
    stream.step(x[:, :, 0])
    with pytest.raises(ValueError, match=r"frame must keep the stream's batch size 3"):
        stream.step(x[:2, :, 1])
    torch.testing.assert_close(stream.step(x[:, :, 1]), model(x), rtol=0, atol=1e-11)  # state untouched
    stream.reset()
    assert stream.step(x[:2, :, 0]).shape == (2, 16)


def test_stream_rejects_a_map_size_change_until_reset():
    model = make(rstg_fast.RSTG)
    stream = model.stream()
    x = video(B=2, T=2, H=7, W=5)
    stream.step(x[:, :, 0])
    with pytest.raises(ValueError, match=r"map size H x W = 7 x 5"):
        stream.step(video(B=2, T=1, H=6, W=5)[:, :, 0])
    torch.testing.assert_close(stream.step(x[:, :, 1]), model(x), rtol=0, atol=1e-11)  # state untouched
    stream.reset()
    assert stream.step(video(B=2, T=1, H=6, W=5)[:, :, 0]).shape == (2, 16)


@pytest.mark.parametrize("schedule", ["all_time_stages", "space_only"])
def test_stream_continues_across_a_dtype_conversion(schedule):
    model = make(rstg_fast.RSTG, schedule=schedule).float()
    x = video(T=3).float()
    stream = model.stream()
    stream.step(x[:, :, 0])
    model.double()  # mid-stream: the carried float32 states follow the frames
    got = [stream.step(x[:, :, t].double()) for t in (1, 2)][-1]
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, model(x.double()), rtol=1e-5, atol=1e-5)  # the first frame ran in float32
