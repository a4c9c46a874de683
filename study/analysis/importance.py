"""Which settings matter: hyperparameter importance over a study's complete trials.

Pure (Optuna and numpy; no MLflow, no Ray). The trials' searched parameters and
objective values go into an in-memory Optuna study (``optuna.create_study`` and
``add_trial(optuna.trial.create_trial(...))``), and ``optuna.importance.get_param_importances``
ranks the parameters for each objective separately (``target = values[i]``).

Distributions are rebuilt from the values the trials logged, since the space file
may not be at hand: a parameter whose every value reads as a finite number is a
``FloatDistribution(min, max)`` (numeric choices too: their order means something;
log scales are not known here, so the scale is linear); anything else (mode names,
booleans) a ``CategoricalDistribution`` of the values seen. A parameter that takes
one value in all trials, or that some trials lack (a conditional parameter they did
not log), is left out, with the reason, so that every trial enters the computation.

Evaluator: fANOVA (``FanovaImportanceEvaluator``, a random forest fitted by
scikit-learn, seeded) when scikit-learn can be imported, else PED-ANOVA
(``PedAnovaImportanceEvaluator``, which needs no scikit-learn). Importances are
Optuna's normalised ones: they sum to 1 per objective. With few trials (fewer than
about 20) the ranks are rough; the report says so.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

FANOVA = "fANOVA (optuna.importance.FanovaImportanceEvaluator)"
PED_ANOVA = "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator)"
ROUGH_BELOW = 20  # trials: below this the report calls the ranks rough


@dataclass(frozen=True)
class Importance:
    """Parameter importances of a set of trials, per objective.

    Attributes:
        objectives: objective names, in order.
        values: objective -> {parameter: importance}, most important first, summing
            to 1; objectives left out (see ``skipped``) are absent.
        n_trials: trials the importances rest on.
        parameters: the parameters assessed.
        left_out: parameter -> why it was not assessed (one value only, missing in
            some trials).
        skipped: objective -> why it has no importances (same value in every trial).
        evaluator: :data:`FANOVA` or :data:`PED_ANOVA`; empty when nothing was computed.
        note: empty, or one sentence saying why nothing was computed.
    """

    objectives: tuple[str, ...]
    values: dict[str, dict[str, float]]
    n_trials: int
    parameters: tuple[str, ...]
    left_out: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    evaluator: str = ""
    note: str = ""


def _number(v: Any) -> float | None:
    """A finite float when ``v`` reads as one (not a bool), else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "none", "null", ""):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _evaluator(seed: int):
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    if importlib.util.find_spec("sklearn") is not None:
        return FanovaImportanceEvaluator(seed=seed), FANOVA
    return PedAnovaImportanceEvaluator(), PED_ANOVA


def param_importances(
    params: Sequence[Mapping[str, Any]],
    values: Sequence[Sequence[float]],
    objectives: Sequence[str],
    parameters: Sequence[str],
    *,
    directions: Sequence[str] | None = None,
    seed: int = 0,
) -> Importance:
    """Importance of ``parameters`` for each objective over the given trials.

    Args:
        params: per trial, its parameter values (as logged: strings are fine).
        values: per trial, its objective values, in ``objectives`` order; trials
            with a non-finite value are dropped.
        objectives: objective names.
        parameters: the parameters to assess (the searched ones).
        directions: ``maximize``/``minimize`` per objective (default maximize); they
            do not change the importances, only the study's bookkeeping.
        seed: of the fANOVA forest (equal inputs and seed: equal importances).

    Returns:
        An :class:`Importance`; with fewer than 2 trials or no parameter that varies,
        its ``note`` says so and ``values`` is empty (no exception).
    """
    objectives = tuple(objectives)
    vals = np.asarray(values, dtype=float).reshape(len(params), len(objectives))
    keep = np.isfinite(vals).all(axis=1)
    trials = [p for p, k in zip(params, keep) if k]
    vals = vals[keep]
    n = len(trials)
    left_out: dict[str, str] = {}
    kinds: dict[str, tuple[str, list[Any]]] = {}
    for name in dict.fromkeys(parameters):
        missing = sum(name not in t for t in trials)
        if missing:
            left_out[name] = f"missing in {missing} of {n} trials"
            continue
        raw = [t[name] for t in trials]
        nums = [_number(v) for v in raw]
        if all(x is not None for x in nums):
            seen = sorted(set(nums))
            kind = ("float", nums)
        else:
            seen = sorted({str(v) for v in raw})
            kind = ("categorical", [str(v) for v in raw])
        if len(seen) < 2:
            left_out[name] = f"one value ({raw[0]}) in every trial" if raw else "no trials"
            continue
        kinds[name] = kind
    assessed = tuple(kinds)
    empty = Importance(objectives, {}, n, assessed, left_out)
    if n < 2:
        return replace(empty, note=f"Importance needs at least 2 complete trials; there are {n}.")
    if not assessed:
        return replace(empty, note="No searched parameter varies across the complete trials.")

    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    distributions = {}
    for name, (kind, column) in kinds.items():
        if kind == "float":
            distributions[name] = FloatDistribution(min(column), max(column))
        else:
            distributions[name] = CategoricalDistribution(sorted(set(column)))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(directions=list(directions or ["maximize"] * len(objectives)))
        for i in range(n):
            study.add_trial(
                optuna.trial.create_trial(
                    params={name: column[i] for name, (_, column) in kinds.items()},
                    distributions=distributions,
                    values=[float(v) for v in vals[i]],
                )
            )
        evaluator, label = _evaluator(seed)
        out: dict[str, dict[str, float]] = {}
        skipped: dict[str, str] = {}
        for j, objective in enumerate(objectives):
            if np.ptp(vals[:, j]) == 0:
                skipped[objective] = "the same value in every trial"
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PED-ANOVA is experimental; fANOVA warns on few trials
                ranked = optuna.importance.get_param_importances(
                    study,
                    evaluator=evaluator,
                    params=list(assessed),
                    target=lambda t, j=j: t.values[j],
                )
            out[objective] = {k: float(v) for k, v in ranked.items()}
    finally:
        optuna.logging.set_verbosity(verbosity)
    return Importance(objectives, out, n, assessed, left_out, skipped, label)
