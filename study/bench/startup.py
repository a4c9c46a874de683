"""Benchmark: how long a command and a CIFAR-10-C worker take to start, beside ``python -c pass``.

Start-up is import time: a command module or a worker that imports torch at
the top pays about a second and a half before it does anything. Each figure is
the best of ``repeats`` wall times of a fresh process (the best, because on a
shared machine other people's work only ever adds time), measured in the same
run as the bare interpreter's start, so the ratio holds on any machine.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=120)
    return time.perf_counter() - t0


def help_command() -> list[str]:
    """``freqstudy --help``: the console script beside this interpreter, else ``python -m study.cli``."""
    script = Path(sys.executable).with_name("freqstudy")
    return [str(script), "--help"] if script.is_file() else [sys.executable, "-m", "study.cli", "--help"]


def _worker_start(load_corruptions: bool) -> float:
    """Seconds from asking for a one-worker generation pool to the worker's first answer."""
    from study.cifar10c.pool import worker_pool
    from study.cifar10c.worker import ready

    t0 = time.perf_counter()
    with worker_pool(1) as pool:
        pool.submit(ready, load_corruptions).result()
        seconds = time.perf_counter() - t0
    return seconds


def bench_startup(repeats: int = 5) -> dict[str, float]:
    """Best and median wall seconds of ``python -c pass``, ``freqstudy --help`` and a worker's start.

    Args:
        repeats: fresh processes per figure (>= 1), interleaved so load changes hit all alike.

    Returns:
        ``python_s``, ``help_s``, ``worker_s`` (a generation worker ready for its
        first unit: interpreter, spawn bootstrap, the worker's imports) and
        ``worker_all_s`` (the same having imported every corruption's code), each
        the best of ``repeats``, with ``*_median_s`` beside them and each start's
        ratio to ``python_s``.
    """
    if repeats < 1:
        raise ValueError(f"repeats: {repeats} must be >= 1")
    runs: dict[str, list[float]] = {"python": [], "help": [], "worker": [], "worker_all": []}
    for _ in range(repeats):
        runs["python"].append(_wall([sys.executable, "-c", "pass"]))
        runs["help"].append(_wall(help_command()))
        runs["worker"].append(_worker_start(False))
        runs["worker_all"].append(_worker_start(True))
    out: dict[str, float] = {"repeats": repeats}
    for key, walls in runs.items():
        out[f"{key}_s"] = min(walls)
        out[f"{key}_median_s"] = statistics.median(walls)
    for key in ("help", "worker", "worker_all"):
        out[f"{key}_ratio"] = out[f"{key}_s"] / out["python_s"]
    return out


def startup_line(st: dict[str, Any]) -> str:
    """The console line of one ``bench_startup`` result."""
    return (
        f"startup: python -c pass {st['python_s']:.2f} s, freqstudy --help {st['help_s']:.2f} s "
        f"({st['help_ratio']:.1f}x), a worker {st['worker_s']:.2f} s ({st['worker_ratio']:.1f}x; "
        f"{st['worker_all_s']:.2f} s with every corruption's code)"
    )
