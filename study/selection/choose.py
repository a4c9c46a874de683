"""Choosing from a study: which trials count, the Pareto set of the ones that do,
the champion, and gains against the baseline.

Plain trial records (``{"run_id", "name", "params", "metrics", "tags"}`` as
read by ``study.tracking.queries``) in, no MLflow, no Ray, no I/O. Only
trials that finished their full training budget and have every objective are
sorted (``study.selection.pareto`` holds the kernels); the rest are counted by
reason. Objectives are validation metrics by default; test metrics are carried
along for the table and never used for choosing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.stem import FrequencySettings
from study import metrics as M
from study.analysis.gains import metric_gains
from study.errors import FieldError
from study.objectives import Objective
from study.selection.pareto import crowding_distance, non_dominated_ranks

DEFAULT_OBJECTIVES = f"{M.VAL_CLEAN_ACC}:max,{M.VAL_CORRUPTION_ACC}:max"


# The metric that orders the Pareto set (aliases pareto-1, pareto-2, ...) and
# that the champion maximises: robustness on the validation corruptions.
ROBUSTNESS_METRIC = M.VAL_CORRUPTION_ACC


CLEAN_METRIC = M.VAL_CLEAN_ACC


Trial = Mapping[str, Any]


def check_max_clean_drop(points: float | None) -> None:
    """``max_clean_drop`` must be a number of points >= 0 (or absent)."""
    if points is not None and (math.isnan(points) or points < 0):
        raise FieldError("max_clean_drop", f": {points} must be a number of points >= 0")


def parse_objectives(text: str | None) -> tuple[Objective, ...]:
    """``"val/clean_acc:max,val/corruption_acc:max"`` -> objectives (default when None)."""
    text = DEFAULT_OBJECTIVES if text is None or not text.strip() else text
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        metric, sep, direction = item.rpartition(":")
        if not sep:
            metric, direction = item, "max"
        if metric.strip().startswith("test/"):
            raise ValueError(
                f"objectives: {metric.strip()!r} is a test-set metric; models are chosen on "
                "validation metrics (val/...) and test numbers are only reported"
            )
        out.append(Objective(metric=metric.strip(), direction=direction.strip()))
    if not out:
        raise ValueError(f"objectives: {text!r} names no metric; expected METRIC:max,METRIC:min")
    names = [o.metric for o in out]
    if len(set(names)) != len(names):
        raise ValueError(f"objectives: {text!r} repeats a metric")
    return tuple(out)


# -- numpy kernels ----------------------------------------------------------------


# Listing every per-corruption key in an error would bury the useful names.
_DETAIL_PARTS = ("/corruption/", "/severity/", "/category/")


def available_metrics(trials: Iterable[Trial]) -> list[str]:
    return sorted({k for t in trials for k in t["metrics"]})


def check_metrics(study: str, trials: Sequence[Trial], wanted: Iterable[str]) -> None:
    """Raise a one-line ``ValueError`` naming the study's metrics when a wanted
    metric appears in none of its trials."""
    have = set(available_metrics(trials))
    for key in wanted:
        if key in have:
            continue
        summary = [k for k in sorted(have) if not any(p in k for p in _DETAIL_PARTS)]
        detail = len(have) - len(summary)
        listed = ", ".join(summary) if summary else "(none)"
        more = f" (and {detail} per-corruption/severity/category keys)" if detail else ""
        raise ValueError(f"metric {key!r} not found in study {study!r}; metrics: {listed}{more}")


def metric_of(trial: Trial, key: str) -> float:
    """A trial's metric as float, NaN when absent or not a number."""
    value = trial.get("metrics", {}).get(key)
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def param_of(trial: Trial, key: str, default: Any = None) -> Any:
    """A trial's flattened config param (MLflow params are strings), or default."""
    return trial.get("params", {}).get(key, default)


