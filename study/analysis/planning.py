"""Seeds per configuration for a wanted power, from a study's measured variance components.

Pure (numpy and scipy only). A comparison of a configuration with the baseline at R
seeds each has the configuration-level variance of :mod:`study.analysis.seedlevel`
at equal R,

    V(R) = (1 + rho) s^2 / R + w / n

with ``s^2`` the variance of a run's mean score between seeds (``tau^2 + s_e^2 /
n``: what more seeds reduce) and ``w`` the configuration x image variance of the
per-image difference (what only more images reduce; ``n`` images). ``rho`` is the
configuration's seed variance relative to the baseline's at its accuracy, E points
away: seeds move an accuracy on the logit scale, so by the delta method its variance
scales with ``(p (1 - p))^2`` and ``rho = (p1 (1 - p1) / (p0 (1 - p0)))^2`` with ``p0``
the baseline's mean score and ``p1 = p0 + E / 100`` (1 where the scores are not in
[0, 1], as a summed error). Without it a gain of 9 points at p0 = 0.58 (rho = 0.81)
was planned at 80% and simulated at 85-88%. The test of a difference of E points is
the t test of ``estimate / sqrt(V)`` with the Welch-Satterthwaite df of those terms
(``(R - 1)(1 + rho)^2 / (1 + rho^2)`` for the seed term, ``2R - 2`` at rho = 1;
``n - 1`` for the image term), so its power at two-sided level ``a`` is that of a
noncentral t with noncentrality ``E / sqrt(V)`` (Cohen 1988, ch. 2; the noncentral t
of ``scipy.stats.nct``). The level is the study's family-wise one: the primary family
(each configuration's gain and clean drop against the baseline, Holm) at
``alpha`` planned at its first Holm step, ``alpha / (2 (K - 1))``, which is
conservative for the later steps.

:func:`components` measures ``s^2`` and ``w`` from a study's per-image scores
(pooled over its configurations); :func:`plan` gives the smallest R with the wanted
power, the power that the study's own R bought, and the effect its R detects.

The plan is for the study's own validation images (the run variance is measured on
them, and depends on them: over fresh image sets the same simulated regime's run
variance varied by ~10%), and it is as good as the measured components: ``s^2`` with
``df`` degrees of freedom is known to ~``sqrt(2 / df)`` relative (10% at 180 df),
which moves the power at the recommended seeds by a few points. A single pilot of
20 configurations x 10 seeds whose ``s^2`` came out 27% high (a 2.6 sd draw) is what
planned 80% and simulated 88.5% (tests/unit/test_planning.py now pools 5 pilots on
the same images).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from study.analysis.seedlevel import moments

# Seeds beyond this are not recommended: the answer is then "more images", not seeds.
MAX_PLANNED_SEEDS = 200


@dataclass(frozen=True)
class Components:
    """Measured variance components of one statistic, in points squared.

    Attributes:
        run_var: ``s^2``, between-seed variance of a run's mean score (pooled).
        image_var: ``w``, configuration x image variance of a per-image difference
            (pooled over configurations against the baseline; 0 when not measurable).
        n_images: n.
        df: degrees of freedom behind ``run_var`` (sum of R - 1).
        mean: the baseline's mean score in [0, 1] (None: scores not in [0, 1]; no
            level scaling of the seed variance).
    """

    run_var: float
    image_var: float
    n_images: int
    df: int
    mean: float | None = None


def components(scores: Sequence[np.ndarray], baseline: int = 0) -> Components:
    """Variance components from per-image scores in [0, 1] of a study's configurations.

    Args:
        scores: ``(R_k, n)`` per configuration, the same n images; those with
            R_k < 2 add nothing to ``run_var``.
        baseline: index of the baseline (the image term is measured against it).
    """
    ys = [np.atleast_2d(np.asarray(y, dtype=np.float64)) for y in scores]
    n = ys[0].shape[1]
    if any(y.shape[1] != n for y in ys):
        raise ValueError("planning: every configuration must have scores on the same images")
    multi = [y for y in ys if y.shape[0] >= 2]
    if not multi:
        raise ValueError("planning: a seed variance needs a configuration with >= 2 seeds (replicates >= 2)")
    mom = [moments(y) for y in ys]
    dfs = np.array([y.shape[0] - 1 for y in multi], dtype=np.float64)
    run_var = float(np.sum(dfs * np.array([float(moments(y)["run_var"]) for y in multi])) / dfs.sum())
    base = ys[baseline]
    image = []
    if base.shape[0] >= 2:
        for k, y in enumerate(ys):
            if k == baseline or y.shape[0] < 2:
                continue
            d = mom[k]["image_means"] - mom[baseline]["image_means"]
            s_d = float(d.var(ddof=1))
            image.append(
                s_d - float(mom[k]["mse"]) / y.shape[0] - float(mom[baseline]["mse"]) / base.shape[0]
            )
    w = max(0.0, float(np.mean(image))) if image else 0.0
    bounded = all(float(y.min()) >= 0.0 and float(y.max()) <= 1.0 for y in ys)
    mean = float(base.mean()) if bounded else None
    return Components(1e4 * run_var, 1e4 * w, n, int(dfs.sum()), mean)


def family_level(alpha: float, configurations: int) -> float:
    """Per-test level of the primary family (2 tests per non-baseline configuration)
    at Holm's first step: ``alpha / (2 (K - 1))``."""
    if not 0.0 < alpha < 1.0 or configurations < 2:
        raise ValueError(
            f"planning: need alpha in (0, 1) and >= 2 configurations, got {alpha}, {configurations}"
        )
    return alpha / (2.0 * (configurations - 1))


