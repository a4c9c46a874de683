"""Many tests at once: adjusted p-values, p display, and the significant-champion rule.

Pure (numpy and scipy only).

Families (docs/method.md §8):

- ``PRIMARY``: the question a study asks, each configuration's overall robustness
  gain and clean drop against the baseline (2 tests per configuration), Holm's
  step-down adjustment (Holm 1979): family-wise error <= alpha under any
  dependence (they share the baseline).
- ``SECONDARY``: categories and corruptions, Benjamini-Hochberg (1995) false
  discovery rate, ``scipy.stats.false_discovery_control(method="bh")``.

A champion (:func:`significant_champion`) is named only when its validation
gain's interval, Bonferroni-adjusted for the number of candidates the front was
chosen from, lies above 0, and only when every configuration involved has R >= 2
seeds: with one seed a validation interval speaks of networks (seed luck lives in
the network and is shared by validation and test, so the test split cannot
"confirm" it either).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal
from typing import Any

import numpy as np
from scipy import stats

from study.analysis.seedlevel import CONFIGURATIONS, Interval

PRIMARY = "primary (Holm)"
SECONDARY = "secondary (Benjamini-Hochberg)"
FAMILIES = (PRIMARY, SECONDARY)

# Smallest p a table prints as a value; below it, "≤ 0.001".
DISPLAY_RESOLUTION = 0.001


def _as_p(p) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"multiplicity: p-values must be a 1-D sequence, got shape {arr.shape}")
    ok = ~np.isnan(arr)
    if np.any((arr[ok] < 0) | (arr[ok] > 1)):
        raise ValueError("multiplicity: p-values must lie in [0, 1] (NaN for untested)")
    return arr, ok


def holm(p) -> np.ndarray:
    """Holm-adjusted p-values (NaN entries stay NaN and are not counted in the family).

    ``p_adj[(j)] = max_{k <= j} min(1, (m - k + 1) p_(k))`` over the ascending
    order ``p_(1) <= ... <= p_(m)``: rejecting ``p_adj < alpha`` is Holm's
    step-down procedure at level alpha. (scipy has no Holm; this is its textbook form.)
    """
    arr, ok = _as_p(p)
    out = np.full(arr.shape, np.nan)
    vals = arr[ok]
    m = len(vals)
    if m == 0:
        return out
    order = np.argsort(vals, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * vals[order])
    adj = np.empty(m)
    adj[order] = np.maximum.accumulate(stepped)
    out[ok] = adj
    return out


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (``scipy.stats.false_discovery_control``),
    NaN entries left out of the family and returned as NaN."""
    arr, ok = _as_p(p)
    out = np.full(arr.shape, np.nan)
    if ok.any():
        out[ok] = stats.false_discovery_control(arr[ok], method="bh")
    return out


def adjust(p, family: str) -> np.ndarray:
    """Adjusted p-values of one family (:data:`PRIMARY` Holm, :data:`SECONDARY` BH)."""
    if family == PRIMARY:
        return holm(p)
    if family == SECONDARY:
        return benjamini_hochberg(p)
    raise ValueError(f"multiplicity: family must be one of {', '.join(map(repr, FAMILIES))}, got {family!r}")


def format_p(p: float, floor: float = 0.0) -> str:
    """A p-value at its resolution.

    Args:
        p: the p-value (NaN prints ``"n/a"``).
        floor: the smallest p the test can give (``1 / (B + 1)`` for a resampling
            test with B resamples, 0 for an analytic one).

    At or below ``max(floor, 0.001)`` it prints ``"≤ 0.001"`` (or ``"≤ <floor>"``),
    never the floor as if it were the value. Above, 2 significant digits rounded
    down (so a p below 0.05 never prints as 0.05): ``0.049``, ``0.27``, ``1``.
    """
    if p is None or not math.isfinite(p):
        return "n/a"
    resolution = max(float(floor), DISPLAY_RESOLUTION)
    if p <= resolution:
        return f"≤ {resolution:.2g}"
    if p >= 1.0:
        return "1"
    digits = 1 - math.floor(math.log10(p))  # 2 significant digits
    # Decimal of the shortest repr: 0.29 stays 0.29 (float arithmetic would give 0.28).
    return str(Decimal(repr(float(p))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_DOWN))


