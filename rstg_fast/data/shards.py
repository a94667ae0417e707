"""SyncMNIST on disk (``.npz`` shards) and on the fly, as ``torch.utils.data.Dataset`` s.

Layout of a dataset directory (one or both splits)::

    train-manifest.json           the split's generation settings and its shards, in order
    train-00000.npz, ...          videos, labels, digits, coords, draw_order of one shard
    test-manifest.json, test-00000.npz, ...

The manifest is what the folder holds: :class:`ShardDataset` reads exactly the shards it lists
(never whatever ``train-*.npz`` lie around), and refuses a split without one or one whose
writing was interrupted (``"complete": false``). :func:`write_shards` writes the manifest
first (incomplete), then the shards, then marks it complete. It refuses a folder holding
anything but the dataset asked for -- the split made with other arguments (more videos, say,
whose extra shards would otherwise stay and be read), shards without a manifest, files it did
not write -- unless ``overwrite=True`` (``make-syncmnist --overwrite``), which first removes
that split's files (never files it did not write). Run again with the same arguments, it
resumes. Two splits share a folder only with the same settings (digits, seed, shard size,
source).

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
import re
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from rstg_fast._args import positive_int
from rstg_fast._atomic import atomic_path
from rstg_fast._errors import reading
from rstg_fast.data.syncmnist import FRAMES, SIZE, SyncMNISTBatch, check_arguments, generate

_FIELDS = ("videos", "labels", "digits", "coords", "draw_order")


MANIFEST_FORMAT = "rstg_fast.syncmnist-shards/1"
# what splits sharing a folder must agree on (the rest of a manifest is per split)
_SHARED_SETTINGS = ("format", "num_digits", "seed", "shard_size", "source")
# files make-syncmnist writes for a split (a shard, the manifest, the example strip), and their
# temporaries (atomic_path: "<name>.<pid>.tmp<suffix>")
_SPLIT_FILE = re.compile(r"^(train|test)-(?:\d{5}\.npz|manifest\.json|examples\.(?:png|gif))(?:\.(?:\d+\.)?tmp.*)?$")
_LEGACY = ("meta.json",)  # the settings file of datasets written before manifests
_REWRITE = "rewrite the split with make-syncmnist --overwrite (write_shards(..., overwrite=True))"


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.npz"


def manifest_path(root: str | os.PathLike, split: str) -> str:
    """Where the manifest of ``split`` lives in the dataset folder ``root``."""
    return os.path.join(os.fspath(root), f"{split}-manifest.json")


def read_manifest(root: str | os.PathLike, split: str) -> dict | None:
    """The manifest of ``split`` in ``root``, or None if there is none."""
    path = manifest_path(root, split)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError as exc:  # JSONDecodeError: cut short or edited
        raise ValueError(f"path: {path} is not a readable manifest ({exc}); {_REWRITE}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"path: {path} is not a SyncMNIST shard manifest of format {MANIFEST_FORMAT}; {_REWRITE}")
    return manifest


def _describe(m: dict) -> str:
    return (f"{m.get('num_videos')} {m.get('split')} videos (num_digits={m.get('num_digits')}, seed={m.get('seed')}, "
            f"shard_size={m.get('shard_size')}, source={m.get('source')})")


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


@dataclass
class ShardPlan:
    """What :func:`write_shards` will do, decided (and checked) by :func:`plan_shards` before
    anything is written: the manifest to write and the old files to remove first."""

    out_dir: str
    manifest: dict
    remove: list[str]

    @property
    def paths(self) -> list[str]:
        return [os.path.join(self.out_dir, s["file"]) for s in self.manifest["shards"]]

    def write(self, progress: Callable[[int, int], None] | None = None) -> list[str]:
        """Remove the old files, write the manifest (incomplete), the missing or damaged
        shards, then the manifest again, complete. Returns the shard paths in order."""
        m = self.manifest
        os.makedirs(self.out_dir, exist_ok=True)
        for name in self.remove:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.out_dir, name))
        _write_manifest(self.out_dir, {**m, "complete": False})
        for s, (entry, path) in enumerate(zip(m["shards"], self.paths, strict=True)):
            if not _complete(path, entry["videos"], m["num_digits"]):
                batch = generate(entry["videos"], m["num_digits"], m["split"], m["seed"], stream=s, source=m["source"])
                with atomic_path(path, suffix=".npz") as tmp:  # np.savez appends .npz to other names
                    np.savez(tmp, **{k: getattr(batch, k) for k in _FIELDS})
            if progress is not None:
                progress(s + 1, len(m["shards"]))
        _write_manifest(self.out_dir, {**m, "complete": True})
        return self.paths


def _write_manifest(out_dir: str, manifest: dict) -> None:
    with atomic_path(manifest_path(out_dir, manifest["split"])) as tmp, open(tmp, "w") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")


def plan_shards(
    out_dir: str | os.PathLike,
    num_videos: int,
    *,
    shard_size: int = 1000,
    num_digits: int = 3,
    split: str = "train",
    seed: int = 0,
    source: str | None = None,
    overwrite: bool = False,
) -> ShardPlan:
    """Check the arguments and the folder for :func:`write_shards`; writes nothing.

    Raises ``ValueError`` naming the argument, or ``out_dir`` when the folder holds something
    other than this dataset (see the module docstring) and ``overwrite`` is False.
    """
    num_videos = positive_int("num_videos", num_videos)
    shard_size = positive_int("shard_size", shard_size)
    num_digits, seed, _ = check_arguments(num_digits, split, seed)
    if source is not None and not os.path.isdir(source):
        raise ValueError(f"source must be a directory of MNIST IDX files, got {source!r}")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"out_dir: {out_dir} exists and is not a folder")
    sizes = [min(shard_size, num_videos - start) for start in range(0, num_videos, shard_size)]
    manifest = {
        "format": MANIFEST_FORMAT,
        "split": split,
        "num_videos": num_videos,
        "num_digits": num_digits,
        "seed": seed,
        "shard_size": shard_size,
        "source": None if source is None else os.path.abspath(source),
        "complete": False,
        "shards": [{"file": shard_name(split, s), "videos": n} for s, n in enumerate(sizes)],
    }
    names = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
    owner = {n: m.group(1) for n in names if (m := _SPLIT_FILE.match(n))}
    for other in sorted({s for s in owner.values() if s != split}):
        old = read_manifest(out_dir, other)
        if old is not None and any(old.get(k) != manifest[k] for k in _SHARED_SETTINGS):
            raise ValueError(
                f"out_dir: {out_dir} holds {_describe(old)}; this {split} split would have "
                f"num_digits={num_digits}, seed={seed}, shard_size={shard_size}, source={manifest['source']}. "
                "The splits of one folder share these settings: use another folder"
            )
    mine = [n for n in names if owner.get(n) == split]
    legacy = [n for n in names if n in _LEGACY]
    try:
        old, unreadable = read_manifest(out_dir, split), None
    except ValueError as exc:  # a damaged or foreign manifest: replaced only with overwrite
        old, unreadable = None, str(exc)
    same = old is not None and all(old.get(k) == v for k, v in manifest.items() if k != "complete")
    if same or overwrite:
        return ShardPlan(out_dir, manifest, [] if same else mine + legacy)
    if old is not None:
        why = f"holds {_describe(old)}, not the {_describe(manifest)} asked for"
    elif unreadable is not None:
        why = f"holds a {split} manifest that cannot be used ({unreadable})"
    elif mine or legacy:
        why = f"holds files written without a manifest ({_some(mine + legacy)}: by an older rstg_fast, or by hand)"
    elif names and not owner:
        why = f"is not empty and holds no SyncMNIST dataset ({_some(names)})"
    else:
        return ShardPlan(out_dir, manifest, [])
    raise ValueError(
        f"out_dir: {out_dir} {why}; to replace that {split} split pass overwrite=True (make-syncmnist --overwrite: "
        "removes its old files first), or write to another folder"
    )


def write_shards(
    out_dir: str | os.PathLike,
    num_videos: int,
    *,
    progress: Callable[[int, int], None] | None = None,
    **options,
) -> list[str]:
    """Write ``num_videos`` videos as shards and the split's manifest; with the same arguments
    again, resume (intact shards are kept). ``options`` are :func:`plan_shards`' (``shard_size``,
    ``num_digits``, ``split``, ``seed``, ``source``, ``overwrite``).

    ``progress(done, total)`` is called after each shard. Returns the shard paths in order.
    Raises ``ValueError`` before writing anything if an argument is bad or ``out_dir`` holds
    something else than this dataset (unless ``overwrite``: see :func:`plan_shards`).
    """
    return plan_shards(out_dir, num_videos, **options).write(progress)


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


def _reading(path: str):
    """Turn what a damaged shard raises (cut short, flipped bytes, not a zip) into one
    ``ValueError`` naming it; a missing or unreadable file keeps its own ``OSError``.
    zipfile checks each member's CRC-32 once it is read to the end: a flipped byte inside
    videos.npy is a BadZipFile here, not silently wrong pixels."""
    return reading(lambda exc: _damaged(path, f"{type(exc).__name__}: {exc}"), zipfile.BadZipFile, zlib.error)


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

    Exactly the shards the split's manifest lists (``.manifest``: its generation settings);
    a ``ValueError`` if there is no manifest, if the writing was interrupted, or if a shard
    does not hold what the manifest says. Shards are read on demand and the last
    ``cache_shards`` kept in memory.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", cache_shards: int = 2) -> None:
        self.cache_shards = positive_int("cache_shards", cache_shards)
        root = os.fspath(root)
        manifest = read_manifest(root, split)
        if manifest is None:
            raise ValueError(
                f"root: {root} has no {split} manifest ({os.path.basename(manifest_path(root, split))}): it is "
                "not a SyncMNIST dataset folder, or one written before manifests; write the split with "
                "rstg-fast make-syncmnist (--overwrite replaces old shards)"
            )
        if not manifest.get("complete"):
            raise ValueError(
                f"root: the {split} split in {root} is incomplete (its writing was interrupted); run the same "
                f"make-syncmnist command (write_shards call) again to finish it: {_describe(manifest)}"
            )
        self.manifest = manifest
        self.paths = [os.path.join(root, entry["file"]) for entry in manifest["shards"]]
        sizes = []
        for p, entry in zip(self.paths, manifest["shards"], strict=True):
            # only the labels here (the whole dataset would be read otherwise); every field is
            # checked when load_shard reads the shard
            with _reading(p), np.load(p, allow_pickle=False) as z:
                sizes.append(int(z["labels"].shape[0]))
            if sizes[-1] != entry["videos"]:
                raise _damaged(p, f"{sizes[-1]} videos, its manifest lists {entry['videos']}")
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self._cache: OrderedDict[int, SyncMNISTBatch] = OrderedDict()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _shard(self, s: int) -> SyncMNISTBatch:
        if s in self._cache:
            self._cache.move_to_end(s)
        else:
            batch = load_shard(self.paths[s])
            if batch.digits.shape[1] != self.manifest["num_digits"]:
                raise _damaged(self.paths[s], f"{batch.digits.shape[1]} digits per video, its manifest says "
                               f"{self.manifest['num_digits']}")
            self._cache[s] = batch
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
