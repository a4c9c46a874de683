"""Single-process throughput of each CIFAR-10-C corruption, for finding the
slow ones: every corruption is run at all five severities on one batch of
real CIFAR-10 images, and its best-of-``repeats`` wall and CPU seconds are
turned into images per second (one image at one severity is one image).

This is a measurement, not a test: run it on a quiet machine with one BLAS /
OpenMP thread, e.g.::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        python -m study.corruptions.timing --data-dir ../shared/data/cifar10-subset \\
        --frost-dir ../shared/data/cifar10c-frost --images 1000 --repeats 3

CPU seconds are reported beside wall seconds because on a shared machine
the wall clock also counts other people's processes.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from study.corruptions import ALL_CORRUPTIONS, SEVERITIES, corrupt

__all__ = ["load_real_images", "time_corruptions", "main"]


def load_real_images(data_dir: str | os.PathLike, n: int) -> np.ndarray:
    """The first ``n`` real images of a ``cifar-10-batches-py`` folder: the test batch, then training batches.

    Args:
        data_dir: a folder holding ``cifar-10-batches-py/`` (or that folder itself).
        n: images wanted (> 0).

    Returns:
        uint8 ``(n, 32, 32, 3)``; tiled when the folder holds fewer than ``n``.
    """
    from study.data import read_batch  # torch comes with study.data; only the CLI entry needs it

    if n <= 0:
        raise ValueError(f"--images must be > 0, got {n}")
    root = Path(data_dir)
    folder = root if root.name == "cifar-10-batches-py" else root / "cifar-10-batches-py"
    names = ["test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]
    batches, have = [], 0
    for name in names:
        if have >= n or not (folder / name).is_file():
            continue
        data = np.asarray(read_batch(folder / name)["data"], dtype=np.uint8)
        batches.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # (N, 3072) -> NHWC
        have += len(batches[-1])
    if not batches:
        raise ValueError(f"no CIFAR-10 batches in {folder}; expected test_batch or data_batch_1..5 there")
    images = np.concatenate(batches)
    return np.ascontiguousarray(np.resize(images, (n, 32, 32, 3)))


def time_corruptions(images: np.ndarray, *, names=ALL_CORRUPTIONS, repeats: int = 3, seed: int = 0,
                     frost_dir=None) -> dict[str, dict[str, float]]:
    """Best-of-``repeats`` seconds for each corruption over all five severities of ``images``.

    Args:
        images: uint8 ``(N, 32, 32, 3)``, corrupted as one batch per severity.
        names: corruptions to time. repeats: runs per corruption (>= 1). seed: generator seed.
        frost_dir: the frost textures (loaded once before timing starts).

    Returns:
        ``{name: {"wall_s", "cpu_s", "images_per_s", "images_per_cpu_s"}}``; the
        rates count ``N × 5`` corrupted images.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    results = {}
    for name in names:
        kwargs = {"frost_dir": frost_dir} if name == "frost" else {}
        corrupt(name, images[:2], 1, np.random.default_rng(seed), **kwargs)  # imports, caches, textures
        walls, cpus = [], []
        for _ in range(repeats):
            rng = np.random.default_rng(seed)
            w0, c0 = time.perf_counter(), time.process_time()
            for severity in SEVERITIES:
                corrupt(name, images, severity, rng, **kwargs)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        count = len(images) * len(SEVERITIES)
        wall, cpu = min(walls), min(cpus)
        results[name] = {"wall_s": wall, "cpu_s": cpu, "images_per_s": count / wall, "images_per_cpu_s": count / cpu}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py/")
    parser.add_argument("--frost-dir", default=None, help="frost textures (default: as frost resolves them)")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--corruptions", default=None, help="comma-separated names (default: all 19)")
    args = parser.parse_args(argv)
    names = tuple(args.corruptions.split(",")) if args.corruptions else ALL_CORRUPTIONS
    unknown = sorted(set(names) - set(ALL_CORRUPTIONS))
    if unknown:
        raise ValueError(f"--corruptions: unknown {', '.join(unknown)}; allowed: {', '.join(ALL_CORRUPTIONS)}")
    images = load_real_images(args.data_dir, args.images)
    results = time_corruptions(images, names=names, repeats=args.repeats, frost_dir=args.frost_dir)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"{len(images)} images x 5 severities, best of {args.repeats}, OMP_NUM_THREADS={threads}")
    print("| corruption | wall s | CPU s | images/s (wall) | images/s (CPU) |\n|---|---:|---:|---:|---:|")
    for name, r in sorted(results.items(), key=lambda item: item[1]["images_per_cpu_s"]):
        rates = f"{r['images_per_s']:,.0f} | {r['images_per_cpu_s']:,.0f}"
        print(f"| {name} | {r['wall_s']:.3f} | {r['cpu_s']:.3f} | {rates} |")
    total_cpu = sum(r["cpu_s"] for r in results.values())
    rate = len(images) * len(SEVERITIES) * len(results) / total_cpu
    print(f"all {len(results)}: {total_cpu:.2f} CPU s -> {rate:,.0f} images per CPU s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
