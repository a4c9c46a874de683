"""Search spaces: ``search_spaces/*.yaml`` -> a validated space, an Optuna
define-by-run function and an Optuna sampler.

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

import itertools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import optuna
import yaml

from study.config import TrialConfig, flatten_tree, known_keys

REPO_SPACES = Path(__file__).resolve().parents[1] / "search_spaces"

# Key the define-by-run function adds to every suggested config: True on the baseline.
BASELINE_FLAG = "freqstudy_baseline"
# The baseline point of every study: the plain network, no perturbation.
BASELINE_OVERRIDES: dict[str, Any] = {"frequency.mode": "free", "frequency.perturbation": 0.0,
                                      "frequency.proportion_weight": 0.0}
# Keys `freqstudy run` sets itself for every trial; a space may not set them.
STUDY_OWNED_KEYS = ("tracking.uri", "tracking.experiment", "tracking.run_name")

TOP_LEVEL_KEYS = ("description", "objectives", "sampler", "fixed", "parameters", "baseline",
                  "num_trials", "max_concurrent", "resources")
PARAMETER_TYPES = ("uniform", "loguniform", "int", "choice")
DIRECTIONS = ("maximize", "minimize")
SAMPLER_OPTIONS: dict[str, tuple[str, ...]] = {
    "tpe": ("seed", "multivariate", "group", "n_startup_trials", "constant_liar"),
    "nsga2": ("seed", "population_size", "mutation_prob", "crossover_prob", "swapping_prob"),
    "random": ("seed",),
    "grid": ("seed",),
}
# Validating every combination of bounds/choices catches cross-key errors
# (a cutoff that is empty for one stem kernel); beyond this many, one key at a time.
MAX_COMBINATIONS = 4096


@dataclass(frozen=True)
class Objective:
    metric: str  # a val/ metric key (never test/: no selection on the test set)
    direction: str  # maximize | minimize
    worst: float  # finite value reported for a diverged trial (percent metrics: 0 or 100)

    @property
    def tune_mode(self) -> str:
        return "max" if self.direction == "maximize" else "min"


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
    num_trials: int = 20  # including the baseline
    max_concurrent: int = 2
    cpus: float = 1.0  # per trial
    gpus: float = 0.0  # per trial; fractional values pack several trials per GPU
    description: str = ""

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.tune_mode for o in self.objectives]

    def baseline_flat(self) -> dict[str, Any]:
        """Dotted config values of the baseline trial (before data/tracking keys)."""
        return {**self.fixed, **BASELINE_OVERRIDES, **self.baseline}

    def with_fixed(self, overrides: Mapping[str, Any]) -> "SearchSpace":
        """A copy with more fixed values (``freqstudy run --set``), validated."""
        if not overrides:
            return self
        for key in overrides:
            if key in {p.key for p in self.parameters}:
                raise ValueError(f"--set {key}: the space {self.path} searches this key; it cannot be fixed too")
        fixed = {**self.fixed, **overrides}
        try:
            TrialConfig.from_flat(fixed)
        except ValueError as e:
            raise ValueError(f"--set: {e}") from None
        return SearchSpace(**{**self.__dict__, "fixed": fixed})


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


def resolve_space_path(name: str | Path) -> Path:
    """A path, or a bare name like ``smoke`` looked up in ``search_spaces/``."""
    candidates = [Path(name)]
    if not str(name).endswith((".yaml", ".yml")):
        candidates.append(Path(f"{name}.yaml"))
    for folder in (Path.cwd() / "search_spaces", REPO_SPACES):
        candidates += [folder / c.name for c in candidates[:2]]
    for c in candidates:
        if c.is_file():
            return c
    raise ValueError(f"space {name}: no such file; looked for {', '.join(str(c) for c in candidates)}")


def load_space(name: str | Path) -> SearchSpace:
    """Read and validate a space file; ``ValueError`` names file, line, key and problem."""
    path = resolve_space_path(name)
    text = path.read_text()
    return parse_space(text, source=str(path))


def parse_space(text: str, *, source: str) -> SearchSpace:
    try:
        node = yaml.compose(text)
        tree = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ValueError(f"space {source}{where}: not valid YAML ({problem})") from None
    return _Parser(source, node).parse(tree)


class _Parser:
    """Validation with positions: ``yaml.compose`` gives each key's line."""

    def __init__(self, source: str, node: yaml.Node | None):
        self.source = source
        self.lines: dict[tuple, int] = {}
        if node is not None:
            self._index(node, ())

    def _index(self, node: yaml.Node, path: tuple) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                self.lines[path + (key,)] = k.start_mark.line + 1
                self._index_child(v, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._index(v, path + (i,))

    def _index_child(self, node: yaml.Node, path: tuple) -> None:
        line = self.lines[path]
        self._index(node, path)
        self.lines[path] = line  # a key's line is where the key is written

    def fail(self, path: tuple, problem: str) -> None:
        line = None
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                line = self.lines[path[:n]]
                break
        key = ".".join(str(p) for p in path) if path else "<top level>"
        if len(path) >= 2 and path[0] in ("fixed", "parameters", "baseline"):
            # dotted config keys inside: parameters[frequency.cutoff].high
            key = f"{path[0]}[{path[1]}]" + "".join(f".{p}" for p in path[2:])
        where = f" line {line}" if line else ""
        raise ValueError(f"space {self.source}{where}: {key}: {problem}")

    # -- sections -------------------------------------------------------------------

    def parse(self, tree: Any) -> SearchSpace:
        if not isinstance(tree, dict):
            self.fail((), "the file must be a mapping with objectives, sampler, fixed and parameters")
        for key in tree:
            if key not in TOP_LEVEL_KEYS:
                self.fail((key,), f"unknown section; allowed: {', '.join(TOP_LEVEL_KEYS)}")
        objectives = self._objectives(tree.get("objectives"))
        sampler = self._sampler(tree.get("sampler", {"name": "tpe"}))
        fixed = self._fixed(tree.get("fixed") or {}, "fixed")
        parameters = self._parameters(tree.get("parameters") or {}, fixed)
        baseline = self._fixed(tree.get("baseline") or {}, "baseline")
        for key in baseline:
            if key in BASELINE_OVERRIDES:
                self.fail(("baseline", key), "the baseline is free mode with sigma 0 by definition; set other keys only")
        self._check_configs(fixed, parameters)
        self._check_config(("baseline",), {**fixed, **BASELINE_OVERRIDES, **baseline})
        if sampler.name == "grid":
            for p in parameters:
                if p.when:
                    self.fail(("parameters", p.key, "when"), "the grid sampler does not support conditions")
                if p.type == "loguniform" or (p.type == "uniform" and p.step is None):
                    self.fail(("parameters", p.key), "the grid sampler needs discrete values: use choice, int, or uniform with step")
        num_trials = self._int(tree, "num_trials", 20, minimum=1)
        if sampler.name == "grid":
            size = math.prod(len(p.grid_values()) for p in parameters)
            if num_trials > size + 1:
                self.fail(("num_trials",), f"{num_trials} is more than the baseline + {size} grid points; grid points would repeat")
        max_concurrent = self._int(tree, "max_concurrent", 2, minimum=1)
        cpus, gpus = self._resources(tree.get("resources") or {})
        return SearchSpace(path=self.source, objectives=objectives, sampler=sampler, fixed=fixed,
                           parameters=parameters, baseline=baseline, num_trials=num_trials,
                           max_concurrent=max_concurrent, cpus=cpus, gpus=gpus,
                           description=str(tree.get("description") or ""))

    def _objectives(self, raw: Any) -> tuple[Objective, ...]:
        if not isinstance(raw, list) or not raw:
            self.fail(("objectives",), "a non-empty list of {metric, direction} is required")
        out = []
        for i, item in enumerate(raw):
            path = ("objectives", i)
            if not isinstance(item, dict):
                self.fail(path, "expected {metric: ..., direction: maximize|minimize}")
            for k in item:
                if k not in ("metric", "direction", "worst"):
                    self.fail(path + (k,), "unknown field; allowed: metric, direction, worst")
            metric = item.get("metric")
            if not isinstance(metric, str) or not metric:
                self.fail(path + ("metric",), "a metric key such as val/clean_acc is required")
            if not metric.startswith("val/"):
                self.fail(path + ("metric",), f"{metric!r}: objectives must be val/ metrics (no selection on the test set)")
            direction = item.get("direction", "maximize")
            if direction not in DIRECTIONS:
                self.fail(path + ("direction",), f"{direction!r} is not one of {', '.join(DIRECTIONS)}")
            worst = item.get("worst", 0.0 if direction == "maximize" else 100.0)
            if not _is_number(worst) or not math.isfinite(worst):
                self.fail(path + ("worst",), f"{worst!r} must be a finite number")
            out.append(Objective(metric=metric, direction=direction, worst=float(worst)))
        metrics = [o.metric for o in out]
        if len(set(metrics)) != len(metrics):
            self.fail(("objectives",), f"metrics repeat: {', '.join(metrics)}")
        return tuple(out)

    def _sampler(self, raw: Any) -> SamplerSpec:
        if not isinstance(raw, dict):
            self.fail(("sampler",), "expected {name: tpe|nsga2|random|grid, seed: N, ...}")
        name = raw.get("name", "tpe")
        if name not in SAMPLER_OPTIONS:
            self.fail(("sampler", "name"), f"{name!r} is not one of {', '.join(SAMPLER_OPTIONS)}")
        allowed = SAMPLER_OPTIONS[name]
        for k in raw:
            if k != "name" and k not in allowed:
                self.fail(("sampler", k), f"not an option of the {name} sampler; allowed: {', '.join(allowed)}")
        seed = raw.get("seed", 0)
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            self.fail(("sampler", "seed"), f"{seed!r} must be an integer or null")
        options = tuple((k, v) for k, v in raw.items() if k not in ("name", "seed"))
        for k, v in options:
            if k in ("multivariate", "group", "constant_liar") and not isinstance(v, bool):
                self.fail(("sampler", k), f"{v!r} must be true or false")
            if k in ("n_startup_trials", "population_size") and (not isinstance(v, int) or isinstance(v, bool) or v < 2):
                self.fail(("sampler", k), f"{v!r} must be an integer >= 2")
            if k.endswith("_prob") and (not _is_number(v) or not 0.0 <= v <= 1.0):
                self.fail(("sampler", k), f"{v!r} must be a probability in [0, 1]")
        return SamplerSpec(name=name, seed=seed, options=options)

    def _fixed(self, raw: Any, section: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.fail((section,), "expected a mapping of dotted config keys to values")
        keys = set(known_keys())
        flat: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(value, dict):
                # Nested sections are allowed: {train: {epochs: 2}} == {train.epochs: 2}.
                for sub, v in flatten_tree(value, f"{key}.").items():
                    flat[sub] = v
            else:
                flat[str(key)] = value
        for key in flat:
            if key not in keys:
                self.fail((section, key), f"not a trial-config key; known keys: {', '.join(sorted(keys))}")
            if key in STUDY_OWNED_KEYS:
                self.fail((section, key), "set by freqstudy run for every trial; remove it")
        try:
            TrialConfig.from_flat(flat)
        except ValueError as e:
            bad = _key_of(str(e), flat)
            self.fail((section, bad) if bad else (section,), _strip_config(str(e)))
        return flat

    def _parameters(self, raw: Any, fixed: Mapping[str, Any]) -> tuple[Parameter, ...]:
        if not isinstance(raw, dict):
            self.fail(("parameters",), "expected a mapping of dotted config keys to distributions")
        keys = set(known_keys())
        out: list[Parameter] = []
        for key, spec in raw.items():
            path = ("parameters", key)
            if key not in keys:
                self.fail(path, f"not a trial-config key; known keys: {', '.join(sorted(keys))}")
            if key in STUDY_OWNED_KEYS:
                self.fail(path, "set by freqstudy run for every trial; it cannot be searched")
            if key in fixed:
                self.fail(path, "also set under fixed; a key is either fixed or searched")
            if not isinstance(spec, dict):
                self.fail(path, "expected {type: uniform|loguniform|int|choice, ...}")
            out.append(self._parameter(key, spec, out))
        return tuple(out)

    def _parameter(self, key: str, spec: dict, earlier: list[Parameter]) -> Parameter:
        path = ("parameters", key)
        kind = spec.get("type")
        if kind not in PARAMETER_TYPES:
            self.fail(path + ("type",), f"{kind!r} is not one of {', '.join(PARAMETER_TYPES)}")
        allowed = {"type", "when"} | ({"choices"} if kind == "choice" else {"low", "high", "step"})
        for k in spec:
            if k not in allowed:
                self.fail(path + (k,), f"not a field of a {kind} parameter; allowed: {', '.join(sorted(allowed))}")
        low = high = step = None
        choices: tuple = ()
        if kind == "choice":
            raw = spec.get("choices")
            if not isinstance(raw, list) or not raw:
                self.fail(path + ("choices",), "a non-empty list is required")
            for c in raw:
                if not (c is None or isinstance(c, (bool, int, float, str))):
                    self.fail(path + ("choices",), f"{c!r}: choices must be numbers, strings, booleans or null")
            if len(set(map(repr, raw))) != len(raw):
                self.fail(path + ("choices",), "choices must not repeat")
            choices = tuple(raw)
        else:
            for k in ("low", "high"):
                if not _is_number(spec.get(k)):
                    self.fail(path + (k,), f"{spec.get(k)!r}: a number is required")
            low, high = float(spec["low"]), float(spec["high"])
            step = spec.get("step")
            if kind == "int":
                for k in ("low", "high"):
                    if not float(spec[k]).is_integer():
                        self.fail(path + (k,), f"{spec[k]!r} must be an integer")
                if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 1):
                    self.fail(path + ("step",), f"{step!r} must be an integer >= 1")
            elif step is not None and (not _is_number(step) or step <= 0):
                self.fail(path + ("step",), f"{step!r} must be a positive number")
            if kind == "loguniform" and step is not None:
                self.fail(path + ("step",), "a loguniform parameter takes no step")
            if not low < high:
                self.fail(path + ("high",), f"high {spec['high']!r} must be greater than low {spec['low']!r}")
            if kind == "loguniform" and low <= 0:
                self.fail(path + ("low",), f"{spec['low']!r} must be > 0 for a loguniform parameter")
            if step is not None:
                n = (high - low) / float(step)
                if abs(n - round(n)) > 1e-9:
                    self.fail(path + ("step",), f"(high - low) = {high - low:g} is not a multiple of step {step!r}")
            if kind == "int":
                low, high = int(low), int(high)
            step = None if step is None else (int(step) if kind == "int" else float(step))
        when = self._when(key, spec.get("when"), earlier)
        return Parameter(key=key, type=kind, low=low, high=high, step=step, choices=choices, when=when)

    def _when(self, key: str, raw: Any, earlier: list[Parameter]) -> tuple:
        if raw is None:
            return ()
        path = ("parameters", key, "when")
        if not isinstance(raw, dict) or not raw:
            self.fail(path, "expected {other.key: [allowed values]}")
        by_key = {p.key: p for p in earlier}
        out = []
        for other, values in raw.items():
            if other not in by_key:
                self.fail(path + (other,), "a condition must refer to a parameter declared above this one"
                          + (f"; declared so far: {', '.join(by_key)}" if by_key else "; none is"))
            values = values if isinstance(values, list) else [values]
            ref = by_key[other]
            for v in values:
                if ref.type == "choice" and v not in ref.choices:
                    self.fail(path + (other,), f"{v!r} is not a choice of {other} ({', '.join(map(str, ref.choices))})")
                if ref.type != "choice" and not (_is_number(v) and ref.low <= v <= ref.high):
                    self.fail(path + (other,), f"{v!r} is outside {other}'s range [{ref.low}, {ref.high}]")
            out.append((other, tuple(values)))
        return tuple(out)

    def _check_configs(self, fixed: Mapping[str, Any], parameters: tuple[Parameter, ...]) -> None:
        """Every bound/choice, with the fixed values, must build a valid config."""
        if not parameters:
            self._check_config(("fixed",), dict(fixed))
            return
        values = [p.representative_values() for p in parameters]
        if math.prod(len(v) for v in values) <= MAX_COMBINATIONS:
            for combo in itertools.product(*values):
                point = dict(zip((p.key for p in parameters), combo))
                self._check_config(("parameters",), {**fixed, **point}, point)
        else:
            for p, vals in zip(parameters, values):
                for v in vals:
                    self._check_config(("parameters", p.key), {**fixed, p.key: v}, {p.key: v})

    def _check_config(self, path: tuple, flat: dict[str, Any], point: Mapping[str, Any] | None = None) -> None:
        try:
            TrialConfig.from_flat(flat)
        except ValueError as e:
            bad = _key_of(str(e), point or {})
            at = ("parameters", bad) if bad else path
            context = f" (with {', '.join(f'{k}={v!r}' for k, v in point.items())})" if point else ""
            self.fail(at, _strip_config(str(e)) + context)

    def _int(self, tree: dict, key: str, default: int, *, minimum: int) -> int:
        v = tree.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            self.fail((key,), f"{v!r} must be an integer >= {minimum}")
        return v

    def _resources(self, raw: Any) -> tuple[float, float]:
        if not isinstance(raw, dict):
            self.fail(("resources",), "expected {cpus: N, gpus: G}")
        for k in raw:
            if k not in ("cpus", "gpus"):
                self.fail(("resources", k), "unknown field; allowed: cpus, gpus")
        cpus, gpus = raw.get("cpus", 1), raw.get("gpus", 0)
        if not _is_number(cpus) or cpus <= 0:
            self.fail(("resources", "cpus"), f"{cpus!r} must be a number > 0")
        if not _is_number(gpus) or gpus < 0:
            self.fail(("resources", "gpus"), f"{gpus!r} must be a number >= 0 (fractions share a GPU)")
        return float(cpus), float(gpus)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _key_of(message: str, candidates: Mapping[str, Any]) -> str | None:
    """The dotted key a config error names, when it is one of ``candidates``."""
    if message.startswith("config "):
        key = message[len("config "):].split(":", 1)[0]
        if key in candidates:
            return key
    return None


def _strip_config(message: str) -> str:
    return message[len("config "):] if message.startswith("config ") else message
