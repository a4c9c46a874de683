"""``freqstudy corrupt``: write a CIFAR-10-C copy of the test set or the validation split."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from study.metrics import ALL_CORRUPTIONS, SEVERITIES

MAX_SEED = 2**32 - 1  # numpy's generators take 0 .. 2**32 - 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py/")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--out", required=True, help="output folder (official layout)")
    p.add_argument("--corruptions", help="comma-separated names; default all 19")
    p.add_argument("--severities", help="comma-separated 1..5; default all")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="processes; 0 = one per core")
    p.add_argument("--frost-dir", help="frost textures folder; default: the textures shipped in the package")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--split-seed", type=int, default=0)


def _parse_list(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"--{what}: empty list")
    return items


def run(args: argparse.Namespace) -> int:
    from study.cifar10c.layout import check_corruptions, check_severities  # numpy: not for --help

    try:
        names = check_corruptions(_parse_list(args.corruptions, "corruptions") or ALL_CORRUPTIONS)
    except ValueError as e:  # name the flag, not the parameter
        raise ValueError(f"--corruptions: {str(e).removeprefix('corruptions: ')}") from None
    sev_text = _parse_list(args.severities, "severities")
    try:
        sevs = check_severities([int(s) for s in sev_text] if sev_text else SEVERITIES)
    except ValueError:
        raise ValueError(
            f"--severities: {args.severities!r} invalid; allowed comma-separated integers in 1..5"
        ) from None
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit: {args.limit} must be >= 1")
    # CPU-bound work: beyond twice the cores, each process (~0.1 GB) only costs memory.
    most = 2 * (os.cpu_count() or 1)
    if not 0 <= args.workers <= most:
        raise ValueError(
            f"--workers: {args.workers} is not allowed; allowed 0..{most} (twice the cores; 0 = one per core)"
        )
    for flag, seed in (("--seed", args.seed), ("--split-seed", args.split_seed)):
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"{flag}: {seed} is out of range; allowed integers 0..{MAX_SEED}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out}: is a file; give a folder")
    # Imported here, after the cheap checks, so that a usage error costs no imports.
    from study.cifar10c.generate import generate
    from study.data.cifar10 import load_cifar10, stratified_split

    data = load_cifar10(args.data_dir, download=True)
    if args.split == "test":
        images, labels = data.test_images, data.test_labels
    else:
        if not 0.0 < args.val_fraction < 1.0:
            raise ValueError(f"--val-fraction: {args.val_fraction} is out of range; allowed (0, 1)")
        _, val_idx = stratified_split(data.train_labels, args.val_fraction, args.split_seed)
        images, labels = data.train_images[val_idx], data.train_labels[val_idx]
    if args.limit is not None:
        images, labels = images[: args.limit], labels[: args.limit]
    t0 = time.perf_counter()
    out = generate(
        images,
        labels,
        args.out,
        corruptions=names,
        severities=sevs,
        seed=args.seed,
        workers=args.workers,
        frost_dir=args.frost_dir,
        source_name=args.split,
    )
    seconds = time.perf_counter() - t0
    print(
        f"{out}: {len(names)} corruptions x {len(sevs)} severities x {len(images)} {args.split} images "
        f"in {seconds:.1f} s"
    )
    return 0
