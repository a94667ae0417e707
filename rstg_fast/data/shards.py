"""SyncMNIST on disk (``.npz`` shards) and on the fly, as ``torch.utils.data.Dataset`` s.

Layout of a dataset directory::

    meta.json                     the generation arguments (checked on resume)
    train-00000.npz, ...          videos, labels, digits, coords, draw_order of one shard

Shard ``s`` is ``generate(shard_size, ..., stream=s)``, so shards are independent, any subset
can be regenerated, and a resumed run writes exactly the files an uninterrupted one would.
Each shard is written to a temporary file and renamed (atomic), so an interrupted run never
leaves a partial shard. A shard damaged later (a copy cut short, a flipped byte) is found on
resume, because every field is read back and checked (shape, dtype, the zip CRC-32): 41.5 MB
of reading per default shard of 1000 videos (3 digits), measured 0.02 s from the page cache
(disk speed otherwise) against 0.7 s to generate it. Readers raise a ``ValueError`` naming
the shard and saying how to regenerate it.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from rstg_fast._args import positive_int
from rstg_fast._atomic import atomic_path
from rstg_fast.data.syncmnist import FRAMES, SIZE, SyncMNISTBatch, check_arguments, generate

_FIELDS = ("videos", "labels", "digits", "coords", "draw_order")


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.npz"


def write_shards(
    out_dir: str | os.PathLike,
    num_videos: int,
    *,
    shard_size: int = 1000,
    num_digits: int = 3,
    split: str = "train",
    seed: int = 0,
    source: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Write ``num_videos`` videos as shards of ``shard_size``; skip shards already on disk.

    ``progress(done, total)`` is called after each shard. Returns the shard paths in order.
    Raises ``ValueError`` if ``out_dir`` holds a dataset made with other arguments.
    """
    # before meta.json is written: a bad argument must not leave a dataset directory that
    # later runs with the right arguments refuse as foreign
    num_videos = positive_int("num_videos", num_videos)
    shard_size = positive_int("shard_size", shard_size)
    num_digits, seed, _ = check_arguments(num_digits, split, seed)
    if source is not None and not os.path.isdir(source):
        raise ValueError(f"source must be a directory of MNIST IDX files, got {source!r}")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    meta = {
        "format": "rstg_fast.syncmnist/1",
        "num_digits": num_digits,
        "seed": seed,
        "shard_size": shard_size,
        "source": None if source is None else os.path.abspath(source),
    }
    meta_path = os.path.join(out_dir, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            old = json.load(f)
        if old != meta:
            raise ValueError(f"out_dir: {out_dir} holds a dataset made with {old}, not {meta}")
    else:
        with atomic_path(meta_path) as tmp, open(tmp, "w") as f:
            f.write(json.dumps(meta, indent=2) + "\n")

    num_shards = -(-num_videos // shard_size)
    paths = []
    for s in range(num_shards):
        path = os.path.join(out_dir, shard_name(split, s))
        n = min(shard_size, num_videos - s * shard_size)
        if not _complete(path, n, num_digits):
            batch = generate(n, num_digits, split, seed, stream=s, source=source)
            with atomic_path(path, suffix=".npz") as tmp:  # np.savez appends .npz to other names
                np.savez(tmp, **{k: getattr(batch, k) for k in _FIELDS})
        paths.append(path)
        if progress is not None:
            progress(s + 1, num_shards)
    return paths


def _complete(path: str, n: int, num_digits: int) -> bool:
    """Whether ``path`` is an intact shard of ``n`` videos of ``num_digits`` digits (reads it all)."""
    if not os.path.exists(path):
        return False
    try:
        batch = load_shard(path)
    except ValueError:
        return False  # a foreign or damaged file: regenerate it
    return batch.digits.shape == (n, num_digits)


def _expected(n: int, k: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each field of a shard of ``n`` videos with ``k`` digits."""
    return {
        "videos": ((n, FRAMES, SIZE, SIZE), np.dtype(np.uint8)),
        "labels": ((n,), np.dtype(np.int64)),
        "digits": ((n, k), np.dtype(np.int64)),
        "coords": ((n, FRAMES, k, 2), np.dtype(np.int64)),
        "draw_order": ((n, k), np.dtype(np.int64)),
    }


def _damaged(path: str, why: str) -> ValueError:
    return ValueError(
        f"path: {path} is not a readable SyncMNIST shard ({why}); regenerate it: write_shards "
        "(rstg-fast make-syncmnist) with the dataset's arguments resumes, keeps the intact shards "
        "and rewrites this one"
    )


@contextlib.contextmanager
def _reading(path: str):
    """Turn what a damaged shard raises (cut short, flipped bytes, not a zip) into one
    ``ValueError`` naming it; a missing or unreadable file keeps its own ``OSError``."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        # zipfile checks each member's CRC-32 once it is read to the end: a flipped byte
        # inside videos.npy is a BadZipFile here, not silently wrong pixels
        raise _damaged(path, f"{type(exc).__name__}: {exc}") from exc


def load_shard(path: str | os.PathLike) -> SyncMNISTBatch:
    """Read one shard (no pickles) and check every field's shape and dtype.

    Raises ``ValueError`` naming ``path`` if the file is damaged or not a SyncMNIST shard.
    """
    path = os.fspath(path)
    with _reading(path), np.load(path, allow_pickle=False) as z:
        fields = {k: z[k] for k in _FIELDS if k in z.files}
    missing = [k for k in _FIELDS if k not in fields]
    if missing:
        raise _damaged(path, f"missing {missing}")
    labels, digits = fields["labels"], fields["digits"]
    if labels.ndim != 1 or digits.ndim != 2:
        raise _damaged(path, f"labels {labels.shape} and digits {digits.shape} must be (n,) and (n, k)")
    for name, (shape, dtype) in _expected(labels.shape[0], digits.shape[1]).items():
        if fields[name].shape != shape or fields[name].dtype != dtype:
            raise _damaged(path, f"{name} is {fields[name].shape} {fields[name].dtype}, expected {shape} {dtype}")
    return SyncMNISTBatch(**fields)


class ShardDataset(Dataset):
    """Videos from the shards of one split in ``root``: item ``i`` -> ``(video, label)`` with
    ``video (1, 10, 64, 64)`` float32 in ``[0, 1]`` and ``label`` int64.

    Shards are read on demand and the last ``cache_shards`` kept in memory.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", cache_shards: int = 2) -> None:
        self.cache_shards = positive_int("cache_shards", cache_shards)
        root = os.fspath(root)
        names = sorted(
            f for f in os.listdir(root) if f.startswith(f"{split}-") and f.endswith(".npz") and ".tmp" not in f
        )
        if not names:
            raise ValueError(f"root: no {split} shards in {root!r}")
        self.paths = [os.path.join(root, f) for f in names]
        sizes = []
        for p in self.paths:
            # only the labels here (the whole dataset would be read otherwise); every field is
            # checked when load_shard reads the shard
            with _reading(p), np.load(p, allow_pickle=False) as z:
                sizes.append(int(z["labels"].shape[0]))
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self._cache: OrderedDict[int, SyncMNISTBatch] = OrderedDict()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _shard(self, s: int) -> SyncMNISTBatch:
        if s in self._cache:
            self._cache.move_to_end(s)
        else:
            self._cache[s] = load_shard(self.paths[s])
            while len(self._cache) > self.cache_shards:
                self._cache.popitem(last=False)
        return self._cache[s]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} videos")
        i %= len(self)
        s = int(np.searchsorted(self.offsets, i, side="right") - 1)
        b = self._shard(s)
        j = i - int(self.offsets[s])
        return to_tensor(b.videos[j]), torch.tensor(b.labels[j])


class OnTheFlySyncMNIST(Dataset):
    """``num_videos`` videos generated on demand in blocks of ``block`` (block ``b`` is
    ``generate(block, ..., stream=b)``), so item ``i`` is the same whatever the access
    order, process or batch size. Items as :class:`ShardDataset`."""

    def __init__(
        self,
        num_videos: int,
        num_digits: int = 3,
        split: str = "train",
        seed: int = 0,
        *,
        block: int = 256,
        source: str | None = None,
        cache_blocks: int = 4,
    ) -> None:
        self.num_videos = positive_int("num_videos", num_videos)
        self.num_digits, self.seed, _ = check_arguments(num_digits, split, seed)
        self.split, self.source = split, source
        self.block = positive_int("block", block)
        self.cache_blocks = positive_int("cache_blocks", cache_blocks)
        self._cache: OrderedDict[int, SyncMNISTBatch] = OrderedDict()

    def __len__(self) -> int:
        return self.num_videos

    def block_batch(self, b: int) -> SyncMNISTBatch:
        """Block ``b`` (the last one may be short)."""
        if b not in self._cache:
            n = min(self.block, self.num_videos - b * self.block)
            self._cache[b] = generate(n, self.num_digits, self.split, self.seed, stream=b, source=self.source)
            while len(self._cache) > self.cache_blocks:
                self._cache.popitem(last=False)
        return self._cache[b]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.num_videos:
            raise IndexError(f"index {i} out of range for {self.num_videos} videos")
        b = self.block_batch(i // self.block)
        return to_tensor(b.videos[i % self.block]), torch.tensor(b.labels[i % self.block])


def to_tensor(videos: np.ndarray) -> torch.Tensor:
    """uint8 ``(..., T, H, W)`` -> float32 ``(..., 1, T, H, W)`` in ``[0, 1]`` (Conv3d layout)."""
    return torch.from_numpy(np.ascontiguousarray(videos)).float().div_(255.0).unsqueeze(-4)
