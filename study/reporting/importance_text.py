"""The "Which settings matter" section's numbers and words: the hyperparameter importance of
each objective over the complete configurations, and what it rests on."""

from __future__ import annotations

from study.analysis.importance import ROUGH_BELOW, Importance, param_importances
from study.selection import choose as P
from study.selection.choice import (
    Choice,
)


def searched_parameters(choice: Choice) -> tuple[list[str], bool]:
    """The study's searched parameters (its parent run's ``study.parameters``), and whether
    they came from there; without it, the parameters whose values differ across the
    complete trials (baseline excluded)."""
    listed = str(((choice.parent or {}).get("params") or {}).get("study.parameters") or "")
    names = [n.strip() for n in listed.split(",") if n.strip()]
    if names:
        return names, True
    trials = _importance_trials(choice)
    keys = dict.fromkeys(k for c in trials for k in c.trial.get("params", {}))
    return [k for k in keys if len({str(c.trial["params"].get(k)) for c in trials}) > 1], False


def _importance_trials(choice: Choice) -> list[P.Candidate]:
    base = choice.baseline["run_id"] if choice.baseline is not None else None
    return [c for c in choice.result.candidates if c.run_id != base]


def study_importance(choice: Choice, *, seed: int = 0) -> Importance:
    """Hyperparameter importance of each objective over the complete trials (configurations),
    the baseline excluded: the sampler did not draw it, and its settings may lie outside the
    space (:func:`study.analysis.importance.param_importances`)."""
    names, _ = searched_parameters(choice)
    trials = _importance_trials(choice)
    objs = choice.result.objectives
    return param_importances(
        [c.trial.get("params", {}) for c in trials],
        [[c.objectives[o.metric] for o in objs] for c in trials],
        [o.metric for o in objs],
        names,
        directions=[o.direction for o in objs],
        seed=seed,
    )


def importance_text(choice: Choice, importance: Importance) -> str:
    """The section's sentences: what the importances rest on, or why there are none."""
    _, from_parent = searched_parameters(choice)
    where = (
        ""
        if from_parent
        else " The study's parent run names no searched parameters (study.parameters): the parameters "
        "assessed are those whose values differ across the trials."
    )
    if importance.note or not importance.values:
        why = importance.note or "Every objective takes the same value in every complete trial."
        return f"{why} No importance is shown.{where}"
    rough = (
        f"; with fewer than ~{ROUGH_BELOW} trials these ranks are rough"
        if importance.n_trials < ROUGH_BELOW
        else ""
    )
    notes = ["the baseline excluded"] if choice.baseline is not None else []
    if any(int(c.trial.get("replicates", 1)) > 1 for c in choice.result.candidates):
        notes.append("a configuration with replicates counts once, at the mean over its seeds")
    text = (
        f"Importance over {importance.n_trials} complete trials"
        f"{' (' + '; '.join(notes) + ')' if notes else ''}, evaluator "
        f"{importance.evaluator}, seeded{rough}. Each objective's importances sum to 1. "
        f"Parameters assessed: {', '.join(importance.parameters)}."
    )
    if importance.left_out:
        text += " Left out: " + "; ".join(f"{k} ({why})" for k, why in importance.left_out.items()) + "."
    if importance.skipped:
        text += " No importance for " + "; ".join(f"{k} ({why})" for k, why in importance.skipped.items())
        text += "."
    return text + where