def frequency_of(trial: Trial) -> dict[str, Any]:
    """The trial's frequency settings (every ``FrequencySettings`` field, by name): strings
    as logged, numbers as float (NaN when absent). Rows and tables take them from here, so
    a new setting reaches them without edits."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(FrequencySettings):
        key = f"frequency.{f.name}"
        out[f.name] = param_of(trial, key, "") if f.type in (str, "str") else float_param(trial, key)
    out["learned_form"] = M.learned_form_of(trial) or ""  # energy-share, band-gains (earlier), "" unlearned
    return out


def float_param(trial: Trial, key: str) -> float:
    try:
        return float(param_of(trial, key))
    except (TypeError, ValueError):
        return math.nan


def incomplete_reason(trial: Trial) -> str | None:
    """Why a trial cannot be chosen (None when it finished its full training budget).

    A trial counts only when it is tagged finished and ``epochs_completed``
    equals its ``train.epochs``: ASHA-stopped, diverged and failed trials carry
    half-trained metrics.
    """
    status = trial.get("tags", {}).get(M.TAG_STATUS)
    if trial.get("inconsistent"):  # runs tagged as one configuration that are not one
        return "inconsistent configuration"
    if trial.get("status") in ("FAILED", "KILLED"):  # the MLflow run itself did not end well
        return f"run {str(trial['status']).lower()}"
    if status != "finished":
        return f"status {status or 'unknown'}"
    done = metric_of(trial, M.EPOCHS_COMPLETED)
    budget = float_param(trial, "train.epochs")
    if math.isnan(done) or math.isnan(budget):
        return "no epochs_completed or train.epochs"
    if int(done) != int(budget):
        return "stopped early"
    return None


def is_baseline(trial: Trial) -> bool:
    return str(trial.get("tags", {}).get(M.TAG_BASELINE, "")).lower() == "true"


def is_plain(trial: Trial) -> bool:
    """Free mode with no perturbation (σ = 0): what the README calls the baseline."""
    return param_of(trial, "frequency.mode") == "free" and float_param(trial, "frequency.perturbation") == 0.0


def contradicts_baseline(trial: Trial) -> bool:
    """A logged mode other than free, or a logged σ other than 0 (absent params say nothing)."""
    mode = param_of(trial, "frequency.mode")
    sigma = param_of(trial, "frequency.perturbation")
    return (mode is not None and mode != "free") or (
        sigma is not None and float_param(trial, "frequency.perturbation") != 0.0
    )


def baseline_problems(trials: Sequence[Trial]) -> list[str]:
    """One line per trial tagged baseline that is not free mode with σ = 0 (never used as one)."""
    return [
        f"run {t['run_id']} is tagged {M.TAG_BASELINE}=true but is mode {param_of(t, 'frequency.mode')} "
        f"with sigma {param_of(t, 'frequency.perturbation')}; the baseline is free mode with sigma 0, "
        "so it is not used as one"
        for t in trials
        if is_baseline(t) and contradicts_baseline(t)
    ]


def find_baseline(trials: Sequence[Trial]) -> Trial | None:
    """The study's baseline: the complete trial tagged baseline, else a complete
    free-mode trial with no perturbation (the earliest, so the choice is stable).
    A tagged trial that is not free mode with σ = 0 is never the baseline
    (:func:`baseline_problems` names it)."""
    complete = [t for t in trials if incomplete_reason(t) is None]
    tagged = [t for t in complete if is_baseline(t) and not contradicts_baseline(t)]
    if tagged:
        return min(tagged, key=lambda t: t.get("start_time") or 0)
    plain = [t for t in complete if is_plain(t)]
    return min(plain, key=lambda t: t.get("start_time") or 0) if plain else None


@dataclass(frozen=True)
class Candidate:
    """A complete trial with its place in the non-dominated order."""

    trial: Trial
    rank: int  # 1 = on the Pareto front
    crowding: float  # within its front; inf at the extremes
    objectives: dict[str, float]  # metric -> value, the objectives only

    @property
    def run_id(self) -> str:
        return str(self.trial.get("run_id"))


@dataclass(frozen=True)
class ParetoResult:
    """The outcome of sorting a study's trials."""

    objectives: tuple[Objective, ...]
    candidates: tuple[Candidate, ...]  # complete trials with every objective, by (rank, -robustness)
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> count

    @property
    def front(self) -> tuple[Candidate, ...]:
        """Rank-1 candidates, most robust first (the order of aliases pareto-1, ...)."""
        return tuple(c for c in self.candidates if c.rank == 1)

    def describe_excluded(self) -> str:
        if not self.excluded:
            return "none excluded"
        return "excluded: " + ", ".join(f"{n} {reason}" for reason, n in sorted(self.excluded.items()))


