"""Search spaces: what a ``search_spaces/*.yaml`` file describes, as typed values.

Reading and checking a file is ``study.search.space_parser``; Optuna's
define-by-run function and sampler are ``study.search.samplers``.

A space file names the objectives (validation metrics and their directions),
the sampler, values fixed for every trial, and the parameters Optuna chooses,
each with a distribution and an optional condition on earlier parameters
(``frequency.proportion_weight`` only when ``frequency.mode`` is ``learned``).
Everything is checked before Ray starts: every key must be a trial-config key
(``study.config.known_keys()``), every bound and choice must build a valid
``TrialConfig`` together with the fixed values, and conditions must refer to
parameters declared above them. Errors are one line naming the file, the line,
the key and the problem. The format is documented in ``search_spaces/README.md``.

Trial 0 of every study is the baseline (free mode, sigma = 0, plus the file's
``baseline:`` overrides): the define-by-run function suggests nothing for it
and marks it with ``BASELINE_FLAG``, so the baseline need not be a point of the
space (``proportion.yaml`` fixes ``mode: fixed``) while its objective values
are still told to Optuna.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.config import TrialConfig
from study.objectives import Objective

REPO_SPACES = Path(__file__).resolve().parents[2] / "search_spaces"

# Key the define-by-run function adds to every suggested config: True on the baseline.
BASELINE_FLAG = "freqstudy_baseline"
# The baseline point of every study: the plain network, no perturbation.
BASELINE_OVERRIDES: dict[str, Any] = {
    "frequency.mode": "free",
    "frequency.perturbation": 0.0,
    "frequency.proportion_weight": 0.0,
}
# Keys `freqstudy run` sets itself for every trial; a space may not set them.
STUDY_OWNED_KEYS = ("tracking.uri", "tracking.experiment", "tracking.run_name")
# The `freqstudy run` flag that sets each of them (the run name is each trial's own).
STUDY_OWNED_FLAGS = {"tracking.uri": "--tracking-uri", "tracking.experiment": "--study"}

TOP_LEVEL_KEYS = (
    "description",
    "objectives",
    "sampler",
    "fixed",
    "parameters",
    "baseline",
    "points",
    "num_trials",
    "replicates",
    "max_seeds",
    "max_concurrent",
    "resources",
)
# Upper limits that catch a typo (num_trials: 1000000000000) before Ray queues it.
MAX_TRIALS = 100_000
MAX_REPLICATES = 100
MAX_CONCURRENT = 10_000
PARAMETER_TYPES = ("uniform", "loguniform", "int", "choice")
SAMPLER_OPTIONS: dict[str, tuple[str, ...]] = {
    "tpe": ("seed", "multivariate", "group", "n_startup_trials", "constant_liar"),
    "nsga2": ("seed", "population_size", "mutation_prob", "crossover_prob", "swapping_prob"),
    "random": ("seed",),
    "grid": ("seed",),
}
# Optuna's grid sampler lists (and shuffles) every combination in memory, ~100 bytes each.
MAX_GRID_POINTS = 1_000_000
# Validating every combination of bounds/choices catches cross-key errors
# (a cutoff that is empty for one stem kernel); beyond this many, one key at a time.
MAX_COMBINATIONS = 4096


@dataclass(frozen=True)
class Parameter:
    key: str  # dotted trial-config key
    type: str  # uniform | loguniform | int | choice
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # ((other.key, allowed values), ...), all must hold

    def is_active(self, chosen: Mapping[str, Any]) -> bool:
        """Whether the condition holds for the values suggested so far."""
        return all(k in chosen and chosen[k] in allowed for k, allowed in self.when)

    def representative_values(self) -> tuple[Any, ...]:
        """The values validation builds configs from: the bounds or every choice."""
        return self.choices if self.type == "choice" else (self.low, self.high)

    def grid_size(self) -> int:
        """How many values :meth:`grid_values` holds, counted without listing them."""
        if self.type == "choice":
            return len(self.choices)
        return int(round((self.high - self.low) / self.step)) + 1

    def grid_values(self) -> tuple[Any, ...]:
        """Every value of a discrete parameter (grid sampler)."""
        if self.type == "choice":
            return self.choices
        n = int(round((self.high - self.low) / self.step))
        vals = [self.low + i * self.step for i in range(n + 1)]
        return tuple(int(v) for v in vals) if self.type == "int" else tuple(round(v, 12) for v in vals)


@dataclass(frozen=True)
class SamplerSpec:
    name: str  # tpe | nsga2 | random | grid
    seed: int | None = 0
    options: tuple[tuple[str, Any], ...] = ()  # extra keyword arguments of the Optuna sampler


@dataclass(frozen=True)
class SearchSpace:
    path: str  # the file it came from (logged as an artifact of the study)
    objectives: tuple[Objective, ...]
    sampler: SamplerSpec
    fixed: dict[str, Any] = field(default_factory=dict)  # dotted keys, every trial
    parameters: tuple[Parameter, ...] = ()
    baseline: dict[str, Any] = field(default_factory=dict)  # on top of BASELINE_OVERRIDES
    # Configurations to run first, after the baseline, each a full choice of the searched
    # parameters ({key: value}); the sampler proposes the rest.
    points: tuple[dict[str, Any], ...] = ()
    num_trials: int = 20  # configurations, including the baseline
    replicates: int = 1  # trials per configuration, at seeds seed + 0 .. R-1 (racing: the most, M)
    # Racing (``replicates: {min: m, max: M}``): every configuration starts with m seeds and
    # gets more, up to M = ``replicates``, while its decision is open (study.search.races).
    min_replicates: int | None = None
    max_seeds: int | None = None  # trainings the whole study may start; None: no cap
    max_concurrent: int = 2
    cpus: float = 1.0  # per trial
    gpus: float = 0.0  # per trial; fractional values pack several trials per GPU
    description: str = ""

    @property
    def racing(self) -> bool:
        return self.min_replicates is not None and self.min_replicates < self.replicates

    @property
    def min_seeds(self) -> int:
        """Seeds every configuration starts with (all it gets without racing)."""
        return self.min_replicates if self.racing else self.replicates  # type: ignore[return-value]

    def planned_seeds(self, num_trials: int) -> int:
        """Trainings the study is sure to run: ``num_trials`` x the seeds each starts with,
        within ``max_seeds`` (racing adds seeds as it goes)."""
        least = num_trials * self.min_seeds
        return least if self.max_seeds is None else min(least, self.max_seeds)

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.short for o in self.objectives]

    def baseline_flat(self) -> dict[str, Any]:
        """Dotted config values of the baseline trial (before data/tracking keys)."""
        return {**self.fixed, **BASELINE_OVERRIDES, **self.baseline}

    def with_fixed(self, overrides: Mapping[str, Any]) -> SearchSpace:
        """A copy with more fixed values (``freqstudy run --set``), validated."""
        if not overrides:
            return self
        for key in overrides:
            if key in STUDY_OWNED_KEYS:
                instead = STUDY_OWNED_FLAGS.get(key)
                raise ValueError(
                    f"--set {key}: set by freqstudy run for every trial; "
                    + (f"use {instead} instead" if instead else "it cannot be overridden")
                )
            if key in {p.key for p in self.parameters}:
                raise ValueError(
                    f"--set {key}: the space {self.path} searches this key; it cannot be fixed too"
                )
        fixed = {**self.fixed, **overrides}
        try:
            TrialConfig.from_flat(fixed)
        except ValueError as e:
            raise ValueError(f"--set: {e}") from None
        return SearchSpace(**{**self.__dict__, "fixed": fixed})
