"""The end of a study: what happened to every trial, and the text people read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from study import metrics as M
from study.objectives import Objective
from study.search.spaces import SearchSpace


@dataclass
class StudySummary:
    study: str
    experiment_path: str
    tracking_uri: str | None
    parent_run_id: str | None
    trials: list[dict[str, Any]] = field(
        default_factory=list
    )  # one per Tune trial: id, status, config, metrics
    wall_seconds: float = 0.0
    ray_start_seconds: float = 0.0  # joining or starting Ray (paid once per study)
    setup_seconds: float = 0.0  # before Ray: data and corruption caches, tracking server, parent run
    # Trials whose paired gain against the baseline (with intervals) was logged to MLflow;
    # a string when that could not be done (the reason).
    gains_logged: int | str = 0
    browse: str | None = None  # "browse the runs: <url>" (the MLflow UI's runs view: study.tracking.links)
    # The tracking server was the local store's, started for the study (``freqstudy ui`` browses it).
    local_store: bool = False
    space: SearchSpace | None = None  # the space the study ran (a resumed study's own)

    def count(self, status: str) -> int:
        return sum(1 for t in self.trials if t["status"] == status)

    def best(self, objective: Objective) -> dict[str, Any] | None:
        """The best finished trial with its full training budget, for one objective."""
        pool = [
            t
            for t in self.trials
            if t["status"] == "finished"
            and t.get("full_budget")
            and M.is_finite_number(t["metrics"].get(objective.metric))
        ]
        if not pool:
            return None
        return max(pool, key=lambda t: objective.sign * t["metrics"][objective.metric])


# -- the trial, inside a Ray worker ------------------------------------------------------


def format_summary(summary: StudySummary, space: SearchSpace | None = None) -> str:
    """The end-of-study text: counts, best per objective, where to browse."""
    space = space or summary.space
    assert space is not None, "a summary from run_study carries its space"
    lines = [
        f"study {summary.study}: {len(summary.trials)} trials in {summary.wall_seconds:.0f} s: "
        f"{summary.count('finished')} finished, {summary.count('diverged')} diverged, "
        f"{summary.count('failed')} failed"
    ]
    for o in space.objectives:
        best = summary.best(o)
        if best is None:
            lines.append(f"  best {o.metric} ({o.direction}): no finished trial with its full budget")
            continue
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(best["config"].items())) or "baseline"
        lines.append(
            f"  best {o.metric} ({o.direction}): {best['metrics'][o.metric]:.2f}  "
            f"[{'baseline' if best['baseline'] else params}]  run {best['metrics'].get('run_id', '')}"
        )
    for t in summary.trials:
        if t["status"] == "failed":
            lines.append(f"  failed {t['trial_id']}: {t['error']}")
    lines.append(f"  Tune experiment: {summary.experiment_path}")
    if summary.tracking_uri:
        lines.append(
            f"  MLflow: {summary.tracking_uri} "
            f"(experiment {summary.study!r}, parent run {summary.parent_run_id})"
        )
        if isinstance(summary.gains_logged, int):
            lines.append(
                f"  gains against the baseline, 95% intervals, logged on {summary.gains_logged} trial runs "
                f"(metrics gain/<split>/...); compare two runs: freqstudy compare --study {summary.study} A B"
            )
        else:
            lines.append(f"  gains against the baseline: not logged ({summary.gains_logged})")
        if summary.browse:
            lines.append(f"  {summary.browse}")
        if summary.local_store:
            lines.append("  browse the local store any time with: freqstudy ui")
    return "\n".join(lines)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
