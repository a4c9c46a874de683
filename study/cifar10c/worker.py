"""What a CIFAR-10-C generation worker runs: (corruption, severity) units into partial files.

A spawned worker imports this module to unpickle its tasks, so it imports only
what corruption needs: numpy here, and through ``study.corruptions`` Pillow and
``scipy.ndimage``/``sparse``/``special`` where a corruption uses them, never
torch, the trial config or the tracking stack (a test holds it to that). A
task is a list of units (``study.cifar10c.schedule`` groups a corruption's
severities into one). Each unit reports its kernel time (the corruption
itself) beside its whole time (source read, write, marker) and when its
worker became ready, so the bench can tell start-up and per-unit overhead
from the work.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from study.corruptions import corrupt, get_corruption
from study.files import named
from study.metrics import ALL_CORRUPTIONS

# .partial/<corruption>.<pid>-<hex><suffix>; .partial/<...>.s<k>.done marks a block
PARTIAL_SUFFIX = ".npy.tmp"

# When this worker's initializer ran (imports done, ready for units): time.time() and the CPU
# seconds the process had spent by then; None in the parent.
_READY_AT: float | None = None
_READY_CPU_S: float | None = None


class UnitTiming(NamedTuple):
    """One unit as its worker timed it, wall and CPU seconds (``pid``, ``ready_*``: whose, its start)."""

    name: str
    severity: int
    kernel_s: float  # the corruption function alone, wall
    kernel_cpu_s: float  # the same, CPU seconds of the worker (one math thread: no more than wall)
    unit_s: float  # the whole unit: source (first unit of a worker), corruption, write, marker
    unit_cpu_s: float
    pid: int
    ready_at: float | None  # time.time() when the worker was ready; None for a unit run in the parent
    ready_cpu_s: float | None  # CPU seconds the worker spent starting (interpreter, imports)


def marker(data: Path, severity: int) -> Path:
    """The empty file that says severity ``severity``'s block of the partial ``data`` is written."""
    return data.with_name(f"{data.name.removesuffix(PARTIAL_SUFFIX)}.s{severity}.done")


def corrupt_unit(
    images: np.ndarray, name: str, severity: int, seed: int, frost_dir: str | None
) -> np.ndarray:
    """``(N, 32, 32, 3)`` uint8 -> the same corrupted at one severity, with the unit's own generator."""
    rng = np.random.default_rng([seed, ALL_CORRUPTIONS.index(name), severity])
    out = corrupt(name, images, severity, rng, frost_dir=frost_dir)
    if out.dtype != np.uint8 or out.shape != images.shape:
        raise ValueError(
            f"corruption {name} severity {severity}: returned {out.dtype} {out.shape}, "
            f"expected uint8 {images.shape}"
        )
    return out


def fill_unit(
    images: np.ndarray, data: str, block: int, name: str, severity: int, seed: int, frost_dir: str | None
) -> tuple[float, float]:
    """Corrupt ``images`` at one severity into rows ``block*N:(block+1)*N`` of the partial, then mark it.

    The block is written with ``pwrite`` at its offset in the ``.npy`` (a
    memory map would fault in every page, several times the cost). No fsync:
    once written, the bytes are in the shared page cache, so the block survives
    this process being killed; the marker comes after the write, so a marked
    block is always whole. (Power loss is not covered, as with the atomic
    renames elsewhere, which do not fsync either.) The partial's disk blocks
    were allocated when it was made, so the write cannot run out of space.

    Returns:
        The kernel's wall and CPU seconds (the corruption alone, without the write).
    """
    n = images.shape[0]
    offset, rows = _layout(data)
    if (block + 1) * n > rows:
        raise ValueError(f"{data}: {rows} rows, no room for block {block} of {n} images")
    t0, c0 = time.perf_counter(), time.process_time()
    result = corrupt_unit(images, name, severity, seed, frost_dir)
    kernel = (time.perf_counter() - t0, time.process_time() - c0)
    payload = memoryview(np.ascontiguousarray(result).data).cast("B")
    position = offset + block * payload.nbytes
    fd = os.open(data, os.O_WRONLY)
    try:
        while payload:  # a regular file takes it all at once; the loop is for the rule
            written = os.pwrite(fd, payload, position)
            payload, position = payload[written:], position + written
    except OSError as e:  # a failed write names no file (EIO)
        raise named(e, data) from None
    finally:
        os.close(fd)
    marker(Path(data), severity).touch()
    return kernel


@functools.lru_cache(maxsize=64)
def _layout(data: str) -> tuple[int, int]:
    """Where the rows of the partial ``data`` start (bytes) and how many it has: its ``.npy`` header."""
    mapped = np.load(data, mmap_mode="r")  # reads the header; no page of the data
    if mapped.dtype != np.uint8 or mapped.ndim != 4 or mapped.shape[1:] != (32, 32, 3):
        raise ValueError(f"{data}: {mapped.dtype} {mapped.shape}, not a uint8 (rows, 32, 32, 3) partial")
    if not mapped.flags.c_contiguous:
        raise ValueError(f"{data}: stored in Fortran order, not as a partial is made")
    return int(mapped.offset), int(mapped.shape[0])


@functools.lru_cache(maxsize=1)
def _source_images(source: str) -> np.ndarray:
    """The clean ``(N, 32, 32, 3)`` uint8 images, read once per worker process."""
    return np.array(np.load(source, mmap_mode="r"))


def run_units(
    source: str, units: Sequence[tuple[str, int, str, int]], seed: int, frost_dir: str | None
) -> list[UnitTiming]:
    """``fill_unit`` for each ``(name, severity, partial, block)`` of one task, in a worker.

    Top level, so spawned workers unpickle it. The source (an ``.npy`` of the
    clean images) is read once per worker; a unit's markers are on disk as soon
    as it is done, so the units before one that fails are kept for the next run.
    """
    timings = []
    for name, severity, data, block in units:
        t0, c0 = time.perf_counter(), time.process_time()
        kernel_s, kernel_cpu_s = fill_unit(
            _source_images(source), data, block, name, severity, seed, frost_dir
        )
        unit_s, unit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        timings.append(
            UnitTiming(
                name,
                severity,
                kernel_s,
                kernel_cpu_s,
                unit_s,
                unit_cpu_s,
                os.getpid(),
                _READY_AT,
                _READY_CPU_S,
            )
        )
    return timings


def exit_with_parent(parent: int) -> None:
    """Worker initializer: note when the worker is ready, and end it when the run that started it dies.

    A pool worker whose parent is killed would otherwise finish its unit and
    then wait on the task queue forever, holding a core of a shared machine.
    """
    global _READY_AT, _READY_CPU_S
    _READY_AT, _READY_CPU_S = time.time(), time.process_time()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def ready(load_corruptions: bool = False) -> tuple[int, float | None]:
    """A task for timing a worker's start: ``(pid, ready_at)``.

    With ``load_corruptions``, first import every corruption's code (Pillow,
    scipy.ndimage...), which a worker otherwise does on its first unit of each.
    """
    if load_corruptions:
        for name in ALL_CORRUPTIONS:
            get_corruption(name)
    return os.getpid(), _READY_AT
