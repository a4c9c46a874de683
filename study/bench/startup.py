"""Benchmark: how long a command and a CIFAR-10-C worker take to start, beside ``python -c pass``.

Start-up is import time: a command module or a worker that imports torch at
the top pays about a second and a half before it does anything. The figures
come in rounds, each a fresh ``python -c pass``, ``freqstudy --help`` and two
worker starts one after the other, so a change in load hits a round's baseline
and its subjects alike.

A ratio is the median over rounds of the subject's CPU seconds over the same
round's baseline's. It was the best wall time of 3 over the baseline's best,
and one quiet run printed a false ``--help`` regression (3.26x against 1.8)
for two reasons. The wall times were read through ``subprocess.run(...,
timeout=...)``, which polls the child with a back-off capped at 50 ms, so a
start was read as the next poll (0.035, 0.064, 0.114, 0.164 s...: the
baseline's ~0.04 s came out 0.035 or 0.064 by chance); a child is now waited
for without polling. And on the shared 2-core machine a start also waits for a
core: CPU seconds leave that out, pairing within a round cancels what load
does to both sides, and the median drops the odd round. The baseline stays
``python -c pass`` because it pays what every subject pays before its own
code runs (the interpreter, ``site``, the environment's ``.pth`` files), so
the ratio is the command's own import cost over an empty program's; a bigger
baseline (``import numpy``) would measure numpy's import, a smaller one
(``-S``, ~0.01 s) mostly the ``site`` work the subjects cannot skip, and
both move the ratio's meaning. Wall seconds are reported beside it (best and
median), being what a user waits for.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's children that have ended and been waited for."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def time_process(argv: list[str], timeout_s: float = 120.0) -> tuple[float, float]:
    """``(wall_s, cpu_s)`` of running ``argv`` to its end.

    The child is waited for in one blocking ``waitpid`` (``Popen.wait()`` with
    no timeout; a timer kills a child that outlives ``timeout_s``), not polled,
    so the wall time is the child's own. Its CPU seconds are the growth of the
    waited-for children's count over it, nothing else of ours ending meanwhile.
    """
    cpu0, t0 = _children_cpu_s(), time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        returncode = proc.wait()
    finally:
        timer.cancel()
    wall = time.perf_counter() - t0
    if returncode != 0:
        raise subprocess.CalledProcessError(returncode, argv)
    return wall, _children_cpu_s() - cpu0


def help_command() -> list[str]:
    """``freqstudy --help``: the console script beside this interpreter, else ``python -m study.cli``."""
    script = Path(sys.executable).with_name("freqstudy")
    return [str(script), "--help"] if script.is_file() else [sys.executable, "-m", "study.cli", "--help"]


def _worker_start(load_corruptions: bool) -> tuple[float, float]:
    """``(wall_s, cpu_s)`` of a worker's start: seconds from asking for a one-worker generation pool
    to the worker's first answer, and the CPU seconds the worker process had used by then (all its
    threads, from its exec; asked of the worker itself, its only task after ``ready``)."""
    from study.cifar10c.pool import worker_pool
    from study.cifar10c.worker import ready

    t0 = time.perf_counter()
    with worker_pool(1) as pool:
        pool.submit(ready, load_corruptions).result()
        wall = time.perf_counter() - t0
        cpu = pool.submit(time.process_time).result()
    return wall, cpu


def paired_ratio(subject: Sequence[float], baseline: Sequence[float]) -> float:
    """Median over rounds of ``subject[i] / baseline[i]`` (both seconds, one entry a round, > 0)."""
    if len(subject) != len(baseline) or not subject:
        raise ValueError(f"paired_ratio: {len(subject)} and {len(baseline)} rounds; need the same, >= 1")
    return statistics.median(s / b for s, b in zip(subject, baseline, strict=True))


def bench_startup(repeats: int = 7) -> dict[str, float]:
    """Wall and CPU seconds of ``python -c pass``, ``freqstudy --help`` and a worker's start, and ratios.

    Args:
        repeats: rounds (>= 1); each starts every figure's process once, in turn.

    Returns:
        ``python_s``, ``help_s``, ``worker_s`` (a generation worker ready for its
        first unit: interpreter, spawn bootstrap, the worker's imports) and
        ``worker_all_s`` (the same having imported every corruption's code), each
        the best wall seconds of ``repeats``, with ``*_median_s`` (median wall
        seconds) and ``*_cpu_s`` (median CPU seconds of the started process)
        beside them; and ``help_ratio``, ``worker_ratio``, ``worker_all_ratio``:
        each start's ``paired_ratio`` of CPU seconds to ``python -c pass``'s.
    """
    if repeats < 1:
        raise ValueError(f"repeats: {repeats} must be >= 1")
    starts: dict[str, Callable[[], tuple[float, float]]] = {
        "python": lambda: time_process([sys.executable, "-c", "pass"]),
        "help": lambda: time_process(help_command()),
        "worker": lambda: _worker_start(False),
        "worker_all": lambda: _worker_start(True),
    }
    walls: dict[str, list[float]] = {key: [] for key in starts}
    cpus: dict[str, list[float]] = {key: [] for key in starts}
    for _ in range(repeats):
        for key, start in starts.items():
            wall, cpu = start()
            walls[key].append(wall)
            cpus[key].append(cpu)
    out: dict[str, float] = {"repeats": repeats}
    for key in starts:
        out[f"{key}_s"] = min(walls[key])
        out[f"{key}_median_s"] = statistics.median(walls[key])
        out[f"{key}_cpu_s"] = statistics.median(cpus[key])
    for key in ("help", "worker", "worker_all"):
        out[f"{key}_ratio"] = paired_ratio(cpus[key], cpus["python"])
    return out


def startup_line(st: dict[str, Any]) -> str:
    """The console line of one ``bench_startup`` result."""
    return (
        f"startup: python -c pass {st['python_s']:.2f} s, freqstudy --help {st['help_s']:.2f} s "
        f"({st['help_ratio']:.1f}x in CPU s), a worker {st['worker_s']:.2f} s "
        f"({st['worker_ratio']:.1f}x; {st['worker_all_s']:.2f} s with every corruption's code)"
    )
