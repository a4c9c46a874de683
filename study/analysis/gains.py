"""The gain table: every gain of a trial against the study's baseline, defined once.

Pure. A gain is one entry of :data:`GAINS`: the statistic of the statistic table
(:mod:`study.analysis.statistics`) it comes from, its sign (``+1``: candidate minus
baseline; ``-1``: baseline minus candidate, the interval flipped with it), the shift
from the comparison's difference to the reported value (relative mCE is reported as
the ratio itself, the difference + 100), its label, digits, and the MLflow metric
name it is logged under. The selection rows (``pareto --json``), the report's tables
and CSVs, ``results.md`` and the logged ``gain/<split>/...`` metrics all iterate over
it; adding a gain is adding an entry (and its test).

Values are points for accuracies, percent of the baseline's summed error for mCE.
Row fields for split ``test`` are ``<name>``, ``<name>_ci`` (two-element list),
``<name>_p`` (when the gain has a p-value); for ``val`` the same with ``val_``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from study import metrics as M


@dataclass(frozen=True)
class GainSpec:
    """One gain.

    Attributes:
        name: row field and :class:`Difference` name (``robustness_gain``).
        statistic: the statistic it is a difference of (``corruption_acc``).
        sign: ``+1`` candidate minus baseline, ``-1`` baseline minus candidate.
        shift: added to the signed difference and its interval to give the reported value.
        label: column heading, with its unit.
        short: short column heading (the Pareto tables).
        digits: decimals shown.
        signed: shown with an explicit sign (a difference, not a level).
        metric: logged as MLflow metric ``gain/<split>/<metric>`` (+ ``_ci_low`` ...).
        has_p: its p-value is shown and logged.
        from_metrics: ``(model metrics, baseline metrics, split) -> value`` from the runs'
            summary metrics (the point value without per-image outcomes).
    """

    name: str
    statistic: str
    sign: int
    shift: float
    label: str
    short: str
    digits: int
    signed: bool
    metric: str
    has_p: bool
    from_metrics: Callable[[Mapping[str, float], Mapping[str, float], str], float]

    def value(self, d: Any) -> float:
        """The reported value of a gain's :class:`~study.analysis.paired.Difference`."""
        return float(d.diff) + self.shift

    def interval(self, d: Any) -> tuple[float, float]:
        """The reported interval of a gain's difference."""
        return float(d.ci_low) + self.shift, float(d.ci_high) + self.shift


def _difference_of(statistic: str, sign: int):
    def of(model: Mapping[str, float], baseline: Mapping[str, float], split: str) -> float:
        m = model.get(f"{split}/{statistic}", math.nan)
        b = baseline.get(f"{split}/{statistic}", math.nan)
        return sign * (m - b)

    return of


GAINS: list[GainSpec] = [
    GainSpec(
        M.ROBUSTNESS_GAIN,
        "corruption_acc",
        +1,
        0.0,
        "robustness gain (pts)",
        "gain",
        2,
        True,
        "robustness",
        True,
        _difference_of("corruption_acc", +1),
    ),
    GainSpec(
        M.CLEAN_DROP,
        "clean_acc",
        -1,
        0.0,
        "clean drop (pts)",
        "clean drop",
        2,
        True,
        "clean_drop",
        True,
        _difference_of("clean_acc", -1),
    ),
    GainSpec(
        M.RELATIVE_MCE,
        "relative_mce",
        +1,
        100.0,
        "relative mCE (%)",
        "rel. mCE",
        1,
        False,
        "relative_mce",
        False,
        lambda model, base, split: M.relative_mce(model, base, split),
    ),
]

SPLIT_PREFIX = {"test": "", "val": "val_"}  # row-field prefix of each split's gains


def gain_source_statistics() -> list[str]:
    """The statistics the gains need, in table order, without repeats."""
    return list(dict.fromkeys(g.statistic for g in GAINS))