def _robustness_order(c: Candidate) -> tuple:
    robust = metric_of(c.trial, ROBUSTNESS_METRIC)
    clean = metric_of(c.trial, CLEAN_METRIC)
    # NaN sorts last; ties broken by clean accuracy, then run id for stability.
    return (
        c.rank,
        math.isnan(robust),
        -np.nan_to_num(robust, nan=0.0),
        -np.nan_to_num(clean, nan=0.0),
        c.run_id,
    )


def sort_trials(trials: Sequence[Trial], objectives: Sequence[Objective]) -> ParetoResult:
    """Non-dominated sort of the complete trials that have every objective.

    Trials that did not finish their full budget, and trials missing an
    objective or holding NaN, are left out and counted by reason.
    """
    excluded: dict[str, int] = {}
    kept: list[Trial] = []
    for t in trials:
        reason = incomplete_reason(t)
        if reason is None and any(math.isnan(metric_of(t, o.metric)) for o in objectives):
            reason = "missing or NaN objective"
        if reason is None:
            kept.append(t)
        else:
            excluded[reason] = excluded.get(reason, 0) + 1
    values = np.array([[metric_of(t, o.metric) for o in objectives] for t in kept], dtype=float)
    values = values.reshape(len(kept), len(objectives))
    directions = [o.direction for o in objectives]
    ranks = non_dominated_ranks(values, directions)
    crowd = np.zeros(len(kept))
    for r in np.unique(ranks):
        members = np.flatnonzero(ranks == r)
        crowd[members] = crowding_distance(values[members])
    cands = [
        Candidate(
            trial=t,
            rank=int(ranks[i]),
            crowding=float(crowd[i]),
            objectives={o.metric: float(values[i, j]) for j, o in enumerate(objectives)},
        )
        for i, t in enumerate(kept)
    ]
    cands.sort(key=_robustness_order)
    return ParetoResult(objectives=tuple(objectives), candidates=tuple(cands), excluded=excluded)


def choose_champion(
    result: ParetoResult,
    baseline: Trial | None,
    max_clean_drop: float | None,
    eligible: Callable[[Candidate], bool] | None = None,
) -> Candidate | None:
    """The most robust Pareto trial whose validation clean accuracy is within
    ``max_clean_drop`` points of the baseline's (no limit when None), among those
    ``eligible`` says may be chosen (e.g. a significant robustness gain).

    With the default objectives this is also the most robust of all complete
    trials within the limit: anything dominating it would be at least as
    robust and at least as clean. None when no Pareto trial qualifies.
    """
    front = tuple(c for c in result.front if eligible is None or eligible(c))
    if max_clean_drop is None:
        return front[0] if front else None
    check_max_clean_drop(max_clean_drop)
    if baseline is None:
        raise FieldError(
            "max_clean_drop",
            ": the study has no finished baseline trial (free mode, sigma 0) to measure the drop against",
        )
    floor = metric_of(baseline, CLEAN_METRIC) - max_clean_drop
    ok = [c for c in front if metric_of(c.trial, CLEAN_METRIC) >= floor]
    return ok[0] if ok else None


def trial_gains(trial: Trial, baseline: Trial | None) -> dict[str, float]:
    """Gains over the baseline from the runs' summary metrics, one per entry of the gain table
    (:data:`study.analysis.gains.GAINS`): test split as reported (``robustness_gain``, ...) and
    the validation ones with a ``val_`` prefix; NaN without a baseline."""
    return metric_gains(trial.get("metrics", {}), None if baseline is None else baseline.get("metrics", {}))
