"""A pooled seed variance across a study's configurations, when they share one.

Pure (numpy and scipy only). With R = 2 seeds a configuration's seed variance has 1
df and a t test of two such configurations 2: its 99% quantile is 7, so nothing is
decided at two seeds. The configurations of one study usually share their seed
variance (the same network, data and recipe around a different setting); then the
pooled variance ``s_p^2 = sum d_k s_k^2 / sum d_k`` with ``sum d_k`` df is the
textbook estimate (one-way ANOVA's within mean square), and a comparison at two
seeds has ~K df instead of 2.

Pooling where the variances differ judges a noisy configuration with the others'
smaller variance. So the pooled variance is used only when Bartlett's test (Bartlett
1937; the chi-square approximation with its small-sample correction) does not reject
equal variances at ``level``. Otherwise each configuration gets the larger of its
own and the pooled variance, with its own df (a comparison then has the two sides'
df, as without pooling): a noisy configuration is judged with its own variance, and
a configuration whose 1-df variance came out small is not trusted with it (given
that the test rejected, small sample variances are the likeliest to be small by
chance; with its own variance such a configuration was eliminated falsely on the
harness). The pre-test costs power only where variances visibly differ. (An
empirical-Bayes compromise, limma's moderated variances, Smyth 2004, fits its prior
df from the spread of ``log s_k^2``: with 1-df variances of a handful of
configurations that spread is so noisy that the fitted prior df was often ~1 where
the truth was infinite, and the own near-zero variances then decided with 3 df:
false eliminations on the harness. The gate is the stable choice.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Pooled:
    """The seed variances a study's comparisons use.

    Attributes:
        var: ``(K,)`` each configuration's variance (all ``s_p^2`` when pooled,
            else ``max(s_k^2, s_p^2)``).
        df: ``(K,)`` their df (all ``sum d_k`` when pooled, else ``d_k``).
        pooled: whether equal variances were kept.
        p_value: Bartlett's p-value (1.0 with fewer than 3 configurations: not pooled).
    """

    var: np.ndarray
    df: np.ndarray
    pooled: bool
    p_value: float


def bartlett(var: np.ndarray, df: np.ndarray) -> float:
    """Bartlett's test of equal variances from sample variances and their df (each > 0):
    ``M / C`` against chi-square with K - 1 df (:func:`scipy.stats.bartlett` from the
    summaries instead of the samples)."""
    v = np.asarray(var, dtype=np.float64)
    d = np.asarray(df, dtype=np.float64)
    k, total = len(v), float(d.sum())
    pooled = float(np.sum(d * v) / total)
    if pooled <= 0:
        return 1.0
    # A variance of exactly 0 (tied discrete run means) has log -inf: floor it far below the rest.
    v = np.maximum(v, 1e-6 * pooled)
    m = total * np.log(pooled) - float(np.sum(d * np.log(v)))
    c = 1.0 + (float(np.sum(1.0 / d)) - 1.0 / total) / (3.0 * (k - 1))
    return float(stats.chi2.sf(m / c, k - 1))


def pool(var: np.ndarray, df: np.ndarray, level: float) -> Pooled:
    """Pooled or own seed variances of K configurations (``var``, ``df`` ``(K,)``, df > 0)."""
    v = np.asarray(var, dtype=np.float64)
    d = np.asarray(df, dtype=np.float64)
    if v.shape != d.shape or v.ndim != 1 or np.any(d <= 0):
        raise ValueError(f"pooling: need (K,) variances and df > 0, got {v.shape}, {d}")
    if len(v) < 3:
        return Pooled(v, d, False, 1.0)
    total = float(d.sum())
    s_p = float(np.sum(d * v)) / total
    p = bartlett(v, d)
    if p <= level:
        return Pooled(np.maximum(v, s_p), d, False, p)
    return Pooled(np.full(v.shape, s_p), np.full(v.shape, total), True, p)
