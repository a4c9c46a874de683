"""A study's decisions in one value: its trials sorted, its baseline, its
champion, and the rows the ``pareto`` and ``report`` commands show.

The choosing itself is ``study.selection.choose`` (pure); this module shapes
rows for people and for JSON. Objectives are validation metrics unless
``--objectives`` says otherwise; test metrics are columns, never inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from study import metrics as M
from study.selection import choose as P


@dataclass(frozen=True)
class Choice:
    """Everything ``pareto`` and ``report`` decide about a study."""

    study: str
    parent: dict[str, Any] | None
    trials: list[dict[str, Any]]
    result: P.ParetoResult
    baseline: dict[str, Any] | None
    champion: P.Candidate | None
    max_clean_drop: float | None


def choose(
    study_runs: dict[str, Any], objectives: Sequence[P.Objective], max_clean_drop: float | None
) -> Choice:
    """Sort a loaded study (``queries.load_study``) and pick its champion."""
    study, trials = study_runs["study"], study_runs["trials"]
    if not trials:
        raise ValueError(f"study {study!r} has no trial runs yet")
    P.check_metrics(study, trials, [o.metric for o in objectives])
    result = P.sort_trials(trials, objectives)
    baseline = P.find_baseline(trials)
    champion = P.choose_champion(result, baseline, max_clean_drop)
    return Choice(
        study=study,
        parent=study_runs["parent"],
        trials=trials,
        result=result,
        baseline=baseline,
        champion=champion,
        max_clean_drop=max_clean_drop,
    )


def trial_label(trial: dict[str, Any]) -> str:
    return str(trial["tags"].get(M.TAG_TRIAL_ID) or trial.get("name") or trial["run_id"][:8])


def aliases_of(choice: Choice) -> dict[str, list[str]]:
    """run_id -> registry aliases: ``pareto-1``... by robustness, and ``champion``."""
    out = {c.run_id: [f"pareto-{i}"] for i, c in enumerate(choice.result.front, start=1)}
    if choice.champion is not None:
        out[choice.champion.run_id].append("champion")
    return out


def _clean(v: Any) -> Any:
    """JSON-safe: NaN and inf become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def pareto_rows(choice: Choice) -> list[dict[str, Any]]:
    """One plain dict per Pareto trial, most robust first (the JSON output)."""
    aliases = aliases_of(choice)
    rows = []
    for pos, c in enumerate(choice.result.front, start=1):
        t = c.trial
        row: dict[str, Any] = {
            "run_id": c.run_id,
            "trial": trial_label(t),
            "rank": c.rank,
            "position": pos,
            "aliases": aliases.get(c.run_id, []),
            "champion": choice.champion is not None and choice.champion.run_id == c.run_id,
            "baseline": choice.baseline is not None and choice.baseline["run_id"] == c.run_id,
            **P.frequency_of(t),
            "stem_kernel": P.param_of(t, "model.stem_kernel"),
            M.FILTER_PROPORTION: P.metric_of(t, M.FILTER_PROPORTION),
        }
        row.update(c.objectives)
        for key in (M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC, M.TEST_CLEAN_ACC, M.TEST_CORRUPTION_ACC):
            row.setdefault(key, P.metric_of(t, key))
        row.update(P.trial_gains(t, choice.baseline))
        row["crowding_distance"] = c.crowding
        rows.append({k: _clean(v) for k, v in row.items()})
    return rows
