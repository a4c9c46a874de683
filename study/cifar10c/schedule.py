"""Which CIFAR-10-C units go to the workers together, and in what order.

A worker pays once for each corruption it touches (its module's imports, the
frost textures, shot noise's tables, zoom blur's operator), so a
corruption's severities go to one worker as one task; the corruptions of
``TOGETHER`` share one task, so that only one worker imports what they alone
need. Tasks are queued longest first (LPT), so the workers, each taking the
next task when it is free, end within about the smallest task of each other.
With fewer corruptions than two per worker, the units are queued one by one
instead, so that every worker has work. The order never changes the bytes:
each unit has its own generator.
"""

from __future__ import annotations

from collections.abc import Sequence

# CPU seconds per 1,000 images of each corruption at all five severities (warm, one math thread,
# `time_corruptions` on 1,000 synthetic images, 2-core machine, 2026-12-07). Only the order they
# give matters; a corruption missing here is queued as if it were the costliest.
RELATIVE_COST: dict[str, float] = {
    "gaussian_noise": 0.24,
    "shot_noise": 0.28,
    "impulse_noise": 0.10,
    "speckle_noise": 0.24,
    "defocus_blur": 0.24,
    "glass_blur": 0.40,
    "motion_blur": 0.41,
    "zoom_blur": 0.19,
    "gaussian_blur": 0.22,
    "snow": 0.61,
    "frost": 0.14,
    "fog": 0.19,
    "spatter": 0.60,
    "brightness": 0.23,
    "contrast": 0.20,
    "elastic_transform": 0.54,
    "pixelate": 0.18,
    "jpeg_compression": 0.42,
    "saturate": 0.24,
}

# The only corruptions that import scipy (scipy.special for shot noise's tables, scipy.sparse for
# zoom blur's operator); the first scipy import costs a worker ~0.15-0.2 CPU s.
TOGETHER: tuple[frozenset[str], ...] = (frozenset({"shot_noise", "zoom_blur"}),)


def plan_tasks(pending: Sequence[tuple[str, int]], n_workers: int) -> list[list[tuple[str, int]]]:
    """The worker tasks for ``pending`` ``(corruption, severity)`` units, costliest first.

    Args:
        pending: units to do, each corruption's severities in the order wanted.
        n_workers: processes that will take the tasks.

    Returns:
        lists of units: one per corruption (its units in ``pending``'s order; those of
        a ``TOGETHER`` set in one list), or one per unit when there are fewer
        corruptions than ``2 * n_workers``.
    """
    top = max(RELATIVE_COST.values())

    def cost(task: list[tuple[str, int]]) -> float:
        return sum(RELATIVE_COST.get(name, top) for name, _ in task) / 5  # a unit is one severity

    names = list(dict.fromkeys(name for name, _ in pending))
    if len(names) < 2 * n_workers:
        tasks = [[unit] for unit in pending]
    else:
        key = {name: next((s for s in TOGETHER if name in s), name) for name in names}
        groups: dict[object, list[tuple[str, int]]] = {}
        for unit in pending:
            groups.setdefault(key[unit[0]], []).append(unit)
        tasks = list(groups.values())
    return sorted(tasks, key=cost, reverse=True)  # stable: ties keep pending's order
