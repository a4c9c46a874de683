"""The report's rows: one per trial (``trials.csv``), one per configuration (the table
against the baseline), the Pareto rows of ``pareto.csv`` and the per-corruption rows.

Plain dicts of numbers; gains and their intervals come from the gain table
(:mod:`study.analysis.gains`), accuracies' intervals from :mod:`study.reporting.intervals`.
"""

from __future__ import annotations

import math
from typing import Any

from study import metrics as M
from study.analysis.gains import gain_fields
from study.analysis.importance import Importance
from study.reporting.formatting import flat_intervals
from study.reporting.intervals import Intervals
from study.selection import choose as P
from study.selection.choice import (
    Choice,
    aliases_of,
    trial_label,
)
from study.selection.configurations import config_id_of
from study.selection.race_outcomes import race_of


def trial_rows(choice: Choice, intervals: Intervals | None = None) -> list[dict[str, Any]]:
    """One row per trial (all of them, incomplete ones with their reason), for the CSV.

    Each accuracy has ``<metric>_ci_low``/``_ci_high`` (the trial's own interval, see
    :func:`trial_intervals`) and each gain its paired interval against the baseline and
    p-value (``robustness_gain_ci_low``, ..., ``robustness_gain_p``; ``val_`` for the
    validation split); blank without per-image outcomes, and blank on the runs of a
    configuration with several replicates (whose intervals are the configuration's:
    :func:`configuration_rows`, ``pareto.csv``). ``seeds`` and ``race_reason`` are its
    configuration's (:func:`study.selection.race_outcomes.race_of`)."""
    ranks = {c.run_id: c.rank for c in choice.result.candidates}
    aliases = aliases_of(choice)
    config_of = {config_id_of(c): c for c in choice.configurations}
    rows = []
    for t in choice.trials:
        runs = choice.members.get(t["run_id"], [t] if not choice.members else [])
        own = len(runs) == 1  # the run is its configuration: the intervals are its own
        row = _row(choice, t, ranks, aliases, intervals if own else None, own)
        # Each run says its configuration's seeds and why they stopped there.
        race = race_of(config_of.get(config_id_of(t), t))
        row["seeds"], row["race_reason"] = race.seeds, race.reason
        rows.append(row)
    return rows


def configuration_rows(choice: Choice, intervals: Intervals | None = None) -> list[dict[str, Any]]:
    """One row per complete configuration (a trial without replicates is its own), fields as
    :func:`trial_rows`, metrics the means over its replicates, with ``replicates`` (seeds that
    ended), ``replicates_failed`` and its race (``seeds``, ``race_reason``, ``race_other``:
    :func:`study.selection.race_outcomes.race_of`)."""
    ranks = {c.run_id: c.rank for c in choice.result.candidates}
    aliases = aliases_of(choice)
    rows = []
    for c in choice.result.candidates:
        row = _row(choice, c.trial, ranks, aliases, intervals, True)
        row["replicates"] = int(c.trial.get("replicates", 1))
        row["replicates_failed"] = int(c.trial.get("replicates_failed", 0))
        race = race_of(c.trial)
        row["seeds"], row["race_reason"], row["race_other"] = race.seeds, race.reason, race.other
        rows.append(row)
    return rows


def _row(choice, t, ranks, aliases, intervals: Intervals | None, gains: bool) -> dict[str, Any]:
    base = choice.baseline
    row: dict[str, Any] = {
        "trial": trial_label(t),
        "run_id": t["run_id"],
        "status": t["tags"].get(M.TAG_STATUS, ""),
        "excluded": excluded_reason(choice, t, ranks),
        "baseline": base is not None and base["run_id"] == t["run_id"],
        "pareto_rank": ranks.get(t["run_id"], ""),
        "aliases": " ".join(aliases.get(t["run_id"], [])),
        **P.frequency_of(t),
        "stem_kernel": P.param_of(t, "model.stem_kernel", ""),
        "epochs": P.param_of(t, "train.epochs", ""),
        M.EPOCHS_COMPLETED: P.metric_of(t, M.EPOCHS_COMPLETED),
        M.FILTER_PROPORTION: P.metric_of(t, M.FILTER_PROPORTION),
        M.FILTER_MEAN_ALPHA: P.metric_of(t, M.FILTER_MEAN_ALPHA),
    }
    for key in (M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC, M.TEST_CLEAN_ACC, M.TEST_CORRUPTION_ACC):
        row[key] = P.metric_of(t, key)
        lo, hi = intervals.of(t["run_id"], key) if intervals is not None else (math.nan, math.nan)
        row[f"{key}_ci_low"], row[f"{key}_ci_high"] = lo, hi
    for cat in M.CATEGORIES:
        row[M.category_key("test", cat)] = P.metric_of(t, M.category_key("test", cat))
    row.update(P.trial_gains(t, base))
    row.update(flat_intervals(gain_fields(choice.gains.get(t["run_id"], {}) if gains else {})))
    return row


def excluded_reason(choice: Choice, t: dict[str, Any], ranks: dict[str, int]) -> str:
    """Why a trial (or configuration) row is not in the Pareto sort, "" when it is.

    A replicate is judged by its own run first, then by its configuration: the sort ranks
    configuration records (under their first replicate's run id), so a finished replicate
    with finite objectives counts when its configuration does.
    """
    if reason := P.incomplete_reason(t):
        return reason
    if any(math.isnan(P.metric_of(t, o.metric)) for o in choice.result.objectives):
        return "missing or NaN objective"
    record_of = {m["run_id"]: rid for rid, runs in choice.members.items() for m in runs}
    record = record_of.get(t["run_id"], t["run_id"])
    if record in ranks:
        return ""
    config = next((c for c in choice.configurations if c["run_id"] == record), None)
    why = (P.incomplete_reason(config) if config is not None else None) or "missing or NaN objective"
    return f"configuration: {why}" if len(choice.members.get(record, [])) > 1 else why


def corruption_accuracy(trial: dict[str, Any], split: str) -> dict[str, float]:
    """corruption name -> accuracy (percent, mean over the severities evaluated)."""
    out = {}
    for name in M.ALL_CORRUPTIONS:
        v = P.metric_of(trial, M.corruption_key(split, name))
        if not math.isnan(v):
            out[name] = v
    return out


def pareto_csv_rows(
    choice: Choice, pareto: list[dict[str, Any]], intervals: Intervals | None = None
) -> list[dict[str, Any]]:
    """``pareto.csv``: the Pareto rows with each ``*_ci`` split into ``_ci_low``/``_ci_high``,
    the objectives' and the validation and test accuracies' intervals beside them
    (``<metric>_ci_low``, ...), and lists (aliases, runs) joined by spaces."""
    iv = intervals or Intervals()
    keys = list(
        dict.fromkeys(
            [o.metric for o in choice.result.objectives]
            + [M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC, M.TEST_CLEAN_ACC, M.TEST_CORRUPTION_ACC]
        )
    )
    out = []
    for r in pareto:
        row: dict[str, Any] = {}
        for k, v in flat_intervals(r).items():
            row[k] = " ".join(map(str, v)) if isinstance(v, list) else v
            if k in keys:
                row[f"{k}_ci_low"], row[f"{k}_ci_high"] = iv.of(r["run_id"], k)
        out.append(row)
    return out


def importance_rows(importance: Importance) -> list[dict[str, Any]]:
    """``importance.csv``: objective, parameter, importance (most important first per objective)."""
    return [
        {"objective": objective, "parameter": name, "importance": value}
        for objective, ranked in importance.values.items()
        for name, value in ranked.items()
    ]