@dataclass(frozen=True)
class Gain:
    """A candidate's gains against a baseline on one split: gain name -> signed
    :class:`~study.analysis.paired.Difference` (``a`` baseline, ``b`` candidate; for a
    gain of sign -1, ``diff = a - b`` and the interval flipped). Attribute access by
    name: ``gain.robustness_gain``."""

    differences: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["differences"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self.differences[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.differences)


def gain_of(by_statistic: Mapping[str, Any]) -> Gain:
    """The gains from a comparison's differences (statistic name -> Difference, B - A)."""
    out = {}
    for g in GAINS:
        d = by_statistic[g.statistic]
        if g.sign < 0:
            d = replace(d, diff=d.a - d.b, ci_low=-d.ci_high, ci_high=-d.ci_low)
        out[g.name] = replace(d, name=g.name)
    return Gain(out)


def gain_fields(gains: Mapping[str, Gain]) -> dict[str, Any]:
    """Row fields of one trial's gains by split (``test``, ``val``): ``<name>_ci`` (a
    two-element list of the reported interval, None without one) and ``<name>_p``."""
    out: dict[str, Any] = {}
    for split, prefix in SPLIT_PREFIX.items():
        g = gains.get(split)
        for spec in GAINS:
            d = None if g is None else g[spec.name]
            out[f"{prefix}{spec.name}_ci"] = (
                None if d is None else [M.finite_or_none(float(v)) for v in spec.interval(d)]
            )
            if spec.has_p:
                out[f"{prefix}{spec.name}_p"] = None if d is None else M.finite_or_none(float(d.p_value))
                out[f"{prefix}{spec.name}_p_adjusted"] = (
                    None if d is None else M.finite_or_none(float(getattr(d, "p_adjusted", math.nan)))
                )
                out[f"{prefix}{spec.name}_family"] = None if d is None else getattr(d, "family", None)
        first = None if g is None else g[GAINS[0].name]
        # What the intervals speak of: "configurations" (R >= 2 per side) or "networks"
        # (a side with one seed: two trained networks, not configurations).
        out[f"{prefix}gain_scope"] = None if first is None else getattr(first, "scope", None)
        out[f"{prefix}gain_seeds"] = None if first is None else list(first.replicates)
        out[f"{prefix}gain_seed_share"] = (
            None if first is None else M.finite_or_none(float(getattr(first, "seed_share", math.nan)))
        )
    return out


def gain_tags(gains: Mapping[str, Gain]) -> dict[str, str]:
    """MLflow tags saying what each split's logged gains speak of: ``gain/<split>/scope`` is
    ``configurations`` or ``networks`` (two trained networks, seed luck not in the interval),
    ``gain/<split>/seeds`` the runs per side (``3v3``)."""
    out = {}
    for split, g in gains.items():
        d = g[GAINS[0].name]
        out[f"{M.GAIN_PREFIX}{split}/scope"] = str(getattr(d, "scope", "networks"))
        out[f"{M.GAIN_PREFIX}{split}/seeds"] = "{}v{}".format(*d.replicates)
    return out


def gain_metrics(gains: Mapping[str, Gain]) -> dict[str, float]:
    """MLflow metrics of one trial's gains, so the runs table sorts by an interval's bound:
    ``gain/<split>/<metric>`` with ``_ci_low``, ``_ci_high`` and (when it has one) ``_p``;
    non-finite values left out."""
    out: dict[str, float] = {}
    for split, g in gains.items():
        for spec in GAINS:
            d = g[spec.name]
            base = f"{M.GAIN_PREFIX}{split}/{spec.metric}"
            out[base] = spec.value(d)
            out[base + "_ci_low"], out[base + "_ci_high"] = spec.interval(d)
            if spec.has_p:
                out[base + "_p"] = d.p_value
                out[base + "_p_adjusted"] = getattr(d, "p_adjusted", math.nan)
    return {k: float(v) for k, v in out.items() if math.isfinite(v)}


def metric_gains(model: Mapping[str, float], baseline: Mapping[str, float] | None) -> dict[str, float]:
    """Point gains from summary metrics: ``<name>`` for test and ``val_<name>`` for val
    (NaN without a baseline)."""
    out = {}
    for split, prefix in SPLIT_PREFIX.items():
        for spec in GAINS:
            out[prefix + spec.name] = (
                math.nan if baseline is None else spec.from_metrics(model, baseline, split)
            )
    return out