@dataclass(frozen=True)
class Champion:
    """Outcome of :func:`significant_champion`.

    Attributes:
        crowned: whether the champion is named.
        reason: one line saying why (or why not).
        adjusted_low: the champion's lower bound after adjustment (NaN when refused).
        candidates: K, the configurations it was chosen from.
    """

    crowned: bool
    reason: str
    adjusted_low: float
    candidates: int


def significant_champion(front: Sequence[Interval], champion: int, candidates: int | None = None) -> Champion:
    """Whether ``front[champion]`` (the configuration the selection rule picked from
    the Pareto front) may be named a champion.

    Args:
        front: validation-gain intervals (B - baseline, :class:`Interval` of kind
            ``"diff"``) of every front candidate, the champion among them.
        champion: index of the champion in ``front``.
        candidates: K, the configurations the front was chosen from (default
            ``len(front)``). Pass every configuration that competed: the largest
            gain of all of them is always on the front, so adjusting for the
            front's size alone under-corrects (10 pure-noise configurations at 3
            seeds: ~10% crowned instead of <= 5%, docs/method.md §8).

    The rule: the champion's two-sided interval at ``1 - alpha / K`` (``alpha`` =
    1 - its confidence; Bonferroni over the K candidates, so under pure noise
    P(crowned) <= alpha / 2) must lie above 0. Refused, with a one-line reason,
    when any front interval is not about configurations (R = 1).
    """
    if not front or not 0 <= champion < len(front):
        raise ValueError(f"multiplicity: champion index {champion} outside a front of {len(front)}")
    k = len(front) if candidates is None else int(candidates)
    if k < len(front):
        raise ValueError(f"multiplicity: candidates ({k}) must be at least the front's size ({len(front)})")
    single = [i for i, f in enumerate(front) if f.scope != CONFIGURATIONS]
    if single:
        return Champion(
            False,
            "--significant needs >= 2 seeds per configuration (replicates >= 2): with one seed the "
            "validation gain speaks of two trained networks, not of configurations",
            math.nan,
            k,
        )
    best = front[champion]
    low = best.adjusted_low(k)
    level = 100.0 * (1.0 - (1.0 - best.confidence) / k)
    if low > 0.0:
        return Champion(
            True,
            f"validation gain > 0 at {level:.4g}% (adjusted for {k} candidates); confirm on fresh seeds",
            low,
            k,
        )
    return Champion(
        False,
        f"no champion: the {level:.4g}% lower bound of the validation gain "
        f"(adjusted for {k} candidates) is {low:.2f}, not above 0",
        low,
        k,
    )


# Statistic names (without split) of each family; others (extras, relative mCE) are not adjusted.
PRIMARY_STATISTICS = ("corruption_acc", "clean_acc")
SECONDARY_PREFIXES = ("category/", "corruption/")


def family_of(statistic: str) -> str | None:
    """The family of a statistic of one comparison (``corruption_acc``, ``clean_acc``:
    :data:`PRIMARY`; ``category/*``, ``corruption/*``: :data:`SECONDARY`; else None)."""
    if statistic in PRIMARY_STATISTICS:
        return PRIMARY
    if statistic.startswith(SECONDARY_PREFIXES):
        return SECONDARY
    return None


def adjust_families(items: Sequence[Any], family: Callable[[Any], str | None]) -> list[Any]:
    """Each item (a dataclass with ``p_value``, ``family`` and ``p_adjusted`` fields, e.g.
    :class:`~study.analysis.paired.Difference`) with its family and adjusted p, the
    adjustment taken over all items of the same family (Holm or BH)."""
    out = list(items)
    for fam in FAMILIES:
        idx = [i for i, x in enumerate(out) if family(x) == fam]
        if not idx:
            continue
        adj = adjust([out[i].p_value for i in idx], fam)
        for i, p in zip(idx, adj, strict=True):
            out[i] = replace(out[i], family=fam, p_adjusted=float(p))
    return out
