"""Configuration-level intervals: seeds and images as two sources of noise, analytically.

Pure (numpy and scipy only). Inputs are per-image scores of each run, one
``(R, n)`` float array per configuration (R runs = seeds, the same n source images
in every run and every configuration, as :mod:`study.analysis.paired` reduces
outcomes to one score per source image: correctness or a mean of correctness in
[0, 1], or a summed error for relative mCE). Every function also takes stacks
``(..., R, n)`` and works along the last two axes, so a calibration study runs
thousands of comparisons in one call.

The model (a functional ANOVA of a crossed design, no distributional assumption):
``y[r, i] = mu + u(i) + a(r) + e(r, i)`` for a seed ``r`` and an image ``i`` drawn
independently, with uncorrelated image, seed and seed-by-image parts of variances
``s_u^2``, ``tau^2`` and ``s_e^2``. The target of a configuration is ``mu``, its
expected score over seeds and images; of a difference ``mu_B - mu_A`` (images
shared by both configurations, seeds not). With ``m_r`` a run's mean over the n
images (variance ``tau^2 + s_e^2 / n`` between runs, estimated by ``s^2``, R - 1
df), ``d_i`` the per-image difference of the two configurations' means over
their runs and ``MSE`` the two-way residual mean square (``s_e^2``,
``(R - 1)(n - 1)`` df), the variance of the estimate ``mean(m_B) - mean(m_A)`` is

    V = s_A^2 / R_A + s_B^2 / R_B + max(0, S_d^2 - MSE_A / R_A - MSE_B / R_B) / n

where the last term is the image-sampling variance of the configurations'
per-image difference (``S_d^2`` the variance over images of ``d_i`` holds it plus
the seed-by-image noise that ``s^2`` already counts). ``(estimate - target) /
sqrt(V)`` is referred to Student's t with Welch-Satterthwaite degrees of freedom
(Satterthwaite 1946, Welch 1947) of that linear combination of mean squares,
the two seed terms counted as one with the df they have when both
configurations' seed variances are equal (``2R - 2`` for R per side: Welch's
plug-in df makes R = 2 conservative, 97.7%). With no configuration-by-image
effect the image term is ~0 and this is the t-test on run means (unpooled
standard error), exact for normal seed effects and equal variances; with
image noise dominating the run means, ``s^2`` still estimates it, so the
interval needs no guess about which source dominates. The floor at 0 is
conservative (it drops an estimate, never the seed term). The p-value is from
the same t statistic, so ``p < 1 - confidence`` exactly when 0 is outside the
interval.

Ratios (relative mCE, ``100 * mean E_B / mean E_A`` of summed errors) are done
on the log scale by the delta method: each configuration's scores divided by its
grand mean linearise ``log mean E``, the same V applies to them, and the
interval ``exp(log ratio +- t sqrt V)`` is positive by construction.

Single-configuration levels (accuracies) use ``V = max(s^2, MSE / n) / R +
max(0, S_y^2 - MSE / R) / n`` on the logit scale (delta method), so the interval
stays in (0, 100); the floor on ``s^2`` (a run mean carries at least its image
noise) keeps R = 2 calibrated where the image variance of a level is large.

Scopes. With R >= 2 on both sides the claim is about configurations
(``CONFIGURATIONS``). With R = 1 on a side no seed variance can be estimated: the
comparison is conditional on the trained networks (``NETWORKS``: only images
vary, ``V = S_d^2 / n``, df n - 1), or, with ``seed_variance="baseline"``, the
baseline's seed variance is assumed to hold for the single-seed configuration
too (``BORROWED``; calibrated only when that assumption holds).

Share of variance: ``seed_share`` is the estimated between-seed variance of the
expected score (``max(0, s^2 - MSE / n) / R`` summed over sides) over V, the
part that more seeds reduce; the rest (``image_share``) shrinks with more images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

CONFIGURATIONS = "configurations"
NETWORKS = "networks"
BORROWED = "configurations, seed variance from baseline"

DIFF = "diff"
RATIO = "ratio"
SEED_VARIANCES = ("own", "baseline")


@dataclass(frozen=True)
class Interval:
    """An estimate with its t interval and p-value (two-sided, H0: difference 0).

    Attributes:
        estimate: difference B - A in points (percent of A's summed error for a
            ratio: ``100 * ratio - 100``), or a level in percent.
        ci_low, ci_high: interval at ``confidence``; within [-100, 100] for a
            difference of accuracies, > -100 for a ratio, within [0, 100] for a level.
        p_value: from the same t statistic and df (NaN for a level).
        se: standard error on the analysis scale (points; log ratio; logit).
        df: Welch-Satterthwaite degrees of freedom (inf when V = 0).
        replicates: runs per side (``(R,)`` for a level).
        n_images: source images per run.
        seed_share, image_share: shares of V (sum to 1; NaN when V = 0).
        scope: ``CONFIGURATIONS``, ``NETWORKS`` or ``BORROWED``.
        confidence: of the interval.
        kind: ``"diff"``, ``"ratio"`` or ``"level"``.
    """

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    se: float
    df: float
    replicates: tuple[int, ...]
    n_images: int
    seed_share: float
    image_share: float
    scope: str
    confidence: float
    kind: str

    def adjusted_low(self, k: int) -> float:
        """Lower bound of the Bonferroni interval for ``k`` simultaneous ones
        (two-sided at ``1 - (1 - confidence) / k``), on the reported scale."""
        alpha = (1.0 - self.confidence) / max(1, int(k))
        lo, _ = _bounds(self.kind, self._centre(), self.se, self.df, 1.0 - alpha)
        return lo

    def _centre(self) -> float:
        return math.log1p(self.estimate / 100.0) if self.kind == RATIO else self.estimate


def _check(scores: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(scores, dtype=np.float64)
    if y.ndim < 2 or y.shape[-1] < 2 or y.shape[-2] < 1:
        raise ValueError(f"seedlevel: {name} must be (..., R, n) with R >= 1 and n >= 2, got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError(f"seedlevel: {name} holds non-finite scores")
    return y


def moments(y: np.ndarray) -> dict[str, np.ndarray]:
    """Mean squares of a ``(..., R, n)`` crossed seed x image layout.

    Returns ``{"mean": grand mean, "run_var": s^2 (variance of run means, ddof 1;
    NaN for R = 1), "mse": two-way residual mean square (NaN for R = 1),
    "image_means": (..., n) per-image means over runs}``.
    """
    r, n = y.shape[-2:]
    run_means = y.mean(axis=-1)
    image_means = y.mean(axis=-2)
    grand = run_means.mean(axis=-1)
    if r < 2:
        nan = np.full(grand.shape, np.nan)
        return {"mean": grand, "run_var": nan, "mse": nan, "image_means": image_means}
    run_var = run_means.var(axis=-1, ddof=1)
    resid = y - run_means[..., :, None] - image_means[..., None, :] + grand[..., None, None]
    mse = np.sum(resid**2, axis=(-2, -1)) / ((r - 1) * (n - 1))
    return {"mean": grand, "run_var": run_var, "mse": mse, "image_means": image_means}


def _satterthwaite(terms: list[tuple[np.ndarray, float]], v: np.ndarray) -> np.ndarray:
    """df of ``v = sum(c_k MS_k)`` from ``[(c_k MS_k, df_k)]`` (Satterthwaite 1946)."""
    denom = sum(t**2 / d for t, d in terms)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, v**2 / np.where(denom > 0, denom, 1.0), np.inf)


def _tie_fallback(value, df, fallback, fallback_df) -> tuple[np.ndarray, np.ndarray]:
    """A seed term and its df, or, where the runs' means tie exactly (a discrete
    accuracy at R = 2 does, now and then: the seed term is 0), the image noise
    that every run mean carries (``MSE / (R n)``), so a tie never gives a
    zero-width interval and p = 0."""
    tie = value <= 0
    return np.where(tie, fallback, value), np.where(tie, fallback_df, df)


def difference_arrays(
    ya: np.ndarray, yb: np.ndarray, kind: str = DIFF, *, seed_variance: str = "own"
) -> dict[str, Any]:
    """Estimate, variance, df and seed variance of B - A, vectorised over leading axes.

    Args:
        ya, yb: ``(..., R_A, n)`` and ``(..., R_B, n)`` per-image scores, the same
            images in the same order.
        kind: ``"diff"`` (scores in [0, 1]; estimate in points) or ``"ratio"``
            (summed errors; estimate on the log scale, ``log(mean B / mean A)``).
        seed_variance: ``"own"`` (each side's seed variance from its own runs;
            with R = 1 on either side the comparison is about the networks, images
            only) or ``"baseline"`` (R_B = 1 and R_A >= 2: A's seed variance stands
            for B's, :data:`BORROWED`).

    Returns:
        ``{"estimate", "var", "df", "seed_var"}`` arrays of the leading shape
        (``var`` and ``seed_var`` on the estimate's scale, squared), and
        ``"scope"`` (a str).
    """
    ya, yb = _check(ya, "scores of A"), _check(yb, "scores of B")
    if ya.shape[-1] != yb.shape[-1]:
        raise ValueError(f"seedlevel: A has {ya.shape[-1]} images per run, B {yb.shape[-1]}")
    if kind not in (DIFF, RATIO):
        raise ValueError(f"seedlevel: kind must be 'diff' or 'ratio', got {kind!r}")
    if seed_variance not in SEED_VARIANCES:
        raise ValueError(f"seedlevel: seed_variance must be 'own' or 'baseline', got {seed_variance!r}")
    ra, rb, n = ya.shape[-2], yb.shape[-2], ya.shape[-1]
    if kind == RATIO:
        ga, gb = ya.mean(axis=(-2, -1)), yb.mean(axis=(-2, -1))
        if np.any(ga <= 0) or np.any(gb <= 0):
            raise ValueError("seedlevel: a ratio needs positive mean summed errors on both sides")
        estimate = np.log(gb) - np.log(ga)
        # Delta method: log(mean E) ~ log(g) + (mean E - g) / g, so the variance of a log
        # mean is that of the mean of E / g.
        ya, yb = ya / ga[..., None, None], yb / gb[..., None, None]
        scale = 1.0
    else:
        scale = 100.0
    ma, mb = moments(ya), moments(yb)
    if kind == DIFF:
        estimate = scale * (mb["mean"] - ma["mean"])
    d = mb["image_means"] - ma["image_means"]
    s_d = d.var(axis=-1, ddof=1)
    if seed_variance == "baseline":
        if ra < 2 or rb != 1:
            raise ValueError(
                f"seedlevel: seed_variance='baseline' needs >= 2 baseline runs and 1 candidate run, "
                f"got {ra} and {rb}"
            )
        c = 1.0 / ra + 1.0 / rb
        seed_terms = [_tie_fallback(c * ma["run_var"], ra - 1.0, c * ma["mse"] / n, (ra - 1.0) * (n - 1.0))]
        image = s_d - c * ma["mse"]
        image_terms = [(s_d / n, n - 1.0), (-c * ma["mse"] / n, (ra - 1.0) * (n - 1.0))]
        seed_var = c * np.maximum(0.0, ma["run_var"] - ma["mse"] / n)
        scope = BORROWED
    elif ra < 2 or rb < 2:
        seed_terms, image, image_terms = [], s_d, [(s_d / n, n - 1.0)]
        seed_var = np.zeros_like(s_d)
        scope = NETWORKS
    else:
        res = difference_from_moments(ma, mb, ra, rb, n, s_d)
        return {
            "estimate": np.asarray(estimate, dtype=np.float64),
            "var": scale**2 * res["var"],
            "df": res["df"],
            "seed_var": scale**2 * res["seed_var"],
            "scope": CONFIGURATIONS,
        }
    active = image > 0 if scope != NETWORKS else np.ones_like(image, dtype=bool)
    v = sum(t for t, _ in seed_terms) + np.where(active, image / n, 0.0) if seed_terms else image / n
    terms = list(seed_terms) + [(np.where(active, t, 0.0), dfk) for t, dfk in image_terms]
    df = _satterthwaite(terms, v)
    return {
        "estimate": np.asarray(estimate, dtype=np.float64),
        "var": scale**2 * v,
        "df": df,
        "seed_var": scale**2 * seed_var,
        "scope": scope,
    }


def difference_from_moments(
    ma: dict, mb: dict, ra, rb, n: int, s_d, *, seed_df=None
) -> dict[str, np.ndarray]:
    """Variance, df and seed variance of ``mean(m_B) - mean(m_A)`` (R >= 2 on both sides)
    from each side's :func:`moments` and ``S_d^2``, the variance over images of the
    difference of the two sides' per-image means; on the scores' scale (squared).

    The one definition of the configuration-level V and its df: :func:`difference_arrays`
    calls it, and so does the racer (:mod:`study.search.racing`), which keeps per-seed
    summaries instead of score arrays and so passes ``ra``, ``rb`` as arrays (any
    broadcastable shape, each >= 2). ``seed_df`` (broadcastable): the seed term's df
    when the caller knows more than the two sides' runs (the racer's moderated seed
    variances, :mod:`study.analysis.moderation`); default the equal-variance df below.
    """
    ra, rb = np.asarray(ra, dtype=np.float64), np.asarray(rb, dtype=np.float64)
    # One seed term, its df as if both seed variances were equal (2R - 2 for R per side;
    # Satterthwaite of 1/R_A + 1/R_B otherwise): Welch's plug-in df is conservative at
    # R = 2 (97.7% for a nominal 95%) because a ratio of two 1-df variances is so noisy.
    # Equal-R t is robust to unequal seed variances: at R = 2 with a 4x variance ratio
    # 94.0% in normal theory, 93.2% simulated (docs/method.md §8).
    df_seed = (1.0 / ra + 1.0 / rb) ** 2 / (1.0 / (ra**2 * (ra - 1.0)) + 1.0 / (rb**2 * (rb - 1.0)))
    if seed_df is not None:
        df_seed = np.asarray(seed_df, dtype=np.float64)
    seed_terms = [
        _tie_fallback(
            ma["run_var"] / ra + mb["run_var"] / rb,
            df_seed,
            (ma["mse"] / ra + mb["mse"] / rb) / n,
            (np.minimum(ra, rb) - 1.0) * (n - 1.0),
        )
    ]
    image = s_d - ma["mse"] / ra - mb["mse"] / rb
    image_terms = [
        (s_d / n, n - 1.0),
        (-ma["mse"] / (ra * n), (ra - 1.0) * (n - 1.0)),
        (-mb["mse"] / (rb * n), (rb - 1.0) * (n - 1.0)),
    ]
    seed_var = np.maximum(0.0, ma["run_var"] - ma["mse"] / n) / ra
    seed_var = seed_var + np.maximum(0.0, mb["run_var"] - mb["mse"] / n) / rb
    active = image > 0
    v = seed_terms[0][0] + np.where(active, image / n, 0.0)
    terms = list(seed_terms) + [(np.where(active, t, 0.0), dfk) for t, dfk in image_terms]
    return {"var": v, "df": _satterthwaite(terms, v), "seed_var": seed_var}


def level_arrays(y: np.ndarray) -> dict[str, np.ndarray]:
    """Mean score, its variance and df of one configuration (``(..., R, n)`` scores
    in [0, 1]), in points; R = 1 gives the image-only variance of that network."""
    y = _check(y, "scores")
    r, n = y.shape[-2:]
    m = moments(y)
    s_y = m["image_means"].var(axis=-1, ddof=1)
    if r < 2:
        v, df, seed_var = s_y / n, np.full(s_y.shape, n - 1.0), np.zeros_like(s_y)
    else:
        image = s_y - m["mse"] / r
        active = image > 0
        # A run mean carries at least its image noise (E[s^2] = tau^2 + s_e^2 / n), and MSE
        # estimates that with (R - 1)(n - 1) df: s^2 below MSE / n is known to be low. With
        # the plain s^2 (1 df at R = 2) the level interval covered 91-92% at R = 2; with this
        # floor 94-97% (tests/unit/test_calibration.py).
        low = m["run_var"] <= m["mse"] / n
        seed = (
            np.where(low, m["mse"] / n, m["run_var"]) / r,
            np.where(low, (r - 1.0) * (n - 1.0), r - 1.0),
        )
        v = seed[0] + np.where(active, image / n, 0.0)
        terms = [
            seed,
            (np.where(active, s_y / n, 0.0), n - 1.0),
            (np.where(active, -m["mse"] / (r * n), 0.0), (r - 1.0) * (n - 1.0)),
        ]
        df = _satterthwaite(terms, v)
        seed_var = np.maximum(0.0, m["run_var"] - m["mse"] / n) / r
    return {"estimate": 100.0 * m["mean"], "var": 1e4 * v, "df": df, "seed_var": 1e4 * seed_var}


def _quantile(confidence: float, df: float) -> float:
    return (
        float(stats.t.ppf(0.5 + confidence / 2.0, df))
        if math.isfinite(df)
        else float(stats.norm.ppf(0.5 + confidence / 2.0))
    )


def _bounds(kind: str, centre: float, se: float, df: float, confidence: float) -> tuple[float, float]:
    """Interval on the reported scale from a centre and se on the analysis scale."""
    if not (math.isfinite(centre) and math.isfinite(se)):
        return math.nan, math.nan
    q = _quantile(confidence, df) * se
    if kind == RATIO:
        return 100.0 * math.expm1(centre - q), 100.0 * math.expm1(centre + q)
    if kind == "level":
        lo, hi = special.expit(centre - q), special.expit(centre + q)
        return 100.0 * float(lo), 100.0 * float(hi)
    return max(-100.0, centre - q), min(100.0, centre + q)


def _same_runs(ya: np.ndarray, yb: np.ndarray) -> bool:
    # The same runs on both sides (in any order): a configuration against itself.
    return ya.shape == yb.shape and sorted(r.tobytes() for r in ya) == sorted(r.tobytes() for r in yb)


def configuration_difference(
    ya: np.ndarray,
    yb: np.ndarray,
    kind: str = DIFF,
    *,
    confidence: float = 0.95,
    seed_variance: str = "own",
) -> Interval:
    """Difference B - A of two configurations from their ``(R, n)`` per-image scores.

    Args:
        ya, yb: ``(R_A, n)``, ``(R_B, n)`` scores (a ``(n,)`` vector counts as R = 1).
        kind: ``"diff"`` (accuracy scores in [0, 1], estimate in points) or
            ``"ratio"`` (summed errors; estimate ``100 * mean B / mean A - 100``).
        confidence: of the two-sided interval, in (0, 1).
        seed_variance: as :func:`difference_arrays`.

    Returns:
        :class:`Interval`. The same runs on both sides give estimate 0, a
        zero-width interval and p = 1.

    Raises:
        ValueError: one line naming the bad argument.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"seedlevel: confidence must be in (0, 1), got {confidence}")
    ya, yb = np.atleast_2d(np.asarray(ya, dtype=np.float64)), np.atleast_2d(np.asarray(yb, dtype=np.float64))
    if ya.ndim != 2 or yb.ndim != 2:
        raise ValueError(f"seedlevel: scores must be (R, n), got {ya.shape} and {yb.shape}")
    res = difference_arrays(ya, yb, kind, seed_variance=seed_variance)
    reps, n = (ya.shape[0], yb.shape[0]), ya.shape[1]
    if _same_runs(ya, yb):
        return Interval(
            0.0, 0.0, 0.0, 1.0, 0.0, math.inf, reps, n, math.nan, math.nan, res["scope"], confidence, kind
        )
    centre, v, df = float(res["estimate"]), float(res["var"]), float(res["df"])
    se = math.sqrt(max(v, 0.0))
    estimate = 100.0 * math.expm1(centre) if kind == RATIO else centre
    if se == 0.0:
        p = 1.0 if centre == 0.0 else 0.0
        return Interval(
            estimate,
            estimate,
            estimate,
            p,
            0.0,
            math.inf,
            reps,
            n,
            math.nan,
            math.nan,
            res["scope"],
            confidence,
            kind,
        )
    lo, hi = _bounds(kind, centre, se, df, confidence)
    p = float(2.0 * stats.t.sf(abs(centre) / se, df))
    seed = min(1.0, float(res["seed_var"]) / v)
    return Interval(estimate, lo, hi, p, se, df, reps, n, seed, 1.0 - seed, res["scope"], confidence, kind)


