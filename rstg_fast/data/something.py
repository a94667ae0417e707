"""Something-Something v1: the on-disk layout, clip sampling, augmentation, evaluation views.

Layout (as distributed by TwentyBN)::

    <root>/<video_id>/00001.jpg, 00002.jpg, ...      frames at 12 fps, 100 px high
    <annotations>/something-something-v1-labels.csv     one class name per line (174)
    <annotations>/something-something-v1-train.csv      "<video_id>;<class name>" per line
    <annotations>/something-something-v1-validation.csv
    <annotations>/something-something-v1-test.csv       "<video_id>" per line (no labels)

Class index = line order in the labels file (0-based).

Temporal sampling (``num_frames=32``, the paper's clip): consecutive frames with
``frame_stride`` (default 1; v1 videos have 35 frames on average at 12 fps, so 32
consecutive frames cover almost all of one). Frame positions past the end of a short
video repeat its last frame (looping would change the action, e.g. "putting" vs "taking").
Training: a uniformly random start; evaluation: ``temporal_clips`` starts evenly spaced from
the first to the last possible one (one clip = the centred window). The backbone's pool1
halves time, so the graph after res3/res4 runs on 16 steps: "32 frames, graph on 16".

Spatial: training resizes the shorter side to a random integer in ``train_scale``
(default [256, 320], Non-local's scale jittering) and takes a random ``crop_size`` square;
evaluation resizes the shorter side to ``test_short_side`` (256) and takes ``spatial_clips``
squares evenly spaced along the longer side, centred on the shorter one (1 = centre crop;
11 = the paper's 11 spatial crops, our reading of it). Views are ordered temporal-major.

Horizontal flip: ``flip="none"`` by default, because flipping turns "Pushing something
from left to right" into its mirror class. ``flip="label-aware"`` flips with probability
1/2 and maps the label through :func:`flip_label_map` (left <-> right in the class name);
a class whose mirror name is not a class is never flipped.

Every random choice of sample ``i`` in epoch ``e`` comes from a generator seeded with
``(seed, e, i)``: clips do not depend on worker count or order, which makes resume exact.

JPEG decoding needs Pillow (optional dependency: ``pip install pillow``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rstg_fast._args import integer, positive_int

LABELS_FILE = "something-something-v1-labels.csv"
SPLIT_FILES = {
    "train": "something-something-v1-train.csv",
    "validation": "something-something-v1-validation.csv",
    "test": "something-something-v1-test.csv",
}
NUM_CLASSES = 174
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FLIP_MODES = ("none", "label-aware")


def read_label_names(path: str | os.PathLike) -> list[str]:
    """Class names, one per non-empty line; index = position."""
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"labels file {path} repeats a class name")
    return names


def read_split(path: str | os.PathLike, names: Sequence[str]) -> list[tuple[str, int]]:
    """``[(video_id, class_index)]`` from ``id;name`` lines (``-1`` for unlabelled lines)."""
    index = {n: i for i, n in enumerate(names)}
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            vid, _, name = line.partition(";")
            if not name:
                out.append((vid.strip(), -1))
                continue
            if name.strip() not in index:
                raise ValueError(f"{path}:{lineno}: unknown class {name.strip()!r}")
            out.append((vid.strip(), index[name.strip()]))
    return out


def flip_label_map(names: Sequence[str]) -> list[int]:
    """Class of the mirrored video: ``names`` with left <-> right swapped, or -1 if absent.

    Classes that mention neither side map to themselves.
    """
    index = {n: i for i, n in enumerate(names)}
    swap = {"left": "right", "right": "left", "Left": "Right", "Right": "Left"}
    out = []
    for i, n in enumerate(names):
        mirrored = re.sub(r"\b(left|right|Left|Right)\b", lambda m: swap[m.group(1)], n)
        out.append(i if mirrored == n else index.get(mirrored, -1))
    return out


def clip_indices(start: int, num_frames: int, stride: int, length: int) -> list[int]:
    """0-based frame indices ``start + k * stride``, positions past the end clamped to the last."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    return [min(start + k * stride, length - 1) for k in range(num_frames)]


