"""The figures of the README's performance table that every bench run is checked against.

A benchmark that only prints today's number cannot say that a change made
things slower (CIFAR-10-C generation once lost half its speed to a torch import
in every worker, and no run said so). These are the figures the README's table
states for the 2-core CPU (``tests/unit/test_bench_recorded.py`` holds the two to
the same numbers); a run that does worse than one of them by more than its
tolerance prints a ``REGRESSION`` line naming the figure, today's value and the
recorded one, with the load average beside it, since a shared machine reads
slow. Ratios to a baseline of the same run are compared where there is one, so
a faster or slower machine moves both sides.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple


class Recorded(NamedTuple):
    """One figure of the README's table: ``result[section][key]`` of a run (quick or full, or either)."""

    section: str
    key: str
    quick: bool | None  # None: the same figure for quick and full runs
    value: float  # as the README's table states it, the first number of its last column
    higher_is_better: bool
    tolerance: float  # a regression is worse than value by more than this factor
    what: str  # the README's table row that states it


RECORDED: tuple[Recorded, ...] = (
    # Start-up: medians of CPU-second ratios paired within a round (study/bench/startup.py).
    Recorded("startup", "help_ratio", None, 1.8, False, 1.5, "start-up: `freqstudy --help`"),
    Recorded("startup", "worker_ratio", None, 3.0, False, 1.5, "start-up: one CIFAR-10-C generation worker"),
    # Wall speed of generation against the original generator, measured on this machine when quiet
    # (issue 27: the code before the re-layout made 15.1-17.2x in the same run); a loaded machine
    # reads slow, hence the CPU figures beside it, which other people's work does not move.
    Recorded("corrupt", "speedup_vs_reference", True, 18.5, True, 1.25, "CIFAR-10-C generation, `--quick`"),
    Recorded("corrupt", "images_per_cpu_s", True, 8000.0, True, 1.25, "same, per CPU second"),
    Recorded(
        "corrupt", "images_per_cpu_s", False, 11800.0, True, 1.25, "generation, 2,000 images, per CPU second"
    ),
)


def regressions(result: dict[str, Any], recorded: tuple[Recorded, ...] = RECORDED) -> list[str]:
    """One line per figure of ``result`` (a ``run_bench`` result) worse than its recorded value.

    Sections that did not run, or were skipped, are not compared.
    """
    quick = bool(result.get("quick"))
    lines = []
    for r in recorded:
        section = result.get(r.section)
        if r.quick not in (None, quick) or not isinstance(section, dict) or r.key not in section:
            continue
        value = float(section[r.key])
        limit = r.value / r.tolerance if r.higher_is_better else r.value * r.tolerance
        if (value < limit) if r.higher_is_better else (value > limit):
            lines.append(
                f"REGRESSION {r.section}.{r.key} ({r.what}): {value:,.2f}, "
                f"{'below' if r.higher_is_better else 'above'} {limit:,.2f} "
                f"(the README's table: {r.value:g}, tolerance {r.tolerance:g}x; "
                f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
            )
    return lines