def configuration_level(y: np.ndarray, *, confidence: float = 0.95) -> Interval:
    """A configuration's mean accuracy (percent) from ``(R, n)`` scores in [0, 1].

    The interval is the t interval on the logit scale (delta method), so it lies
    in [0, 100]; a mean of exactly 0 or 100 gives a zero-width interval. With R = 1
    the scope is that network (images only). ``p_value`` is NaN (no null).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"seedlevel: confidence must be in (0, 1), got {confidence}")
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if y.ndim != 2 or y.min(initial=0.0) < 0.0 or y.max(initial=0.0) > 1.0:
        raise ValueError("seedlevel: level scores must be an (R, n) array in [0, 1]")
    res = level_arrays(y)
    r, n = y.shape
    mean, v, df = float(res["estimate"]), float(res["var"]), float(res["df"])
    scope = CONFIGURATIONS if r >= 2 else NETWORKS
    p = mean / 100.0
    if v <= 0.0 or p <= 0.0 or p >= 1.0:
        return Interval(
            mean, mean, mean, math.nan, 0.0, math.inf, (r,), n, math.nan, math.nan, scope, confidence, "level"
        )
    se = math.sqrt(v) / 100.0 / (p * (1.0 - p))  # logit scale
    lo, hi = _bounds("level", float(special.logit(p)), se, df, confidence)
    seed = min(1.0, float(res["seed_var"]) / v)
    return Interval(mean, lo, hi, math.nan, se, df, (r,), n, seed, 1.0 - seed, scope, confidence, "level")
