"""Reading a search-space file: one function per section, each error pointing at
the file, the line and the key.

``yaml.compose`` gives every key its line (``Locator``); each section is
checked by its own function; cross-key problems are found by building a
``TrialConfig`` from every combination of bounds and choices (``check_configs``).
A failure raises ``SpaceError``, whose ``key`` and ``line`` are data, not text
to parse.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from study import yamlfiles
from study.config import ConfigError, TrialConfig, flatten_tree, known_keys
from study.objectives import DIRECTIONS, Objective
from study.search.race_scores import racing_problem
from study.search.spaces import (
    BASELINE_OVERRIDES,
    MAX_COMBINATIONS,
    MAX_CONCURRENT,
    MAX_GRID_POINTS,
    MAX_REPLICATES,
    MAX_TRIALS,
    PARAMETER_TYPES,
    REPO_SPACES,
    SAMPLER_OPTIONS,
    STUDY_OWNED_KEYS,
    TOP_LEVEL_KEYS,
    Parameter,
    SamplerSpec,
    SearchSpace,
)


class SpaceError(ValueError):
    """A search-space file that is not allowed.

    Attributes:
        source: the file.
        line: 1-based line of the failing key (None when unknown).
        key: the failing key as written in the file (``parameters[frequency.cutoff].high``).
        problem: what is wrong and what is allowed.
    """

    def __init__(self, source: str, line: int | None, key: str, problem: str) -> None:
        where = f" line {line}" if line else ""
        named = f"{key}: " if key else ""
        super().__init__(f"space {source}{where}: {named}{problem}")
        self.source, self.line, self.key, self.problem = source, line, key, problem


class Locator:
    """Where each key of a YAML document is written, and failing at a key."""

    def __init__(self, source: str, node: yaml.Node | None):
        self.source = source
        self.lines: dict[tuple, int] = {}
        if node is not None:
            self._index(node, ())

    def _index(self, node: yaml.Node, path: tuple) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                child = path + (k.value,)
                self._index(v, child)
                self.lines[child] = k.start_mark.line + 1  # a key's line is where the key is written
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._index(v, path + (i,))

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
        raise SpaceError(self.source, line, key, problem)


def parse_space(text: str, *, source: str) -> SearchSpace:
    """A space file's text -> a validated ``SearchSpace``.

    ``SpaceError`` names file, line, key and problem.
    """
    try:
        node = yamlfiles.compose(text)  # bounded: depth, aliases expanded, keys written twice
        tree = yamlfiles.construct(node)  # resolves merge keys into the nodes the Locator reads
    except yamlfiles.DuplicateKeyError as e:
        raise SpaceError(
            source, e.line, str(e.key), f"written twice (first at line {e.first_line})"
        ) from None
    except yaml.YAMLError as e:
        line, problem = yamlfiles.error_line(e)
        if not isinstance(e, yamlfiles.LimitError):
            problem = f"not valid YAML ({problem})"
        raise SpaceError(source, line, "", problem) from None
    return parse_tree(Locator(source, node), tree)


def parse_tree(at: Locator, tree: Any) -> SearchSpace:
    if not isinstance(tree, dict):
        at.fail((), "the file must be a mapping with objectives, sampler, fixed and parameters")
    for key in tree:
        if key not in TOP_LEVEL_KEYS:
            at.fail((key,), f"unknown section; allowed: {', '.join(TOP_LEVEL_KEYS)}")
    objectives = parse_objectives(at, tree.get("objectives"))
    sampler = parse_sampler(at, tree.get("sampler", {"name": "tpe"}))
    fixed = parse_fixed(at, tree.get("fixed") or {}, "fixed")
    parameters = parse_parameters(at, tree.get("parameters") or {}, fixed)
    baseline = parse_fixed(at, tree.get("baseline") or {}, "baseline")
    for key in baseline:
        if key in BASELINE_OVERRIDES:
            at.fail(
                ("baseline", key), "the baseline is free mode with sigma 0 by definition; set other keys only"
            )
    check_configs(at, fixed, parameters)
    check_config(at, ("baseline",), {**fixed, **BASELINE_OVERRIDES, **baseline})
    if sampler.name == "grid":
        for p in parameters:
            if p.when:
                at.fail(("parameters", p.key, "when"), "the grid sampler does not support conditions")
            if p.type == "loguniform" or (p.type == "uniform" and p.step is None):
                at.fail(
                    ("parameters", p.key),
                    "the grid sampler needs discrete values: use choice, int, or uniform with step",
                )
    points = parse_points(at, tree.get("points") or [], fixed, parameters)
    num_trials = parse_int(at, tree, "num_trials", 20, minimum=1, maximum=MAX_TRIALS)
    if num_trials < 1 + len(points):
        at.fail(
            ("num_trials",),
            f"{num_trials} leaves no room for the baseline and the {len(points)} points; "
            f"allowed >= {1 + len(points)}",
        )
    min_replicates, replicates = parse_replicates(at, tree.get("replicates", 1), objectives)
    if replicates > 1:
        # Replicate i runs at seed base + i: the last one must still be a valid seed.
        searched = next((p for p in parameters if p.key == "seed"), None)
        bases = searched.representative_values() if searched else (fixed.get("seed", 0),)
        for base in bases:
            last = {**fixed, "seed": int(base) + replicates - 1}
            try:
                TrialConfig.from_flat(last)
            except ConfigError as e:
                at.fail(("replicates",), f"{replicates} replicates from seed {base}: {e.problem}")
    if sampler.name == "grid":
        size = 1
        for p in parameters:  # counted, never listed: a step of 1e-12 would list 10**12 values
            size *= p.grid_size()
            if size > MAX_GRID_POINTS:
                at.fail(
                    ("parameters", p.key),
                    f"the grid reaches {size:,} combinations here; the grid sampler lists every one in "
                    f"memory: allowed at most {MAX_GRID_POINTS:,} (a coarser step, or another sampler)",
                )
        if num_trials > size + 1:
            at.fail(
                ("num_trials",),
                f"{num_trials} is more than the baseline + {size} grid points; grid points would repeat",
            )
    max_concurrent = parse_int(at, tree, "max_concurrent", 2, minimum=1, maximum=MAX_CONCURRENT)
    max_seeds = None
    if tree.get("max_seeds") is not None:
        # The baseline alone starts with min seeds: a cap below that runs nothing.
        least = min_replicates or replicates
        max_seeds = parse_int(at, tree, "max_seeds", 0, minimum=least, maximum=MAX_TRIALS * MAX_REPLICATES)
    cpus, gpus = parse_resources(at, tree.get("resources") or {})
    return SearchSpace(
        path=at.source,
        objectives=objectives,
        sampler=sampler,
        fixed=fixed,
        parameters=parameters,
        baseline=baseline,
        points=points,
        num_trials=num_trials,
        replicates=replicates,
        min_replicates=min_replicates if min_replicates is not None and min_replicates < replicates else None,
        max_seeds=max_seeds,
        max_concurrent=max_concurrent,
        cpus=cpus,
        gpus=gpus,
        description=str(tree.get("description") or ""),
    )


def parse_points(
    at: Locator, raw: Any, fixed: Mapping[str, Any], parameters: tuple[Parameter, ...]
) -> tuple[dict[str, Any], ...]:
    """``points:``: explicit configurations, each giving every parameter that is active
    for it (and no other), with values the parameter allows."""
    if not isinstance(raw, list):
        at.fail(("points",), "expected a list of {parameter: value} mappings")
    by_key = {p.key: p for p in parameters}
    out: list[dict[str, Any]] = []
    for i, point in enumerate(raw):
        path = ("points", i)
        if not isinstance(point, dict) or not point:
            at.fail(path, "expected a non-empty mapping of searched parameters to values")
        for key, value in point.items():
            if key not in by_key:
                at.fail(
                    path + (key,), f"not a searched parameter; parameters: {', '.join(by_key) or '(none)'}"
                )
            param = by_key[key]
            if param.type == "choice" and value not in param.choices:
                at.fail(
                    path + (key,),
                    f"{value!r} is not a choice of {key} ({', '.join(map(str, param.choices))})",
                )
            if param.type != "choice" and not (_is_number(value) and param.low <= value <= param.high):
                at.fail(path + (key,), f"{value!r} is outside {key}'s range [{param.low}, {param.high}]")
        chosen: dict[str, Any] = {}
        for param in parameters:  # in declaration order, so conditions see earlier values
            if param.is_active(chosen):
                if param.key not in point:
                    at.fail(path, f"{param.key} is active for this point and must be given")
                chosen[param.key] = point[param.key]
            elif param.key in point:
                at.fail(path + (param.key,), "not active for this point (its `when` condition does not hold)")
        if chosen in out:
            at.fail(path, "repeats an earlier point")
        check_config(at, path, {**fixed, **chosen}, chosen)
        out.append(chosen)
    return tuple(out)


def parse_objectives(at: Locator, raw: Any) -> tuple[Objective, ...]:
    if not isinstance(raw, list) or not raw:
        at.fail(("objectives",), "a non-empty list of {metric, direction} is required")
    out = []
    for i, item in enumerate(raw):
        path = ("objectives", i)
        if not isinstance(item, dict):
            at.fail(path, "expected {metric: ..., direction: maximize|minimize}")
        for k in item:
            if k not in ("metric", "direction", "worst"):
                at.fail(path + (k,), "unknown field; allowed: metric, direction, worst")
        metric = item.get("metric")
        if not isinstance(metric, str) or not metric:
            at.fail(path + ("metric",), "a metric key such as val/clean_acc is required")
        if not metric.startswith("val/"):
            at.fail(
                path + ("metric",),
                f"{metric!r}: objectives must be val/ metrics (no selection on the test set)",
            )
        direction = item.get("direction", "maximize")
        if direction not in DIRECTIONS:
            at.fail(path + ("direction",), f"{direction!r} is not one of {', '.join(DIRECTIONS)}")
        worst = item.get("worst", 0.0 if direction == "maximize" else 100.0)
        if not _is_number(worst) or not math.isfinite(worst):
            at.fail(path + ("worst",), f"{worst!r} must be a finite number")
        out.append(Objective(metric=metric, direction=direction, worst=float(worst)))
    metrics = [o.metric for o in out]
    if len(set(metrics)) != len(metrics):
        at.fail(("objectives",), f"metrics repeat: {', '.join(metrics)}")
    return tuple(out)


def parse_sampler(at: Locator, raw: Any) -> SamplerSpec:
    if not isinstance(raw, dict):
        at.fail(("sampler",), "expected {name: tpe|nsga2|random|grid, seed: N, ...}")
    name = raw.get("name", "tpe")
    if name not in SAMPLER_OPTIONS:
        at.fail(("sampler", "name"), f"{name!r} is not one of {', '.join(SAMPLER_OPTIONS)}")
    allowed = SAMPLER_OPTIONS[name]
    for k in raw:
        if k != "name" and k not in allowed:
            at.fail(("sampler", k), f"not an option of the {name} sampler; allowed: {', '.join(allowed)}")
    seed = raw.get("seed", 0)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        at.fail(("sampler", "seed"), f"{seed!r} must be an integer or null")
    options = tuple((k, v) for k, v in raw.items() if k not in ("name", "seed"))
    for k, v in options:
        if k in ("multivariate", "group", "constant_liar") and not isinstance(v, bool):
            at.fail(("sampler", k), f"{v!r} must be true or false")
        if k in ("n_startup_trials", "population_size") and (
            not isinstance(v, int) or isinstance(v, bool) or v < 2
        ):
            at.fail(("sampler", k), f"{v!r} must be an integer >= 2")
        if k.endswith("_prob") and (not _is_number(v) or not 0.0 <= v <= 1.0):
            at.fail(("sampler", k), f"{v!r} must be a probability in [0, 1]")
    return SamplerSpec(name=name, seed=seed, options=options)


def parse_fixed(at: Locator, raw: Any, section: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        at.fail((section,), "expected a mapping of dotted config keys to values")
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
            at.fail((section, key), f"not a trial-config key; known keys: {', '.join(sorted(keys))}")
        if key in STUDY_OWNED_KEYS:
            at.fail((section, key), "set by freqstudy run for every trial; remove it")
    try:
        TrialConfig.from_flat(flat)
    except ConfigError as e:
        at.fail((section, e.key) if e.key in flat else (section,), e.problem)
    return flat


def parse_parameters(at: Locator, raw: Any, fixed: Mapping[str, Any]) -> tuple[Parameter, ...]:
    if not isinstance(raw, dict):
        at.fail(("parameters",), "expected a mapping of dotted config keys to distributions")
    keys = set(known_keys())
    out: list[Parameter] = []
    for key, spec in raw.items():
        path = ("parameters", key)
        if key not in keys:
            at.fail(path, f"not a trial-config key; known keys: {', '.join(sorted(keys))}")
        if key in STUDY_OWNED_KEYS:
            at.fail(path, "set by freqstudy run for every trial; it cannot be searched")
        if key in fixed:
            at.fail(path, "also set under fixed; a key is either fixed or searched")
        if not isinstance(spec, dict):
            at.fail(path, "expected {type: uniform|loguniform|int|choice, ...}")
        out.append(parse_parameter(at, key, spec, out))
    return tuple(out)


def parse_parameter(at: Locator, key: str, spec: dict, earlier: list[Parameter]) -> Parameter:
    path = ("parameters", key)
    kind = spec.get("type")
    if kind not in PARAMETER_TYPES:
        at.fail(path + ("type",), f"{kind!r} is not one of {', '.join(PARAMETER_TYPES)}")
    allowed = {"type", "when"} | ({"choices"} if kind == "choice" else {"low", "high", "step"})
    for k in spec:
        if k not in allowed:
            at.fail(path + (k,), f"not a field of a {kind} parameter; allowed: {', '.join(sorted(allowed))}")
    low = high = step = None
    choices: tuple = ()
    if kind == "choice":
        raw = spec.get("choices")
        if not isinstance(raw, list) or not raw:
            at.fail(path + ("choices",), "a non-empty list is required")
        for c in raw:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                at.fail(path + ("choices",), f"{c!r}: choices must be numbers, strings, booleans or null")
        if len(set(map(repr, raw))) != len(raw):
            at.fail(path + ("choices",), "choices must not repeat")
        choices = tuple(raw)
    else:
        for k in ("low", "high"):
            if not _is_number(spec.get(k)):
                at.fail(path + (k,), f"{spec.get(k)!r}: a number is required")
        low, high = float(spec["low"]), float(spec["high"])
        step = spec.get("step")
        if kind == "int":
            for k in ("low", "high"):
                if not float(spec[k]).is_integer():
                    at.fail(path + (k,), f"{spec[k]!r} must be an integer")
            if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 1):
                at.fail(path + ("step",), f"{step!r} must be an integer >= 1")
        elif step is not None and (not _is_number(step) or step <= 0):
            at.fail(path + ("step",), f"{step!r} must be a positive number")
        if kind == "loguniform" and step is not None:
            at.fail(path + ("step",), "a loguniform parameter takes no step")
        if not low < high:
            at.fail(path + ("high",), f"high {spec['high']!r} must be greater than low {spec['low']!r}")
        if kind == "loguniform" and low <= 0:
            at.fail(path + ("low",), f"{spec['low']!r} must be > 0 for a loguniform parameter")
        if step is not None:
            n = (high - low) / float(step)
            if abs(n - round(n)) > 1e-9:
                at.fail(path + ("step",), f"(high - low) = {high - low:g} is not a multiple of step {step!r}")
        if kind == "int":
            low, high = int(low), int(high)
        step = None if step is None else (int(step) if kind == "int" else float(step))
    when = parse_when(at, key, spec.get("when"), earlier)
    return Parameter(key=key, type=kind, low=low, high=high, step=step, choices=choices, when=when)


def parse_when(at: Locator, key: str, raw: Any, earlier: list[Parameter]) -> tuple:
    if raw is None:
        return ()
    path = ("parameters", key, "when")
    if not isinstance(raw, dict) or not raw:
        at.fail(path, "expected {other.key: [allowed values]}")
    by_key = {p.key: p for p in earlier}
    out = []
    for other, values in raw.items():
        if other not in by_key:
            at.fail(
                path + (other,),
                "a condition must refer to a parameter declared above this one"
                + (f"; declared so far: {', '.join(by_key)}" if by_key else "; none is"),
            )
        values = values if isinstance(values, list) else [values]
        ref = by_key[other]
        for v in values:
            if ref.type == "choice" and v not in ref.choices:
                at.fail(
                    path + (other,), f"{v!r} is not a choice of {other} ({', '.join(map(str, ref.choices))})"
                )
            if ref.type != "choice" and not (_is_number(v) and ref.low <= v <= ref.high):
                at.fail(path + (other,), f"{v!r} is outside {other}'s range [{ref.low}, {ref.high}]")
        out.append((other, tuple(values)))
    return tuple(out)


def check_configs(at: Locator, fixed: Mapping[str, Any], parameters: tuple[Parameter, ...]) -> None:
    """Every bound/choice, with the fixed values, must build a valid config."""
    if not parameters:
        check_config(at, ("fixed",), dict(fixed))
        return
    values = [p.representative_values() for p in parameters]
    if math.prod(len(v) for v in values) <= MAX_COMBINATIONS:
        for combo in itertools.product(*values):
            point = dict(zip((p.key for p in parameters), combo))
            check_config(at, ("parameters",), {**fixed, **point}, point)
    else:
        for p, vals in zip(parameters, values):
            for v in vals:
                check_config(at, ("parameters", p.key), {**fixed, p.key: v}, {p.key: v})


def check_config(
    at: Locator, path: tuple, flat: dict[str, Any], point: Mapping[str, Any] | None = None
) -> None:
    try:
        TrialConfig.from_flat(flat)
    except ConfigError as e:
        where = ("parameters", e.key) if e.key in (point or {}) else path
        context = f" (with {', '.join(f'{k}={v!r}' for k, v in point.items())})" if point else ""
        at.fail(where, e.problem + context)


def parse_int(at: Locator, tree: dict, key: str, default: int, *, minimum: int, maximum: int) -> int:
    v = tree.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not minimum <= v <= maximum:
        at.fail((key,), f"{v!r} is not allowed; allowed an integer in {minimum}..{maximum}")
    return v


def parse_replicates(at: Locator, raw: Any, objectives: tuple[Objective, ...]) -> tuple[int | None, int]:
    """``replicates: R`` (every configuration runs R seeds) or ``{min: m, max: M}`` (racing:
    m seeds each, up to M while the decision is open); returns ``(m or None, R or M)``."""
    if not isinstance(raw, dict):
        return None, parse_int(at, {"replicates": raw}, "replicates", 1, minimum=1, maximum=MAX_REPLICATES)
    for k in raw:
        if k not in ("min", "max"):
            at.fail(("replicates", k), "unknown field; allowed: min, max")
    for k in ("min", "max"):
        if k not in raw:
            at.fail(("replicates",), f"racing needs both min and max seeds; {k} is missing")
        v = raw[k]
        if not isinstance(v, int) or isinstance(v, bool) or not 2 <= v <= MAX_REPLICATES:
            at.fail(
                ("replicates", k),
                f"{v!r} is not allowed; allowed an integer in 2..{MAX_REPLICATES} "
                "(a seed variance needs two)",
            )
    if raw["min"] > raw["max"]:
        at.fail(("replicates", "max"), f"{raw['max']} is below min {raw['min']}; allowed max >= min")
    if raw["min"] < raw["max"]:
        for i, o in enumerate(objectives):
            problem = racing_problem(o.metric)
            if problem:
                at.fail(("objectives", i, "metric"), problem)
    return raw["min"], raw["max"]


def parse_resources(at: Locator, raw: Any) -> tuple[float, float]:
    if not isinstance(raw, dict):
        at.fail(("resources",), "expected {cpus: N, gpus: G}")
    for k in raw:
        if k not in ("cpus", "gpus"):
            at.fail(("resources", k), "unknown field; allowed: cpus, gpus")
    cpus, gpus = raw.get("cpus", 1), raw.get("gpus", 0)
    if not _is_number(cpus) or cpus <= 0:
        at.fail(("resources", "cpus"), f"{cpus!r} must be a number > 0")
    if not _is_number(gpus) or gpus < 0:
        at.fail(("resources", "gpus"), f"{gpus!r} must be a number >= 0 (fractions share a GPU)")
    return float(cpus), float(gpus)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def resolve_space_path(name: str | Path) -> Path:
    """A path, or a bare name like ``smoke`` looked up in ``search_spaces/``."""
    if Path(name).is_dir():
        raise ValueError(
            f"space {name}: is a directory; give a space file (.yaml) or a name in search_spaces/"
        )
    if Path(name).exists():
        return Path(name)  # a device or FIFO is refused by name when read, not called missing
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
    text = yamlfiles.read_text(path, "space")
    return parse_space(text, source=str(path))
