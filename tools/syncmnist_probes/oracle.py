"""SyncMNIST probe on oracle inputs: RSTG fed the generator's ground truth as maps (each digit's
28 x 28 box in its class's channel, optionally with its velocity), not pixels; see README.md."""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import ProbeNet, add_common_arguments, test, train

from rstg_fast import pooling
from rstg_fast.data.syncmnist import CANVAS, DIGIT, MAX_STEP, SyncMNISTBatch


def oracle_maps(batch: SyncMNISTBatch, res: int, velocity: bool, shared: bool) -> torch.Tensor:
    """``(n, C, T, res, res)``: channel ``c`` holds the area-resized box of the class-``c`` digit;
    with ``velocity``, 20 more channels hold box * dy and box * dx (per class, or in two channels
    shared by all classes)."""
    area = pooling.area_matrix(CANVAS, res).numpy().astype(np.float32)
    n, T, k, _ = batch.coords.shape
    r = np.arange(CANVAS)
    inside = lambda start: ((r >= start[..., None]) & (r < start[..., None] + DIGIT)).astype(np.float32) @ area.T  # noqa: E731
    box = inside(batch.coords[..., 0])[..., :, None] * inside(batch.coords[..., 1])[..., None, :]  # (n, T, k, res, res)
    vel = np.zeros(batch.coords.shape, np.float32)
    vel[:, 1:] = np.diff(batch.coords, axis=1) / MAX_STEP
    out = np.zeros((n, 30 if velocity else 10, T, res, res), np.float32)
    rows = np.arange(n)
    for j in range(k):
        cls = batch.digits[:, j]
        out[rows, cls] += box[:, :, j]
        if velocity:
            out[rows, 10 if shared else 10 + cls] += box[:, :, j] * vel[:, :, j, 0, None, None]
            out[rows, 11 if shared else 20 + cls] += box[:, :, j] * vel[:, :, j, 1, None, None]
    return torch.from_numpy(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(p)
    p.add_argument("--res", type=int, default=25, help="map size")
    p.add_argument("--velocity", action="store_true", help="add the velocity channels")
    p.add_argument("--nonconj", action="store_true", help="velocity channels shared by all classes")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    net = ProbeNet(None, 30 if a.velocity else 10, a)
    inputs = lambda batch: oracle_maps(batch, a.res, a.velocity, a.nonconj)  # noqa: E731
    test(net, inputs, train(net, inputs, a))


if __name__ == "__main__":
    main()