def level_ratio(c: Components, effect: float) -> float:
    """``rho``: the seed variance of a configuration ``effect`` points from the baseline
    relative to the baseline's (delta method on the logit scale; 1 without a level)."""
    if c.mean is None or not 0.0 < c.mean < 1.0:
        return 1.0
    p1 = min(max(c.mean + effect / 100.0, 1e-3), 1.0 - 1e-3)
    return (p1 * (1.0 - p1) / (c.mean * (1.0 - c.mean))) ** 2


def variance(c: Components, seeds: float, effect: float = 0.0) -> tuple[float, float]:
    """``V(R)`` (points squared) and its Welch-Satterthwaite df at R seeds per side, for a
    configuration ``effect`` points from the baseline."""
    rho = level_ratio(c, effect)
    seed = (1.0 + rho) * c.run_var / seeds
    image = c.image_var / c.n_images
    v = seed + image
    seed_df = (seeds - 1.0) * (1.0 + rho) ** 2 / (1.0 + rho**2)
    denom = seed**2 / seed_df + (image**2 / (c.n_images - 1.0) if image > 0 else 0.0)
    return v, (v**2 / denom if denom > 0 else math.inf)


def power(c: Components, effect: float, seeds: int, level: float) -> float:
    """Power of the two-sided t test at ``level`` to detect ``effect`` points at R seeds per side."""
    if seeds < 2:
        raise ValueError(f"planning: seeds must be >= 2, got {seeds}")
    v, df = variance(c, seeds, effect)
    if v <= 0:
        return 1.0 if effect != 0 else level
    nc = abs(effect) / math.sqrt(v)
    if df > 1e4:  # scipy's noncentral t loses accuracy (NaN) at huge df; it is the normal there
        z = stats.norm.ppf(1.0 - level / 2.0)
        return float(stats.norm.sf(z - nc) + stats.norm.cdf(-z - nc))
    q = stats.t.ppf(1.0 - level / 2.0, df)
    got = float(stats.nct.sf(q, df, nc) + stats.nct.cdf(-q, df, nc))
    # Far in the tails scipy's noncentral t can return NaN; the power is then 0 or 1.
    return got if math.isfinite(got) else float(nc > q)


def seeds_for(c: Components, effect: float, level: float, target: float = 0.8) -> int | None:
    """Smallest R >= 2 with ``power >= target``; None if even :data:`MAX_PLANNED_SEEDS`
    seeds do not reach it (the image term alone is too large: more images are needed)."""
    if power(c, effect, MAX_PLANNED_SEEDS, level) < target:
        return None
    lo, hi = 2, MAX_PLANNED_SEEDS
    while lo < hi:
        mid = (lo + hi) // 2
        if power(c, effect, mid, level) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def detectable_effect(c: Components, seeds: int, level: float, target: float = 0.8) -> float:
    """The effect (points) detected with power ``target`` at R seeds per side."""
    v, _ = variance(c, seeds, 0.0)
    hi = 2.0 * (stats.t.ppf(1.0 - level / 2.0, 2) + 6.0) * math.sqrt(max(v, 1e-12)) + 1.0
    return float(optimize.brentq(lambda e: power(c, e, seeds, level) - target, 1e-9, hi, xtol=1e-6))


@dataclass(frozen=True)
class Plan:
    """Seeds per configuration for one statistic.

    Attributes:
        statistic: its name.
        effect: E, points.
        level: per-test two-sided level.
        recommended: smallest R with the wanted power (None: not reachable with seeds).
        used: R the study used (the smallest over its configurations with >= 2 seeds).
        power_at_used: power for E at ``used`` seeds.
        detectable_at_used: the effect detected with the wanted power at ``used``.
        components: the measured variance components.
    """

    statistic: str
    effect: float
    level: float
    target: float
    recommended: int | None
    used: int
    power_at_used: float
    detectable_at_used: float
    components: Components


def plan(
    statistic: str,
    c: Components,
    effect: float,
    *,
    configurations: int,
    used: int,
    alpha: float = 0.05,
    target: float = 0.8,
) -> Plan:
    """The seeds that give ``target`` power for ``effect`` points at the study's family-wise level."""
    if not effect > 0:
        raise ValueError(f"planning: --effect must be > 0 points, got {effect}")
    if not 0.0 < target < 1.0:
        raise ValueError(f"planning: power must be in (0, 1), got {target}")
    level = family_level(alpha, configurations)
    used = max(2, int(used))
    return Plan(
        statistic,
        float(effect),
        level,
        target,
        seeds_for(c, effect, level, target),
        used,
        power(c, effect, used, level),
        detectable_effect(c, used, level, target),
        c,
    )
