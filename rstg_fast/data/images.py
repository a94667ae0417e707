"""Save example videos as a PNG strip or an animated GIF.

A PNG strip (one row per video, one column per frame) or an animated GIF (all videos side by
side, one GIF frame per video frame), both written by Pillow (in the ``data`` and ``video``
extras); without Pillow, saving raises ImportError saying so.
"""

from __future__ import annotations

import os

import numpy as np

from rstg_fast._args import integer
from rstg_fast._atomic import atomic_path


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("saving pictures needs Pillow: pip install pillow (or rstg_fast[data])") from None
    return Image


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8 image as PNG (atomic replace)."""
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"image must be (H, W) or (H, W, 3) uint8, got {image.shape} {image.dtype}")
    picture = _pillow().fromarray(image)  # uint8: grey for (H, W), RGB for (H, W, 3)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def video_strip(videos: np.ndarray, gap: int = 2) -> np.ndarray:
    """``(n, T, H, W)`` uint8 -> one ``(n*(H+gap)-gap, T*(W+gap)-gap)`` image, a row per video."""
    gap = integer("gap", gap, minimum=0)
    n, t, h, w = videos.shape
    out = np.full((n * (h + gap) - gap, t * (w + gap) - gap), 128, dtype=np.uint8)
    for i in range(n):
        for j in range(t):
            out[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = videos[i, j]
    return out


def save_examples(path: str | os.PathLike, videos: np.ndarray, gap: int = 2) -> str:
    """Save ``(n, T, H, W)`` uint8 videos: ``.png`` -> a strip, ``.gif`` -> an animation
    (Pillow). Returns the path written."""
    videos = np.asarray(videos)
    if videos.ndim != 4 or videos.dtype != np.uint8:
        raise ValueError(f"videos must be (n, T, H, W) uint8, got {videos.shape} {videos.dtype}")
    path = os.fspath(path)
    if path.endswith(".png"):
        write_png(path, video_strip(videos, gap))
    elif path.endswith(".gif"):
        Image = _pillow()
        n, t, h, w = videos.shape
        frames = []
        for j in range(t):
            row = np.full((h, n * (w + gap) - gap), 128, dtype=np.uint8)
            for i in range(n):
                row[:, i * (w + gap) : i * (w + gap) + w] = videos[i, j]
            frames.append(Image.fromarray(row))
        with atomic_path(path) as tmp:
            frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=200, loop=0)
    else:
        raise ValueError(f"path must end in .png or .gif, got {path!r}")
    return path
