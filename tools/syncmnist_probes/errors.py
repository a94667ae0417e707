"""SyncMNIST probe: where a trained model's test errors come from. Loads a ``rstg-fast
syncmnist`` checkpoint, predicts the first ``--videos`` test videos of its test set, and
prints (1) accuracy and "named" by how much the video's digits overlap (the largest box
intersection-over-union of two digits in any frame), (2) the digit confusions behind the
predictions that name a digit absent from the video, (3) "named" by synced digit class."""

from __future__ import annotations

import argparse
import collections
import json

import numpy as np
import torch

from rstg_fast.data.shards import to_tensor
from rstg_fast.data.syncmnist import DIGIT, NO_SYNC, generate, label_pair, names_present_pair
from rstg_fast.experiments.syncmnist.train import load_trained


def largest_overlap(coords: np.ndarray) -> np.ndarray:
    """``coords (n, T, k, 2)`` top-left corners -> ``(n,)`` the largest IoU of two digit boxes."""
    d = np.abs(coords[:, :, :, None] - coords[:, :, None, :])  # (n, T, k, k, 2)
    inter = np.clip(DIGIT - d, 0, None).prod(-1).astype(np.float64)
    iou = inter / (2 * DIGIT * DIGIT - inter)
    k = coords.shape[2]
    iou[:, :, np.arange(k), np.arange(k)] = 0
    return iou.max((1, 2, 3))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--videos", type=int, default=2048)
    a = p.parse_args()
    torch.set_num_threads(1)
    model, cfg = load_trained(a.checkpoint)
    pred, labels, digits, coords = [], [], [], []
    bs = cfg.eval_batch_size
    with torch.no_grad():
        for c in range(-(-a.videos // bs)):
            b = generate(min(bs, a.videos - c * bs), cfg.digits, "test", cfg.seed, stream=c, source=cfg.source)
            pred.append(model(to_tensor(b.videos)).argmax(1).numpy())
            labels.append(b.labels), digits.append(b.digits), coords.append(b.coords)
    pred, labels, digits, coords = map(np.concatenate, (pred, labels, digits, coords))
    right, named = pred == labels, names_present_pair(pred, digits)
    print(json.dumps(dict(videos=len(pred), acc=right.mean(), named=named.mean(), pair=right[named].mean())))
    overlap = largest_overlap(coords)
    for lo, hi in ((0, 1e-9), (1e-9, 0.25), (0.25, 0.5), (0.5, 1.01)):
        m = (overlap >= lo) & (overlap < hi)
        row = dict(share=m.mean(), acc=right[m].mean(), named=named[m].mean()) if m.any() else dict(share=0.0)
        print(json.dumps({"largest IoU": f"[{lo:.2f}, {hi:.2f})", **{k: round(v, 3) for k, v in row.items()}}))
    swaps = collections.Counter()  # (a present digit of the true pair left out, the absent digit named)
    for i in np.flatnonzero(~named & (pred != NO_SYNC)):
        said = set(label_pair(int(pred[i])))
        absent = said - set(digits[i].tolist())
        truth = label_pair(int(labels[i]))
        missed = (set(truth) - said) if truth is not None else set()
        for x in absent:
            swaps[(tuple(sorted(missed)), x)] += 1
    print("named a digit that is absent:", int((~named).sum()), "videos; most common (left out, named instead):")
    for (missed, x), n in swaps.most_common(12):
        print(f"  {missed} -> {x}: {n}")
    synced = labels != NO_SYNC
    by_digit = {d: round(float(named[synced & (digits[:, :2] == d).any(1)].mean()), 3) for d in range(10)}
    print(json.dumps({"named, by synced digit": by_digit}))


if __name__ == "__main__":
    main()
