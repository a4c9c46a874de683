"""Benchmark: single-process throughput of each CIFAR-10-C corruption, for
finding the slow ones. Every corruption runs at all five severities on one
batch of images, and its best-of-``repeats`` wall and CPU seconds become
images per second (one image at one severity is one image). CPU seconds are
reported beside wall seconds because on a shared machine the wall clock also
counts other people's processes. ``freqstudy bench --only corruptions`` runs
it on one math thread.
"""

from __future__ import annotations

import os
import time

import numpy as np

from study.corruptions import ALL_CORRUPTIONS, SEVERITIES, corrupt


def load_real_images(data_dir: str | os.PathLike, n: int) -> np.ndarray:
    """The first ``n`` real images of a ``cifar-10-batches-py`` folder: the test batch, then training batches.

    Args:
        data_dir: a folder holding ``cifar-10-batches-py/`` (or that folder itself).
        n: images wanted (> 0).

    Returns:
        uint8 ``(n, 32, 32, 3)``; tiled when the folder holds fewer than ``n``.
    """
    from study.data.cifar10 import load_cifar10

    if n <= 0:
        raise ValueError(f"images: {n} must be > 0")
    try:
        cifar = load_cifar10(data_dir, download=False)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(
            f"no CIFAR-10 batches in {data_dir}; expected test_batch and data_batch_1..5 ({e})"
        ) from None
    images = np.concatenate([cifar.test_images, cifar.train_images])
    return np.ascontiguousarray(np.resize(images[:n], (n, 32, 32, 3)))


def time_corruptions(
    images: np.ndarray, *, names=ALL_CORRUPTIONS, repeats: int = 3, seed: int = 0, frost_dir=None
) -> dict[str, dict[str, float]]:
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
        results[name] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "images_per_s": count / wall,
            "images_per_cpu_s": count / cpu,
        }
    return results
