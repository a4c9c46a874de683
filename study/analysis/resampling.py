"""The resampling and the tests behind :mod:`study.analysis.paired`: image batches, the
exact McNemar test, the paired sign-flip permutation test, and the two-level (runs, then
images) bootstrap with its percentile interval and p-value.

Pure (numpy and scipy). Scores are per source image, in [0, 1] (correctness) or summed
errors; the statistics built on them are in percent (see :mod:`study.analysis.statistics`).
Why each piece is as it is (percentile intervals, the method-of-moments run level) is
told in :mod:`study.analysis.paired`'s docstring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

DEFAULT_RESAMPLES = 1999
DEFAULT_PERMUTATIONS = 999

# Elements per batch of resampled (batch, n) arrays: scipy's default batch would
# materialise all resamples at once (2,000 x 10,000 float64 = 160 MB per array).
_BATCH_ELEMENTS = 2**21

MCNEMAR = "mcnemar-exact"
SIGN_FLIP = "sign-flip-permutation"
TWO_LEVEL = "two-level-bootstrap"

# Why a relative mCE or its interval is not available (``Difference.note``): the data say
# nothing about a change relative to an error of 0, which is not a number to estimate.
ZERO_BASELINE = "not available: A's summed error is 0 on every image, and a change relative to 0 is undefined"
TOO_FEW_IMAGES = "not available: fewer than 2 images to resample"


def resample_batch(n: int, n_resamples: int) -> int:
    """Resamples per batch for ``n`` images (the batching changes the random
    stream, so this is the one place that decides it)."""
    return max(1, min(n_resamples, _BATCH_ELEMENTS // max(n, 1)))


def mean_diff(d, axis=-1):
    """100 x the mean of per-image differences: a difference of accuracies, points."""
    return np.mean(d, axis=axis) * 100.0


def relative_change(ea, eb):
    """``100 x eb / ea - 100`` elementwise (percent of ``ea``), NaN where ``ea`` is 0.

    ``ea``, ``eb``: mean summed errors (>= 0) of A and B, arrays of one shape or
    broadcastable. A change relative to an error of 0 is undefined (B's error
    is either also 0 or infinitely many times A's), so it is NaN, without
    numpy's divide warnings; callers say why (:data:`ZERO_BASELINE`,
    :func:`undefined_reason`).
    """
    ea, eb = np.broadcast_arrays(np.asarray(ea, dtype=np.float64), np.asarray(eb, dtype=np.float64))
    ratio = np.full(ea.shape, np.nan)
    np.divide(eb, ea, out=ratio, where=ea != 0)
    return ratio * 100.0 - 100.0


def ratio_diff(ea, eb, axis=-1):
    """100 x mean(eb) / mean(ea) - 100: a ratio of summed errors, percent of A's (NaN where
    A's mean is 0: :func:`relative_change`)."""
    # 100 * sum E(B) / sum E(A) - 100: ratio of summed errors, minus A's own 100.
    return relative_change(np.mean(ea, axis=axis), np.mean(eb, axis=axis))


