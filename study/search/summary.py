"""The end of a study: what happened to every trial, and the text people read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from study import metrics as M
from study.objectives import Objective
from study.search.spaces import SearchSpace
from study.search.trials import CONFIG_ID_KEY, REPLICATE_KEY

# Keys the study adds to a suggested config to run its replicates: not settings a person chose.
INTERNAL_KEYS = (REPLICATE_KEY, CONFIG_ID_KEY)


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
    interrupted: bool = False  # stopped by SIGINT (Ctrl+C): Tune saved its state and returned early
    planned: int = 0  # trials the study was to run (configurations x replicates)

    def unaccounted(self) -> int:
        """Trials of the plan that did not end (finished, diverged, stopped or failed): the ones
        running when the study was interrupted and the ones not started."""
        ended = sum(1 for t in self.trials if t["status"] in ("finished", "diverged", "stopped", "failed"))
        return max(self.planned, len(self.trials)) - ended

    # The tracking server was the local store's, started for the study (``freqstudy ui`` browses it).
    local_store: bool = False
    space: SearchSpace | None = None  # the space the study ran (a resumed study's own)

    def count(self, status: str) -> int:
        return sum(1 for t in self.trials if t["status"] == status)

    def configurations(self) -> list[list[dict[str, Any]]]:
        """The trials grouped by configuration (the same suggested settings, replicate index and
        configuration id aside), in the order their first trial appears."""
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for t in self.trials:
            settings = tuple(sorted((k, repr(v)) for k, v in settings_of(t).items()))
            groups.setdefault((t["baseline"], settings), []).append(t)
        return list(groups.values())

    def best(self, objective: Objective) -> tuple[float, list[dict[str, Any]]] | None:
        """The best configuration for one objective, by the mean over its replicates (what the
        searcher is told), and its trials; only configurations whose every replicate finished
        its full training budget with a finite value count (a diverged seed rules it out)."""
        pool = []
        for group in self.configurations():
            values = [t["metrics"].get(objective.metric) for t in group]
            if all(
                t["status"] == "finished" and t.get("full_budget") and M.is_finite_number(v)
                for t, v in zip(group, values, strict=True)
            ):
                pool.append((sum(values) / len(values), group))
        if not pool:
            return None
        return max(pool, key=lambda p: objective.sign * p[0])


def settings_of(trial: dict[str, Any]) -> dict[str, Any]:
    """A trial's suggested settings under their config names, without the study's own keys."""
    return {k: v for k, v in trial["config"].items() if k not in INTERNAL_KEYS}


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
    if summary.interrupted:
        lines.append(
            f"  interrupted: {summary.unaccounted()} of {max(summary.planned, len(summary.trials))} "
            "trials unaccounted for (running or not started); the study's state is saved, and "
            "--resume continues it"
        )
    for o in space.objectives:
        best = summary.best(o)
        if best is None:
            lines.append(f"  best {o.metric} ({o.direction}): no configuration finished its full budget")
            continue
        mean, group = best
        first = group[0]
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(settings_of(first).items())) or "baseline"
        seeds = f" (mean of {len(group)} seeds)" if len(group) > 1 else ""
        runs = ", ".join(str(t["metrics"].get("run_id", "")) for t in group)
        lines.append(
            f"  best {o.metric} ({o.direction}): {mean:.2f}{seeds}  "
            f"[{'baseline' if first['baseline'] else params}]  run{'s' if len(group) > 1 else ''} {runs}"
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
