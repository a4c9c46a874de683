"""Optuna's side of a space: the define-by-run function and the sampler."""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from study.search.spaces import BASELINE_FLAG, Parameter, SearchSpace


class DefineByRun:
    """The Optuna define-by-run function of a space: suggests, never computes.

    A class rather than a closure because Ray pickles the searcher (with this
    function inside) into the experiment checkpoint that ``--resume`` reads.
    """

    def __init__(self, parameters: tuple[Parameter, ...]):
        self.parameters = parameters

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        if trial.number == 0:
            return {BASELINE_FLAG: True}
        chosen: dict[str, Any] = {}
        for p in self.parameters:
            if not p.is_active(chosen):
                continue
            if p.type == "choice":
                chosen[p.key] = trial.suggest_categorical(p.key, list(p.choices))
            elif p.type == "int":
                chosen[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), step=int(p.step or 1))
            elif p.type == "loguniform":
                chosen[p.key] = trial.suggest_float(p.key, p.low, p.high, log=True)
            else:
                chosen[p.key] = trial.suggest_float(p.key, p.low, p.high, step=p.step)
        return {BASELINE_FLAG: False}


def define_by_run(space: SearchSpace) -> DefineByRun:
    return DefineByRun(space.parameters)


def make_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The Optuna sampler object the space names, seeded."""
    spec = space.sampler
    opts = dict(spec.options)
    if spec.name == "tpe":
        # Conditional spaces need group=True for multivariate TPE to model the branches.
        if opts.get("multivariate") and any(p.when for p in space.parameters):
            opts.setdefault("group", True)
        with warnings.catch_warnings():
            # multivariate/group are "experimental" in Optuna 5 but are what conditional spaces need.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=spec.seed, **opts)
    if spec.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=spec.seed, **opts)
    if spec.name == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.name == "grid":
        return StudyGridSampler({p.key: list(p.grid_values()) for p in space.parameters}, seed=spec.seed)
    raise AssertionError(spec.name)


class StudyGridSampler(optuna.samplers.GridSampler):
    """GridSampler for ask/tell use under Ray Tune.

    Optuna's ``after_trial`` calls ``study.stop()`` once the grid is covered,
    which raises outside ``study.optimize`` and so would stop the last trial's
    values from being recorded. Tune's ``num_samples`` (baseline + grid size)
    ends the study instead.
    """

    def after_trial(self, study, trial, state, values) -> None:
        return None