def sign_flip_p(d: np.ndarray, n_permutations: int, seed: int) -> float:
    """Two-sided p of the paired sign-flip permutation test on per-image differences ``d``.

    The same test and p-value convention as ``scipy.stats.permutation_test((d,), sum,
    permutation_type="samples")`` (exact when ``2**n <= n_permutations``, else
    ``(#{|null| >= |observed|} + 1) / (B + 1)`` per side, doubled, capped at 1), written as
    whole-array numpy: scipy's version walks the images in Python, ~50x slower at 10,000
    images, and the study computes these for every trial against its baseline. A test
    checks the two agree exactly where both enumerate.
    """
    nz = np.asarray(d, dtype=np.float64)
    nz = nz[nz != 0]  # flipping a zero changes nothing: same p, fewer images
    n = len(nz)
    if n < 2:
        return 1.0
    observed = nz.sum()
    # scipy's relative tolerance for null values theoretically equal to the observed one.
    gamma = abs(np.finfo(np.float64).eps * 100 * observed)
    if 2**n <= n_permutations:
        # Every sign vector once: the exact null distribution, observed included.
        bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
        null = ((1 - 2 * bits) * nz).sum(axis=1)
        less = float(np.count_nonzero(null <= observed + gamma) / len(null))
        greater = float(np.count_nonzero(null >= observed - gamma) / len(null))
    else:
        rng = np.random.default_rng(seed)
        below = above = 0
        batch = max(1, resample_batch(n, n_permutations))
        done = 0
        while done < n_permutations:
            b = min(batch, n_permutations - done)
            signs = rng.integers(0, 2, size=(b, n), dtype=np.int8) * 2 - 1
            null = signs @ nz
            below += int(np.count_nonzero(null <= observed + gamma))
            above += int(np.count_nonzero(null >= observed - gamma))
            done += b
        less, greater = (below + 1) / (n_permutations + 1), (above + 1) / (n_permutations + 1)
    return float(min(1.0, 2 * min(less, greater)))


