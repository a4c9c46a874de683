"""Each complete trial's own accuracies with intervals, from its per-image outcomes, as the
report's tables and figures show them (:func:`trial_intervals`), and the split they report on.

The bootstrap is :func:`study.analysis.paired.group_summary` over the statistics the
statistic table gives each trial's outcomes; this module decides which ones the report needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from study import metrics as M
from study.analysis.outcomes import Outcomes
from study.analysis.paired import DEFAULT_RESAMPLES, group_summary
from study.analysis.statistics import available_statistics
from study.selection.choice import (
    Choice,
    fourier_models,
)

# Each complete trial's own intervals are a bootstrap per statistic (about 0.1 s each at 10,000
# images); beyond this many complete trials they use LARGE_STUDY_RESAMPLES, and the captions say so.
LARGE_STUDY = 50
LARGE_STUDY_RESAMPLES = 999


def report_split(trials: Sequence[dict[str, Any]]) -> str:
    """``test`` when the study evaluated the test split, else ``val``."""
    return "test" if any(M.TEST_CLEAN_ACC in t["metrics"] for t in trials) else "val"


@dataclass(frozen=True)
class Intervals:
    """Each complete trial's own accuracies with intervals, from its per-image outcomes.

    Attributes:
        by_run: run_id -> metric key (``test/clean_acc``, ``test/category/noise``,
            ``test/corruption/fog``, ``val/corruption_acc``, ...) -> ``(low, high)``, percent.
        n_resamples: bootstrap resamples per statistic.
        confidence: of the intervals.
    """

    by_run: Mapping[str, Mapping[str, tuple[float, float]]] = field(default_factory=dict)
    n_resamples: int = DEFAULT_RESAMPLES
    confidence: float = 0.95

    def of(self, run_id: str, key: str) -> tuple[float, float]:
        """``(low, high)`` of a trial's metric; ``(nan, nan)`` when there is none."""
        return tuple(self.by_run.get(run_id, {}).get(key, (math.nan, math.nan)))  # type: ignore[return-value]

    def __bool__(self) -> bool:
        return any(self.by_run.values())

    def describe(self) -> str:
        """How the intervals were made, for captions: "95% interval of ... , {describe()}"."""
        fewer = (
            f"; {self.n_resamples} resamples, fewer than the default {DEFAULT_RESAMPLES}, as the study has "
            f"more than {LARGE_STUDY} complete trials"
            if self.n_resamples < DEFAULT_RESAMPLES
            else ""
        )
        return (
            "a percentile bootstrap over the evaluated images (an image with all its corrupted versions "
            f"resampled together; over seeds, then images, for a configuration with replicates{fewer})"
        )


def trial_intervals(
    choice: Choice,
    outcomes: Mapping[str, Outcomes],
    *,
    seed: int = 0,
    n_resamples: int | None = None,
) -> Intervals:
    """The intervals of each complete trial's own accuracies that the report shows.

    Computed once per trial (configurations: over their replicates' outcomes): on the
    report split clean, corruption-mean and per-category accuracy, and per corruption
    for the baseline and the Pareto models (the per-corruption figure); on ``val`` clean
    and corruption accuracy and every objective that is such a statistic (the Pareto
    figure and table). Trials without outcomes, or whose replicates were evaluated on
    different images, get none.

    Args:
        n_resamples: per statistic; default :data:`~study.analysis.paired.DEFAULT_RESAMPLES`,
            :data:`LARGE_STUDY_RESAMPLES` for studies of more than :data:`LARGE_STUDY`
            complete trials.
    """
    split = report_split(choice.trials)
    complete = [c.trial for c in choice.result.candidates]
    if n_resamples is None:
        n_resamples = DEFAULT_RESAMPLES if len(complete) <= LARGE_STUDY else LARGE_STUDY_RESAMPLES
    models = {t["run_id"] for _, t in fourier_models(choice)}
    records = complete + [t for _, t in fourier_models(choice) if all(t is not c for c in complete)]
    val_extra = {o.metric[len("val/") :] for o in choice.result.objectives if o.metric.startswith("val/")}
    by_run: dict[str, dict[str, tuple[float, float]]] = {}
    for t in records:
        runs = choice.members.get(t["run_id"]) or [t]
        group = [outcomes[r["run_id"]] for r in runs if r["run_id"] in outcomes]
        if not group:
            continue
        for sp in dict.fromkeys((split, "val")):
            if not all(sp in o.splits for o in group):
                continue
            available = available_statistics(group[0], sp)
            wanted = {"clean_acc", "corruption_acc"}
            if sp == split:
                wanted |= {a for a in available if a.startswith("category/")}
                if t["run_id"] in models:
                    wanted |= {a for a in available if a.startswith("corruption/")}
            if sp == "val":
                wanted |= val_extra
            try:
                summaries = group_summary(
                    group, sp, statistics=sorted(wanted & available), n_resamples=n_resamples, seed=seed
                )
            except ValueError:
                continue  # replicates evaluated on different images: no interval
            mine = by_run.setdefault(t["run_id"], {})
            for name, summary in summaries.items():
                mine[f"{sp}/{name}"] = (summary.ci_low, summary.ci_high)
    return Intervals(by_run, n_resamples)
