"""Something-Something v1 reader: CSVs, clip sampling, crops, flips, evaluation views."""

from __future__ import annotations

import pytest
import torch
from smth_testing import CLASS_NAMES, FRAME_STEP, write_tiny_something

from rstg_fast.data.something import (
    ClipConfig,
    SomethingSomethingV1,
    clip_indices,
    crop_offsets,
    eval_starts,
    flip_label_map,
    read_label_names,
    read_split,
)

try:
    import PIL  # noqa: F401

    HAVE_PIL = True
except ImportError:
    HAVE_PIL = False
needs_pil = pytest.mark.skipif(not HAVE_PIL, reason="Pillow (optional dependency) is needed to write/decode JPEGs")

RAW = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # un-normalised, to read colours back


def test_csv_reading(tmp_path):
    (tmp_path / "labels.csv").write_text("Holding something\nPushing something from left to right\n\n")
    (tmp_path / "train.csv").write_text("7;Pushing something from left to right\n8;Holding something\n")
    (tmp_path / "test.csv").write_text("9\n")
    names = read_label_names(tmp_path / "labels.csv")
    assert names == ["Holding something", "Pushing something from left to right"]
    assert read_split(tmp_path / "train.csv", names) == [("7", 1), ("8", 0)]
    assert read_split(tmp_path / "test.csv", names) == [("9", -1)]
    (tmp_path / "bad.csv").write_text("7;Holding something\n8;Dropping something\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: unknown class 'Dropping something'"):
        read_split(tmp_path / "bad.csv", names)


def test_flip_label_map():
    names = CLASS_NAMES + ["Turning the camera left while filming something"]
    assert flip_label_map(names) == [1, 0, 2, -1, -1]


def test_clip_indices_and_eval_starts():
    assert clip_indices(3, 4, 2, 100) == [3, 5, 7, 9]
    assert clip_indices(2, 5, 1, 4) == [2, 3, 3, 3, 3]  # past the end: the last frame repeats
    assert eval_starts(40, 32, 1) == [4]
    assert eval_starts(40, 32, 2) == [0, 8]
    assert eval_starts(20, 32, 2) == [0, 0]  # shorter than a clip: both start at 0
    assert eval_starts(45, 32, 3) == [0, 6, 13]


def test_crop_offsets():
    assert crop_offsets(256, 450, 224, 1) == [(16, 113)]
    offs = crop_offsets(256, 450, 224, 11)
    assert len(offs) == 11 and offs[0] == (16, 0) and offs[-1] == (16, 226)
    assert all(b[1] > a[1] for a, b in zip(offs, offs[1:], strict=False))
    assert crop_offsets(300, 256, 224, 2) == [(0, 16), (76, 16)]  # portrait: along the height
    with pytest.raises(ValueError, match="crop 300 larger"):
        crop_offsets(256, 450, 300, 1)


def test_clip_config_validation():
    with pytest.raises(ValueError, match="flip"):
        ClipConfig(flip="random")
    with pytest.raises(ValueError, match="train_scale"):
        ClipConfig(crop_size=224, train_scale=(200, 320))
    with pytest.raises(ValueError, match="num_frames"):
        ClipConfig(num_frames=0)
    for bad in ((0.2, 0.0, 0.2), (0.2, -0.2, 0.2), (0.2, float("nan"), 0.2), (0.2, 0.2)):
        with pytest.raises(ValueError, match="std"):
            ClipConfig(std=bad)
    with pytest.raises(ValueError, match="mean"):
        ClipConfig(mean=(0.5, float("inf"), 0.5))


@needs_pil
def test_eval_views_shapes_and_frames(tmp_path):
    root = write_tiny_something(str(tmp_path))
    clip = ClipConfig(num_frames=4, crop_size=16, train_scale=(24, 30), test_short_side=24,
                      spatial_clips=11, temporal_clips=2, **RAW)
    ds = SomethingSomethingV1(root, "validation", clip=clip)
    assert not ds.train and len(ds) == 4 and ds.num_classes == 4
    views, label = ds[2]  # 12 frames, class 2
    assert views.shape == (22, 3, 4, 16, 16) and views.dtype == torch.float32 and label == 2
    red = views[:, 0].mean(dim=(-1, -2)) * 255 / FRAME_STEP  # (22, 4) frame numbers
    want0, want1 = torch.tensor([0.0, 1, 2, 3]), torch.tensor([8.0, 9, 10, 11])  # starts 0 and 12-4
    assert torch.allclose(red[:11], want0.expand(11, 4), atol=0.15)
    assert torch.allclose(red[11:], want1.expand(11, 4), atol=0.15)
    # crops slide left to right: only the leftmost ones see the bright left stripe
    blue = views[:11, 2].mean(dim=(1, 2, 3))
    assert blue[0] > 0.5 and blue[-1] < 0.05
    centre = SomethingSomethingV1(root, "validation", clip=ClipConfig(num_frames=4, crop_size=16, train_scale=(24, 30),
                                                                     test_short_side=24, **RAW))
    v1, _ = centre[0]  # 5 frames, window of 4 centred: start 0
    assert v1.shape == (1, 3, 4, 16, 16)
    torch.testing.assert_close(v1[0, 0].mean(dim=(-1, -2)) * 255 / FRAME_STEP, torch.arange(4.0), atol=0.15, rtol=0)


@needs_pil
def test_train_sampling_is_seeded_per_sample_and_epoch(tmp_path):
    root = write_tiny_something(str(tmp_path))
    clip = ClipConfig(num_frames=3, crop_size=16, train_scale=(20, 32), test_short_side=24)
    ds = SomethingSomethingV1(root, "train", clip=clip, seed=3)
    assert ds.train and len(ds) == 8
    x, y = ds[2]
    assert x.shape == (3, 3, 16, 16) and y == 2
    torch.testing.assert_close(ds[2][0], x, rtol=0, atol=0)  # same (seed, epoch, index): same clip
    draws = []
    for e in range(6):
        ds.set_epoch(e)
        draws.append(ds[2][0])
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    raw = SomethingSomethingV1(root, "train", clip=ClipConfig(num_frames=3, crop_size=16, train_scale=(20, 32), **RAW))
    for e in range(5):
        raw.set_epoch(e)
        frames = (raw[2][0][0].mean(dim=(-1, -2)) * 255 / FRAME_STEP).round()
        assert torch.equal(frames, frames[0] + torch.arange(3.0))  # 3 consecutive frames of the 12


@needs_pil
def test_label_aware_flip(tmp_path):
    root = write_tiny_something(str(tmp_path), size=(24, 24))  # the crop is the whole frame
    clip = ClipConfig(num_frames=2, crop_size=24, train_scale=(24, 24), flip="label-aware", **RAW)
    ds = SomethingSomethingV1(root, "train", clip=clip)
    seen = {c: set() for c in range(4)}
    for e in range(12):
        ds.set_epoch(e)
        for i in range(len(ds)):
            x, y = ds[i]
            true = ds.samples[i][1]
            stripe_left = x[2, :, :, :3].mean() > x[2, :, :, -3:].mean()
            flipped = bool(x[2, :, :, -3:].mean() > 0.5)
            seen[true].add((y, flipped))
            if not flipped:
                assert y == true and stripe_left
    assert seen[0] == {(0, False), (1, True)} and seen[1] == {(1, False), (0, True)}
    assert seen[2] == {(2, False), (2, True)}  # no side in the name: flipped freely, same label
    assert seen[3] == {(3, False)}  # mirror class absent: never flipped


def test_bad_split(tmp_path):
    with pytest.raises(ValueError, match="split"):
        SomethingSomethingV1(str(tmp_path), "val")