def mcnemar_p(xa: np.ndarray, xb: np.ndarray) -> float:
    """Exact McNemar: discordant pairs ``B right, A wrong`` out of all discordant, against 1/2."""
    b_only = int(np.count_nonzero(xb & ~xa))
    a_only = int(np.count_nonzero(xa & ~xb))
    if b_only + a_only == 0:
        return 1.0
    return float(stats.binomtest(b_only, b_only + a_only, 0.5, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class _RunLevel:
    """A group's run level for one statistic.

    ``means``: ``(n,)`` per-image mean score over the group's R runs.
    ``offsets``: ``(R,)`` each run's mean score minus the group's (centred run effects).
    ``scale``: factor on the mean of resampled offsets so that its bootstrap
    variance is the estimated between-run variance of a run's expected score
    divided by R (0 when R = 1 or none is detected); see :func:`_run_level`.
    """

    means: np.ndarray
    offsets: np.ndarray
    scale: float


def _run_level(scores: np.ndarray) -> _RunLevel:
    """Variance components of an ``(R, n)`` group of per-image scores.

    Model: ``score[r, i] = mu_i + a_r + e[r, i]`` (image, run and residual). A
    run's mean over the n images varies between runs by ``tau^2 + s_e^2 / n``
    (``V_b``); the across-run variance of one image's score is ``tau^2 + s_e^2``
    (``W``, averaged over images). So ``tau^2 = (V_b - W / n) / (1 - 1/n)``
    (method of moments, floored at 0). The image level already carries
    ``s_e^2 / (n R)`` (it resamples the per-image means over all R runs), so the
    run level must add only ``tau^2 / R``; resampling the raw offsets would add
    ``(R - 1) / R^2 * V_b``, counting the residual noise again (with R = 3 the
    plain two-level bootstrap's variance is 2.3x too large when tau = 0: 99.5-100%
    coverage for a nominal 95%).
    """
    r, n = scores.shape
    means = scores.mean(axis=0)
    if r < 2:
        return _RunLevel(means, np.zeros(1), 0.0)
    offsets = scores.mean(axis=1) - scores.mean()
    between = float(np.sum(offsets**2) / (r - 1))
    within = float(np.mean(np.sum((scores - means) ** 2, axis=0) / (r - 1)))
    tau2 = max(0.0, (between - within / n) / (1.0 - 1.0 / n)) if n > 1 else 0.0
    # Bootstrap variance of the mean of R offsets drawn with replacement: (R-1)/R * V_b / R.
    scale = math.sqrt(tau2 * r / ((r - 1) * between)) if between > 0 else 0.0
    return _RunLevel(means, offsets, scale)


def two_level(groups: Sequence[np.ndarray], kind: str, n_resamples: int, seed: int) -> np.ndarray:
    """``(n_resamples,)`` two-level bootstrap distribution of one statistic.

    Args:
        groups: per group an ``(R, n)`` array of per-image scores of its R runs,
            the same n source images in every group (one group for ``"level"``,
            two, A then B, otherwise).
        kind: ``"level"`` (100 x the group's mean score), ``"diff"`` (100 x (B - A))
            or ``"ratio"`` (100 x B / A - 100, relative mCE).

    Each resample draws, per group with R > 1, R runs with replacement
    (``rng.integers(0, R, (m, R))``), then n images with replacement shared by the
    groups (``rng.integers(0, n, (m, n))``), batched as :func:`resample_batch`
    says. A group's resampled mean is the mean over the drawn images of its
    per-image means over all its runs, plus the scaled mean of the drawn runs'
    offsets (:func:`_run_level`). A group with R = 1 draws nothing at the run
    level, so with R = 1 everywhere the stream, the resampled images and the
    arithmetic are those of ``scipy.stats.bootstrap`` in :func:`compare_runs`.
    """
    rng = np.random.default_rng(seed)
    levels = [_run_level(g) for g in groups]
    n = len(levels[0].means)
    batch = resample_batch(n, n_resamples)
    diff = levels[1].means - levels[0].means if kind == "diff" else None
    out = []
    for start in range(0, n_resamples, batch):
        m = min(batch, n_resamples - start)
        offsets = []
        for level in levels:
            r = len(level.offsets)
            if r == 1:
                offsets.append(0.0)
            else:
                runs = rng.integers(0, r, (m, r))
                offsets.append(level.scale * level.offsets[runs].mean(axis=1))
        idx = rng.integers(0, n, (m, n))
        if diff is not None:  # kind == "diff"
            out.append(mean_diff(diff[idx]) + 100.0 * (offsets[1] - offsets[0]))
        elif kind == "ratio":
            ea = np.mean(levels[0].means[idx], axis=-1) + offsets[0]
            eb = np.mean(levels[1].means[idx], axis=-1) + offsets[1]
            out.append(relative_change(ea, eb))
        else:
            out.append((np.mean(levels[0].means[idx], axis=-1) + offsets[0]) * 100.0)
    return np.concatenate(out)


def percentile_interval(dist: np.ndarray, confidence: float) -> tuple[float, float]:
    """The two-sided percentile interval of a bootstrap distribution ``dist``.

    A degenerate distribution, every resample the same value ``c`` (constant
    scores: a model right, or wrong, on every image; two identical runs), gives
    the point interval ``(c, c)``: no resample of these images can differ, and
    that is the bootstrap's whole answer at such data (its coverage is then
    only as good as the data are many), not NaN. A distribution with NaN (see
    :func:`undefined_reason`) gives ``(nan, nan)``.
    """
    # As scipy.stats.bootstrap(method="percentile") computes it, so R = 1 groups match compare_runs.
    if np.isnan(dist).any():
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2.0
    lo, hi = stats.quantile(dist, np.asarray([alpha, 1.0 - alpha]))
    return float(lo), float(hi)


def undefined_reason(dist: np.ndarray) -> str:
    """Why ``dist`` has no interval, or ``""``: the resamples where the statistic is undefined.

    Only a relative change has any (:func:`relative_change`: resamples that drew
    only images on which A makes no error, which happens with few images).
    """
    k = int(np.count_nonzero(np.isnan(dist)))
    if k == 0:
        return ""
    return (
        f"no interval: A's summed error is 0 in {k} of {len(dist)} resamples (too few images that A "
        "gets wrong), and a change relative to 0 is undefined"
    )


def bootstrap_p(dist: np.ndarray) -> float:
    """Two-sided percentile-bootstrap p of H0: statistic = 0 (``dist`` centred on the estimate)."""
    if np.isnan(dist).any():
        return math.nan
    k = min(int(np.count_nonzero(dist <= 0)), int(np.count_nonzero(dist >= 0)))
    return min(1.0, 2.0 * (k + 1) / (len(dist) + 1))
