"""Benchmark: CIFAR-10-C generation speed against the original generator."""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from study.cifar10c.generate import generate
from study.cifar10c.worker import UnitTiming
from study.metrics import ALL_CORRUPTIONS, SEVERITIES

# Reference: the original generator, single process, 10,000 test images x 19 x 5 in ~19 minutes.
REFERENCE_IMAGES_PER_S = 10_000 * 19 * 5 / (19 * 60)


def synthetic_images(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 32, 32, 3)`` uint8 images with smooth structure and texture, so filters do real work."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 8, 8, 3)).astype(np.float32)
    smooth = coarse.repeat(4, axis=1).repeat(4, axis=2)  # (n, 8, 8, 3) -> (n, 32, 32, 3)
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench_corruption_generation(n_images: int, workers: int, quick: bool) -> dict:
    """Time generating all 19 corruptions x 5 severities of ``n_images`` synthetic images.

    Args:
        n_images: clean images (capped at 200 when ``quick``).
        workers: processes, as for ``generate`` (0 = one per core).
        quick: a small run, well under a minute.

    Returns:
        ``images_per_s`` (corrupted images written per wall second, all 95
        units), the reference's figure beside it and their ratio, the
        projected seconds for the full 10,000 test images,
        ``images_per_cpu_s`` (per CPU second of this process and its workers),
        and where the time went: ``kernel_s``/``kernel_cpu_s`` (the corruptions
        themselves, summed over units) with their share of all CPU seconds,
        ``unit_overhead_ms``/``unit_overhead_cpu_ms`` (the rest of a unit: source
        read, write, marker), ``worker_ready_s`` (from the call until the
        last worker had started and imported) and ``worker_start_cpu_s`` (CPU
        seconds the workers spent starting, summed).
    """
    n = min(n_images, 200) if quick else n_images
    images = synthetic_images(n)
    labels = np.arange(n, dtype=np.int64) % 10
    root = Path(tempfile.mkdtemp(prefix="freqstudy-bench-corrupt-"))
    try:
        units: list[UnitTiming] = []
        cpu0 = _cpu_seconds()
        started_at, t0 = time.time(), time.perf_counter()
        # Frost textures are found as study.corruptions resolves them ($FREQSTUDY_FROST_DIR, cache, download).
        kw: dict[str, Any] = dict(workers=workers, source_name="bench", progress=False, on_unit=units.append)
        generate(images, labels, root / "c", **kw)
        seconds = time.perf_counter() - t0
        cpu_seconds = _cpu_seconds() - cpu0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n_units = len(ALL_CORRUPTIONS) * len(SEVERITIES)
    assert len(units) == n_units, f"{len(units)} unit timings for {n_units} units"
    rate = n * n_units / seconds
    n_workers = len({u.pid for u in units})
    kernel_s, unit_s = sum(u.kernel_s for u in units), sum(u.unit_s for u in units)
    kernel_cpu_s, unit_cpu_s = sum(u.kernel_cpu_s for u in units), sum(u.unit_cpu_s for u in units)
    starts = {u.pid: (u.ready_at, u.ready_cpu_s) for u in units if u.ready_at is not None}
    return {
        "n_images": n,
        "workers": n_workers,
        "units": n_units,
        "seconds": seconds,
        "images_per_s": rate,
        # CPU time of this process and its (joined) workers: robust to other load on a shared machine.
        "cpu_seconds": cpu_seconds,
        "images_per_cpu_s": n * n_units / cpu_seconds,
        "reference_images_per_s": REFERENCE_IMAGES_PER_S,
        "speedup_vs_reference": rate / REFERENCE_IMAGES_PER_S,
        "projected_full_test_seconds": 10_000 * n_units / rate,
        # Where the time went: the corruptions themselves, the rest of each unit (source read,
        # write, marker) and the workers' start (spawn, imports); CPU seconds beside wall
        # ones, since on a shared machine the wall clock also counts other people's work.
        "kernel_s": kernel_s,
        "kernel_cpu_s": kernel_cpu_s,
        "kernel_images_per_cpu_s": n * n_units / kernel_cpu_s,
        "kernel_cpu_share": kernel_cpu_s / cpu_seconds,  # of all CPU seconds of the run
        "unit_overhead_ms": 1000 * (unit_s - kernel_s) / n_units,
        "unit_overhead_cpu_ms": 1000 * (unit_cpu_s - kernel_cpu_s) / n_units,
        # From the call until the last worker was ready, and the CPU seconds workers spent starting.
        "worker_ready_s": max((at - started_at for at, _ in starts.values()), default=0.0),
        "worker_start_cpu_s": sum(cpu for _, cpu in starts.values()),
    }


def generation_line(co: dict[str, Any]) -> str:
    """The console line of one ``bench_corruption_generation`` result."""
    return (
        f"corrupt: {co['images_per_s']:,.0f} img/s, {co['speedup_vs_reference']:.1f}x the original "
        f"generator ({co['seconds']:.2f} s wall, {co['cpu_seconds']:.2f} CPU s, {co['workers']} workers); "
        f"kernels {co['kernel_cpu_s']:.2f} CPU s ({co['kernel_cpu_share']:.0%}), "
        f"{co['unit_overhead_cpu_ms']:.1f} CPU ms overhead per unit, workers' start "
        f"{co['worker_start_cpu_s']:.2f} CPU s (all ready after {co['worker_ready_s']:.2f} s)"
    )
