"""A tiny Something-Something-v1-shaped dataset written to disk by the tests.

Frame ``k`` (0-based) of every video is a flat colour whose red channel is ``FRAME_STEP * k``
(so tests can read back which frames were sampled), with a class-dependent green channel and
a bright left-half stripe (so a horizontal flip is visible). Needs Pillow.
"""

from __future__ import annotations

import os

import numpy as np

FRAME_STEP = 20
CLASS_NAMES = [
    "Pushing something from left to right",
    "Pushing something from right to left",
    "Holding something",
    "Moving something to the left",  # its mirror "... to the right" is absent: never flipped
]


def write_tiny_something(root: str, *, train_videos: int = 8, val_videos: int = 4, size: tuple[int, int] = (24, 40),
                         lengths: tuple[int, ...] = (5, 9, 12)) -> str:
    """Write frames + the four official CSV files under ``root``; returns ``root``."""
    from PIL import Image

    h, w = size
    rows = {"train": [], "validation": []}
    vid = 100
    for split, count in (("train", train_videos), ("validation", val_videos)):
        for i in range(count):
            label = i % len(CLASS_NAMES)
            n = lengths[i % len(lengths)]
            folder = os.path.join(root, str(vid))
            os.makedirs(folder)
            for k in range(n):
                img = np.zeros((h, w, 3), np.uint8)
                img[..., 0] = FRAME_STEP * k
                img[..., 1] = 40 * label + 20
                img[:, : w // 4, 2] = 250
                Image.fromarray(img).save(os.path.join(folder, f"{k + 1:05d}.jpg"), quality=100)
            rows[split].append(f"{vid};{CLASS_NAMES[label]}")
            vid += 1
    with open(os.path.join(root, "something-something-v1-labels.csv"), "w") as f:
        f.write("\n".join(CLASS_NAMES) + "\n")
    for split, lines in rows.items():
        with open(os.path.join(root, f"something-something-v1-{split}.csv"), "w") as f:
            f.write("\n".join(lines) + "\n")
    with open(os.path.join(root, "something-something-v1-test.csv"), "w") as f:
        f.write("100\n101\n")
    return root