def clip_span(num_frames: int, stride: int) -> int:
    return (num_frames - 1) * stride + 1


def eval_starts(length: int, span: int, clips: int) -> list[int]:
    """``clips`` starts evenly spaced over ``[0, length - span]`` (the centre when 1)."""
    last = max(length - span, 0)
    if clips == 1:
        return [last // 2]
    return [round(k * last / (clips - 1)) for k in range(clips)]


def crop_offsets(height: int, width: int, crop: int, count: int) -> list[tuple[int, int]]:
    """``count`` (y0, x0) of ``crop`` squares evenly spaced along the longer side, centred
    on the shorter (the centre crop when ``count == 1``)."""
    if crop > min(height, width):
        raise ValueError(f"crop {crop} larger than the resized frame {height}x{width}")
    long_is_w = width >= height
    span = (width if long_is_w else height) - crop
    other = ((height if long_is_w else width) - crop) // 2
    along = [span // 2] if count == 1 else [round(k * span / (count - 1)) for k in range(count)]
    return [(other, a) if long_is_w else (a, other) for a in along]


def resize_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``(T, 3, H, W)`` float -> shorter side ``size``, bilinear (antialiased when shrinking)."""
    h, w = frames.shape[-2:]
    scale = size / min(h, w)
    out_hw = (max(size, round(h * scale)), max(size, round(w * scale)))
    if out_hw == (h, w):
        return frames
    return F.interpolate(frames, size=out_hw, mode="bilinear", align_corners=False, antialias=scale < 1)


def load_frames(folder: str, indices: Sequence[int], template: str) -> torch.Tensor:
    """Decode 0-based ``indices`` of ``folder`` -> ``(T, 3, H, W)`` uint8 (RGB)."""
    try:
        from PIL import Image  # noqa: PLC0415 (optional dependency)
    except ImportError as e:  # pragma: no cover - exercised only without Pillow
        raise ImportError("decoding Something-Something JPEG frames needs Pillow: pip install pillow") from e
    cache: dict[int, torch.Tensor] = {}
    out = []
    for i in indices:
        if i not in cache:
            with Image.open(os.path.join(folder, template.format(i + 1))) as im:
                cache[i] = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy())
        out.append(cache[i])
    return torch.stack(out).permute(0, 3, 1, 2)


@dataclass
class ClipConfig:
    """How clips are drawn (see the module docstring). Defaults: the paper's setting."""

    num_frames: int = 32
    frame_stride: int = 1
    crop_size: int = 224
    train_scale: tuple[int, int] = (256, 320)
    test_short_side: int = 256
    spatial_clips: int = 1
    temporal_clips: int = 1
    flip: str = "none"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        for name in ("num_frames", "frame_stride", "crop_size", "test_short_side", "spatial_clips", "temporal_clips"):
            setattr(self, name, positive_int(name, getattr(self, name)))  # 2.5 is refused, not truncated
        try:
            lo, hi = self.train_scale
        except (TypeError, ValueError):
            raise ValueError(f"train_scale must be a (min, max) pair of ints, got {self.train_scale!r}") from None
        self.train_scale = (integer("train_scale[0]", lo), integer("train_scale[1]", hi))
        lo, hi = self.train_scale
        if not self.crop_size <= lo <= hi:
            raise ValueError(f"train_scale must satisfy crop_size <= min <= max, got {self.train_scale}")
        if self.test_short_side < self.crop_size:
            raise ValueError(f"test_short_side must be >= crop_size, got {self.test_short_side}")
        if self.flip not in FLIP_MODES:
            raise ValueError(f"flip must be one of {FLIP_MODES}, got {self.flip!r}")
        # clips are (x - mean) / std: a zero or non-finite value gives inf/NaN pixels silently
        if len(self.mean) != 3 or not all(math.isfinite(m) for m in self.mean):
            raise ValueError(f"mean must be 3 finite numbers (RGB), got {self.mean}")
        if len(self.std) != 3 or not all(math.isfinite(v) and v > 0 for v in self.std):
            raise ValueError(f"std must be 3 finite numbers > 0 (RGB), got {self.std}")


class SomethingSomethingV1(torch.utils.data.Dataset):
    """Something-Something v1 clips.

    Args:
        root: folder of per-video frame folders.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        train: training sampling/augmentation (random window, scale jitter, random crop,
            optional label-aware flip) if True; evaluation views otherwise.
        clip: a :class:`ClipConfig`.
        annotations: folder of the CSV files (default ``root``).
        frame_template: frame file name from a 1-based number.
        seed: base seed of the per-sample generators.

    ``__getitem__`` returns ``(clip, label)``: training ``clip`` is ``(3, T, S, S)`` float32
    (normalised); evaluation ``clip`` is ``(V, 3, T, S, S)`` with
    ``V = temporal_clips * spatial_clips``. ``label`` is an int (-1 on the test split).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        train: bool | None = None,
        clip: ClipConfig | None = None,
        annotations: str | os.PathLike | None = None,
        frame_template: str = "{:05d}.jpg",
        seed: int = 0,
    ) -> None:
        if split not in SPLIT_FILES:
            raise ValueError(f"split must be one of {tuple(SPLIT_FILES)}, got {split!r}")
        self.frame_template, self.seed, self.epoch = frame_template, integer("seed", seed, minimum=0), 0
        self.root = os.fspath(root)
        ann = os.fspath(annotations) if annotations is not None else self.root
        self.names = read_label_names(os.path.join(ann, LABELS_FILE))
        self.samples = read_split(os.path.join(ann, SPLIT_FILES[split]), self.names)
        self.train = split == "train" if train is None else bool(train)
        self.clip = clip or ClipConfig()
        self.flip_map = flip_label_map(self.names)
        self._lengths: dict[str, int] = {}

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s augmentation (call before building the loader's iterator)."""
        self.epoch = integer("epoch", epoch, minimum=0)

    def __len__(self) -> int:
        return len(self.samples)

    def num_video_frames(self, video_id: str) -> int:
        if video_id not in self._lengths:
            folder = os.path.join(self.root, video_id)
            n = sum(1 for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg")))
            if n == 0:
                raise ValueError(f"video folder {folder} holds no JPEG frames")
            self._lengths[video_id] = n
        return self._lengths[video_id]

    def _normalise(self, frames: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.clip.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.clip.std).view(1, 3, 1, 1)
        return ((frames - mean) / std).transpose(0, 1).contiguous()  # (3, T, H, W)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        vid, label = self.samples[i]
        c, folder = self.clip, os.path.join(self.root, vid)
        n = self.num_video_frames(vid)
        span = clip_span(c.num_frames, c.frame_stride)
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            start = int(rng.integers(0, max(n - span, 0) + 1))
            frames = load_frames(folder, clip_indices(start, c.num_frames, c.frame_stride, n), self.frame_template)
            frames = resize_short_side(frames.float() / 255, int(rng.integers(c.train_scale[0], c.train_scale[1] + 1)))
            h, w = frames.shape[-2:]
            y0, x0 = int(rng.integers(0, h - c.crop_size + 1)), int(rng.integers(0, w - c.crop_size + 1))
            frames = frames[..., y0:y0 + c.crop_size, x0:x0 + c.crop_size]
            if c.flip == "label-aware" and label >= 0 and self.flip_map[label] >= 0 and rng.random() < 0.5:
                frames, label = frames.flip(-1), self.flip_map[label]
            return self._normalise(frames), label
        views = []
        for start in eval_starts(n, span, c.temporal_clips):
            frames = load_frames(folder, clip_indices(start, c.num_frames, c.frame_stride, n), self.frame_template)
            frames = resize_short_side(frames.float() / 255, c.test_short_side)
            for y0, x0 in crop_offsets(*frames.shape[-2:], c.crop_size, c.spatial_clips):
                views.append(self._normalise(frames[..., y0:y0 + c.crop_size, x0:x0 + c.crop_size]))
        return torch.stack(views), label
