"""Paired comparisons of runs evaluated on the same images, with intervals and p-values.

Pure (numpy and scipy only). Inputs are :class:`~study.analysis.outcomes.Outcomes`
(per-image correctness); every accuracy is in percent, every difference ``B - A``
in points.

What is resampled, and why. The unit of sampling is the SOURCE IMAGE: a test set
is a sample of images, and an image's clean and corrupted versions are not
independent draws (a hard image is hard under every corruption, for both models).
So every statistic is first reduced to one score per source image, e.g. for
``corruption_acc`` the image's mean correctness over the 15 benchmark
corruptions x evaluated severities. The statistic is then 100 x the mean of the
per-image scores (for equal-sized keys this equals the mean of the per-key
accuracies, what :func:`study.metrics.summarize` reports), and resampling images
with replacement resamples an image together with all its corrupted versions and
with the other model's outcomes on it: a paired, joint bootstrap. Each statistic
uses the images it is defined on: all ``N`` for ``clean_acc``, the first ``L``
(``eval.corruption_limit``) for anything corrupted (``Difference.n_images``).

Statistics of a split (names without the split prefix):

- ``clean_acc``; ``corruption_acc`` (15 benchmark corruptions x severities);
  ``extra_acc`` (the 4 extras); ``category/<cat>`` (benchmark corruptions of the
  category); ``corruption/<name>`` (one corruption, mean over severities); and,
  on request, ``corruption/<name>/<severity>``.
- ``relative_mce`` = 100 * sum_c E_c(B) / sum_c E_c(A) over benchmark corruptions
  (``E_c`` the error of ``c`` averaged over severities, as
  :func:`study.metrics.relative_mce`). Reported as ``a = 100`` (A against itself),
  ``b`` = the ratio, ``diff = b - 100`` in percent of A's summed error; per image
  the score is the image's summed error ``e_i = sum_c mean_s (1 - x_{c,s,i})``, and
  the ratio 100 * mean(e(B)) / mean(e(A)) is bootstrapped as a paired statistic
  of both arrays.

Intervals (:func:`compare_runs`): percentile intervals of ``scipy.stats.bootstrap``
over images (``paired`` for the ratio), seeded with ``np.random.default_rng(seed)``
for each statistic, so equal inputs and seed give equal intervals and every
statistic of an image set sees the same resampled images. Percentile rather
than BCa: at these sample sizes (hundreds to 10,000 images, a mean of bounded
scores) it is calibrated (see tests/unit/test_paired.py: 95% intervals cover the
true difference in 93-97% of simulated comparisons), it needs no jackknife (BCa's
is O(n^2) for n = 10,000), and it stays finite on degenerate data (two identical
runs: BCa is NaN).

p-values (two-sided, H0: no difference):

- single-key accuracies (``clean_acc``, ``corruption/<name>/<severity>``): exact
  McNemar test, ``scipy.stats.binomtest`` of the discordant pairs against 1/2;
- averaged statistics and ``relative_mce``: paired sign-flip permutation test,
  test of the per-image score differences (for ``relative_mce`` of summed errors,
  H0: ratio 100): ``scipy.stats.permutation_test(permutation_type="samples")``'s
  test and p-value convention, in whole-array numpy (:func:`sign_flip_p`; scipy's
  loop over images was ~50x slower at 10,000 images). Images whose difference is
  0 are left out: a sign flip leaves them at 0, so the p-value is the same.

Replicated configurations (:func:`compare_groups`, :func:`group_summary`): a group
is R >= 1 runs (seeds) of one configuration on the same images; the point value
is the mean over replicates. Intervals come from a two-level bootstrap written
here in numpy (scipy has no hierarchical bootstrap): each resample draws R runs
with replacement within each group, then images with replacement, the images
shared by both groups because they are paired by image. Runs and images are
crossed (every run sees every image), so resampling both naively counts each
run's per-image noise twice (once in the per-image means, once in the run
means): with 3 seeds and no real seed effect its intervals were 1.5x too wide
(99.5-100% coverage for a nominal 95%). So the image level resamples the per-image
means over ALL the group's runs, and the run level adds the drawn runs' centred
mean scores scaled to the between-run variance that the per-image noise does not
explain (method of moments, :func:`_run_level`); a group without such excess
variance (or with R = 1) resamples images only. The target is the expected
accuracy over images and seeds; with R = 1 a seed effect is invisible, and with
R = 3 and a large seed effect (5 points) coverage drops to ~88% (R = 5: ~93%).
The p-value is the two-sided percentile-bootstrap one
(``2 * (min(#{D* <= 0}, #{D* >= 0}) + 1)`` over ``B + 1``, capped at 1): the
smallest alpha at which the percentile interval excludes 0. With R = 1 in both
groups the interval equals :func:`compare_runs`'s (same resampled images for the
same seed, same arithmetic).

Cost (n = 10,000 images, 19 corruptions x 5 severities, 2 cores): a full
:func:`compare_runs` ~30 s, almost all in the permutation tests (scipy loops over
images in Python); its bootstraps, :func:`gain_interval`, :func:`compare_groups`
and :func:`group_summary` ~2-3 s.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from study.analysis.outcomes import Outcomes, check_comparable, clean_key, parse_key
from study.metrics import (
    BENCHMARK_CORRUPTIONS,
    CATEGORIES,
    CLEAN_DROP,
    EXTRA_CORRUPTIONS,
    RELATIVE_MCE,
    ROBUSTNESS_GAIN,
)

DEFAULT_RESAMPLES = 1999
DEFAULT_PERMUTATIONS = 999

# Elements per batch of resampled (batch, n) arrays: scipy's default batch would
# materialise all resamples at once (2,000 x 10,000 float64 = 160 MB per array).
_BATCH_ELEMENTS = 2**21

MCNEMAR = "mcnemar-exact"
SIGN_FLIP = "sign-flip-permutation"
TWO_LEVEL = "two-level-bootstrap"


def resample_batch(n: int, n_resamples: int) -> int:
    """Resamples per batch for ``n`` images (the batching changes the random
    stream, so this is the one place that decides it)."""
    return max(1, min(n_resamples, _BATCH_ELEMENTS // max(n, 1)))


@dataclass(frozen=True)
class Difference:
    """One paired comparison ``B - A`` of a statistic.

    Attributes:
        name: statistic (``clean_acc``, ``corruption_acc``, ``category/noise``,
            ``corruption/fog``, ``relative_mce``, ...), without the split prefix.
        a, b: point values, percent (mean over replicates for groups; for
            ``relative_mce``: ``a = 100``, ``b`` the ratio).
        diff: ``b - a``, points (percent of A's error for ``relative_mce``).
        ci_low, ci_high: interval of ``diff`` at the requested confidence.
        p_value: two-sided, H0: ``diff = 0``; ``test`` says which test.
        test: ``"mcnemar-exact"``, ``"sign-flip-permutation"`` or ``"two-level-bootstrap"``.
        n_images: source images the statistic is defined on (resampled units).
        replicates: runs in group A and in group B (``(1, 1)`` for two runs).
    """

    name: str
    a: float
    b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    n_images: int
    replicates: tuple[int, int] = (1, 1)


@dataclass(frozen=True)
class Summary:
    """A configuration's own value of a statistic, over its replicates.

    Attributes:
        name: statistic, as in :class:`Difference` (``relative_mce`` excluded).
        mean: mean over replicates, percent.
        ci_low, ci_high: two-level bootstrap interval, percent.
        replicates: runs in the group.
        n_images: source images resampled.
    """

    name: str
    mean: float
    ci_low: float
    ci_high: float
    replicates: int
    n_images: int


@dataclass(frozen=True)
class Gain:
    """Robustness gain, clean drop and relative mCE of a candidate against a baseline.

    Attributes:
        robustness_gain: ``corruption_acc`` of candidate - baseline (points);
            ``a`` baseline, ``b`` candidate.
        clean_drop: ``clean_acc`` of baseline - candidate (points; positive means
            the candidate is worse); ``a`` baseline, ``b`` candidate,
            ``diff = a - b`` and its interval flipped accordingly.
        relative_mce: as in :class:`Difference` (``a`` = 100, ``b`` the ratio).
    """

    robustness_gain: Difference
    clean_drop: Difference
    relative_mce: Difference


@dataclass(frozen=True)
class _Stat:
    """How a statistic reduces to per-image scores.

    ``kind``: ``"single"`` (one key, score = correctness), ``"mean"`` (score = mean
    correctness over ``keys``) or ``"mce"`` (score = summed error over benchmark
    corruptions, each averaged over its severities; ``keys`` grouped by corruption).
    """

    name: str
    kind: str
    keys: tuple[str, ...]


def _statistics(keys: Sequence[str], split: str, *, per_severity: bool, mce: bool) -> list[_Stat]:
    """The statistics a split's keys support, in report order."""
    by_name: dict[str, list[str]] = {}
    for key in keys:
        _, name, _ = parse_key(key)
        if name is not None:
            by_name.setdefault(name, []).append(key)
    bench = [k for n in BENCHMARK_CORRUPTIONS for k in by_name.get(n, [])]
    extra = [k for n in EXTRA_CORRUPTIONS for k in by_name.get(n, [])]
    out = [_Stat("clean_acc", "single", (clean_key(split),))]
    if bench:
        out.append(_Stat("corruption_acc", "mean", tuple(bench)))
    if extra:
        out.append(_Stat("extra_acc", "mean", tuple(extra)))
    if bench and mce:
        out.append(_Stat("relative_mce", "mce", tuple(bench)))
    for cat, members in CATEGORIES.items():
        ks = tuple(k for n in members for k in by_name.get(n, []))
        if ks:
            out.append(_Stat(f"category/{cat}", "mean", ks))
    for name, ks in by_name.items():
        out.append(_Stat(f"corruption/{name}", "mean", tuple(ks)))
    if per_severity:
        for name, ks in by_name.items():
            out.extend(_Stat(f"corruption/{name}/{parse_key(k)[2]}", "single", (k,)) for k in ks)
    return out


def _select(available: list[_Stat], statistics: Collection[str] | None) -> list[_Stat]:
    if statistics is None:
        return available
    names = {s.name: s for s in available}
    missing = [s for s in statistics if s not in names]
    if missing:
        raise ValueError(
            f"paired: statistics not available on these outcomes: {', '.join(missing)} "
            f"(have {', '.join(names)})"
        )
    wanted = set(statistics)
    return [s for s in available if s.name in wanted]


def _scores(outcomes: Outcomes, stat: _Stat) -> np.ndarray:
    """``(n,)`` float64 per-image score of one run (correctness in [0, 1], or the
    summed error in [0, #corruptions] for ``mce``)."""
    if stat.kind == "single":
        return outcomes.arrays[stat.keys[0]].astype(np.float64)
    if stat.kind == "mean":
        return np.mean([outcomes.arrays[k] for k in stat.keys], axis=0, dtype=np.float64)
    per_corruption: dict[str, list[np.ndarray]] = {}
    for k in stat.keys:
        per_corruption.setdefault(parse_key(k)[1], []).append(outcomes.arrays[k])
    return np.sum([1.0 - np.mean(v, axis=0, dtype=np.float64) for v in per_corruption.values()], axis=0)


def _mean_diff(d, axis=-1):
    return np.mean(d, axis=axis) * 100.0


def _mce_diff(ea, eb, axis=-1):
    # 100 * sum E(B) / sum E(A) - 100: ratio of summed errors, minus A's own 100.
    return np.mean(eb, axis=axis) / np.mean(ea, axis=axis) * 100.0 - 100.0


def _sum(d, axis=-1):
    return np.sum(d, axis=axis)


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
        less = np.count_nonzero(null <= observed + gamma) / len(null)
        greater = np.count_nonzero(null >= observed - gamma) / len(null)
    else:
        rng = np.random.default_rng(seed)
        less = greater = 0
        batch = max(1, resample_batch(n, n_permutations))
        done = 0
        while done < n_permutations:
            b = min(batch, n_permutations - done)
            signs = rng.integers(0, 2, size=(b, n), dtype=np.int8) * 2 - 1
            null = signs @ nz
            less += int(np.count_nonzero(null <= observed + gamma))
            greater += int(np.count_nonzero(null >= observed - gamma))
            done += b
        less, greater = (less + 1) / (n_permutations + 1), (greater + 1) / (n_permutations + 1)
    return float(min(1.0, 2 * min(less, greater)))


def _mcnemar_p(xa: np.ndarray, xb: np.ndarray) -> float:
    """Exact McNemar: discordant pairs ``B right, A wrong`` out of all discordant, against 1/2."""
    b_only = int(np.count_nonzero(xb & ~xa))
    a_only = int(np.count_nonzero(xa & ~xb))
    if b_only + a_only == 0:
        return 1.0
    return float(stats.binomtest(b_only, b_only + a_only, 0.5, alternative="two-sided").pvalue)


def _check_confidence(confidence: float, n_resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"paired: confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"paired: n_resamples must be positive, got {n_resamples}")


def compare_runs(
    a: Outcomes,
    b: Outcomes,
    split: str = "test",
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    statistics: Collection[str] | None = None,
    per_severity: bool = False,
) -> list[Difference]:
    """Paired comparison ``B - A`` of two runs on the same images of ``split``.

    Args:
        a, b: outcomes of the two runs; they must pass
            :func:`~study.analysis.outcomes.check_comparable` on ``split``.
        confidence: of the two-sided percentile intervals.
        n_resamples: bootstrap resamples per statistic (``scipy.stats.bootstrap``).
        n_permutations: sign flips per permutation test.
        seed: ``np.random.default_rng(seed)`` for each statistic's bootstrap and test.
        statistics: names to compute (default all the split supports).
        per_severity: add ``corruption/<name>/<severity>`` (McNemar p).

    Returns:
        One :class:`Difference` per statistic: clean_acc, corruption_acc, extra_acc,
        relative_mce, category/*, corruption/* (those the keys support).

    Cost: per statistic one bootstrap over n images (about 0.1 s for n = 10,000
    and 2,000 resamples) and, for averaged statistics, a sign-flip test of about the
    same cost.
    """
    _check_confidence(confidence, n_resamples)
    keys = check_comparable(a, b, split)
    out = []
    for stat in _select(_statistics(keys, split, per_severity=per_severity, mce=True), statistics):
        sa, sb = _scores(a, stat), _scores(b, stat)
        n = len(sa)
        if stat.kind == "mce":
            pa, pb = 100.0, (100.0 * float(sb.mean() / sa.mean()) if n and sa.sum() > 0 else math.nan)
        else:
            pa, pb = (100.0 * float(sa.mean()), 100.0 * float(sb.mean())) if n else (math.nan, math.nan)
        if n < 2 or not math.isfinite(pb):
            out.append(
                Difference(
                    stat.name,
                    pa,
                    pb,
                    pb - pa,
                    math.nan,
                    math.nan,
                    math.nan,
                    MCNEMAR if stat.kind == "single" else SIGN_FLIP,
                    n,
                )
            )
            continue
        batch = resample_batch(n, n_resamples)
        if stat.kind == "mce":
            res = stats.bootstrap(
                (sa, sb),
                _mce_diff,
                paired=True,
                vectorized=True,
                n_resamples=n_resamples,
                batch=batch,
                method="percentile",
                confidence_level=confidence,
                rng=np.random.default_rng(seed),
            )
            p = sign_flip_p(sb - sa, n_permutations, seed)
        else:
            res = stats.bootstrap(
                (sb - sa,),
                _mean_diff,
                vectorized=True,
                n_resamples=n_resamples,
                batch=batch,
                method="percentile",
                confidence_level=confidence,
                rng=np.random.default_rng(seed),
            )
            if stat.kind == "single":
                k = stat.keys[0]
                p = _mcnemar_p(a.arrays[k], b.arrays[k])
            else:
                p = sign_flip_p(sb - sa, n_permutations, seed)
        out.append(
            Difference(
                stat.name,
                pa,
                pb,
                pb - pa,
                float(res.confidence_interval.low),
                float(res.confidence_interval.high),
                p,
                MCNEMAR if stat.kind == "single" else SIGN_FLIP,
                n,
            )
        )
    return out


def _group_keys(groups: dict[str, Sequence[Outcomes]], split: str) -> tuple[str, ...]:
    """The split's keys, when every run of every group was evaluated on the same images."""
    for g, group in groups.items():
        if isinstance(group, Outcomes) or len(group) == 0:
            raise ValueError(f"paired: group {g} must be a non-empty sequence of Outcomes")
        for o in group:
            if not isinstance(o, Outcomes):
                raise ValueError(f"paired: group {g} holds a {type(o).__name__}, not Outcomes")
    runs = [(f"run {i} of group {g}", o) for g, group in groups.items() for i, o in enumerate(group)]
    ref_name, ref = runs[0]
    keys = check_comparable(ref, ref, split)
    for name, o in runs[1:]:
        try:
            check_comparable(ref, o, split)
        except ValueError as exc:
            raise ValueError(f"paired: {name} vs {ref_name}: {exc}") from None
    return keys


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


def _two_level(groups: Sequence[np.ndarray], kind: str, n_resamples: int, seed: int) -> np.ndarray:
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
        if kind == "diff":
            out.append(_mean_diff(diff[idx]) + 100.0 * (offsets[1] - offsets[0]))
        elif kind == "ratio":
            ea = np.mean(levels[0].means[idx], axis=-1) + offsets[0]
            eb = np.mean(levels[1].means[idx], axis=-1) + offsets[1]
            out.append(eb / ea * 100.0 - 100.0)
        else:
            out.append((np.mean(levels[0].means[idx], axis=-1) + offsets[0]) * 100.0)
    return np.concatenate(out)


def _percentile_interval(dist: np.ndarray, confidence: float) -> tuple[float, float]:
    # As scipy.stats.bootstrap(method="percentile") computes it, so R = 1 groups match compare_runs.
    alpha = (1.0 - confidence) / 2.0
    lo, hi = stats.quantile(dist, np.asarray([alpha, 1.0 - alpha]))
    return float(lo), float(hi)


def _bootstrap_p(dist: np.ndarray) -> float:
    """Two-sided percentile-bootstrap p of H0: statistic = 0 (``dist`` centred on the estimate)."""
    if np.isnan(dist).any():
        return math.nan
    k = min(int(np.count_nonzero(dist <= 0)), int(np.count_nonzero(dist >= 0)))
    return min(1.0, 2.0 * (k + 1) / (len(dist) + 1))


def compare_groups(
    a: Sequence[Outcomes],
    b: Sequence[Outcomes],
    split: str = "test",
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    statistics: Collection[str] | None = None,
    per_severity: bool = False,
) -> list[Difference]:
    """Comparison ``B - A`` of two replicated configurations on the same images.

    Args:
        a, b: R_A >= 1 and R_B >= 1 runs (seeds) of each configuration, all
            evaluated on the same images of ``split``.
        confidence, n_resamples, seed, statistics, per_severity: as :func:`compare_runs`.

    Returns:
        One :class:`Difference` per statistic: ``a``/``b`` the means over each
        group's replicates (percent; for ``relative_mce`` the ratio of the groups'
        mean summed errors), the interval from the two-level bootstrap
        (replicates within groups, then images shared by both; hand-written in
        numpy since scipy has no hierarchical bootstrap), ``p_value`` the
        two-sided percentile-bootstrap p (``test = "two-level-bootstrap"``).

    With R = 1 runs per group the interval is :func:`compare_runs`'s (the seed
    draws the same images); the p-value is the bootstrap one, close to but not
    the McNemar / sign-flip one. Calibration (tests/unit/test_paired.py, 3 seeds
    per group, 400 images, a 1.5-point seed effect): 93.9% coverage with a true
    difference, 5.6% p < 0.05 without; without a seed effect 96.5% / 3.5%.
    """
    _check_confidence(confidence, n_resamples)
    keys = _group_keys({"A": a, "B": b}, split)
    out = []
    for stat in _select(_statistics(keys, split, per_severity=per_severity, mce=True), statistics):
        sa = np.stack([_scores(o, stat) for o in a])
        sb = np.stack([_scores(o, stat) for o in b])
        n = sa.shape[1]
        if stat.kind == "mce":
            pa, pb = 100.0, (100.0 * float(sb.mean() / sa.mean()) if n and sa.sum() > 0 else math.nan)
        else:
            pa, pb = (100.0 * float(sa.mean()), 100.0 * float(sb.mean())) if n else (math.nan, math.nan)
        reps = (len(a), len(b))
        if n < 2 or not math.isfinite(pb):
            out.append(
                Difference(stat.name, pa, pb, pb - pa, math.nan, math.nan, math.nan, TWO_LEVEL, n, reps)
            )
            continue
        dist = _two_level([sa, sb], "ratio" if stat.kind == "mce" else "diff", n_resamples, seed)
        lo, hi = _percentile_interval(dist, confidence)
        out.append(Difference(stat.name, pa, pb, pb - pa, lo, hi, _bootstrap_p(dist), TWO_LEVEL, n, reps))
    return out


def group_summary(
    group: Sequence[Outcomes],
    split: str = "test",
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    statistics: Collection[str] | None = None,
    per_severity: bool = False,
) -> dict[str, Summary]:
    """A configuration's own accuracies with intervals, over its R >= 1 runs.

    Args:
        group: runs (seeds) of one configuration on the same images of ``split``
            (a single :class:`Outcomes` counts as R = 1).
        confidence, n_resamples, seed, statistics, per_severity: as :func:`compare_groups`.

    Returns:
        ``{name: Summary}`` for clean_acc, corruption_acc, extra_acc, category/*,
        corruption/* (no ``relative_mce``, which needs a baseline): mean over runs
        (percent) and the two-level bootstrap interval (runs, then images). With
        R = 1 it is the image bootstrap of the run's accuracy.
    """
    _check_confidence(confidence, n_resamples)
    group = _as_group(group)
    keys = _group_keys({"A": group}, split)
    out = {}
    for stat in _select(_statistics(keys, split, per_severity=per_severity, mce=False), statistics):
        scores = np.stack([_scores(o, stat) for o in group])
        n = scores.shape[1]
        mean = 100.0 * float(scores.mean()) if n else math.nan
        if n < 2:
            out[stat.name] = Summary(stat.name, mean, math.nan, math.nan, len(group), n)
            continue
        lo, hi = _percentile_interval(_two_level([scores], "level", n_resamples, seed), confidence)
        out[stat.name] = Summary(stat.name, mean, lo, hi, len(group), n)
    return out


def gain_interval(
    baseline: Outcomes | Sequence[Outcomes],
    candidate: Outcomes | Sequence[Outcomes],
    split: str = "test",
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> Gain:
    """Robustness gain, clean drop and relative mCE of ``candidate`` against ``baseline``.

    Two single :class:`Outcomes` go through :func:`compare_runs` (McNemar p for the
    clean drop, sign-flip p for the gain and mCE); if either is a sequence (a
    group of replicates; a single run counts as R = 1) through
    :func:`compare_groups`. Units: points for gain and drop, percent for mCE.

    Raises:
        ValueError: when the runs are not comparable on ``split`` or it has no
            benchmark corruption.
    """
    wanted = ("clean_acc", "corruption_acc", "relative_mce")
    if isinstance(baseline, Outcomes) and isinstance(candidate, Outcomes):
        diffs = compare_runs(
            baseline,
            candidate,
            split,
            confidence=confidence,
            n_resamples=n_resamples,
            n_permutations=n_permutations,
            seed=seed,
            statistics=wanted,
        )
    else:
        diffs = compare_groups(
            _as_group(baseline),
            _as_group(candidate),
            split,
            confidence=confidence,
            n_resamples=n_resamples,
            seed=seed,
            statistics=wanted,
        )
    by = {d.name: d for d in diffs}
    clean = by["clean_acc"]
    return Gain(
        robustness_gain=replace(by["corruption_acc"], name=ROBUSTNESS_GAIN),
        # Baseline - candidate: the difference and its interval change sign.
        clean_drop=replace(
            clean, name=CLEAN_DROP, diff=clean.a - clean.b, ci_low=-clean.ci_high, ci_high=-clean.ci_low
        ),
        relative_mce=replace(by["relative_mce"], name=RELATIVE_MCE),
    )


def _as_group(x: Outcomes | Sequence[Outcomes]) -> list[Outcomes]:
    return [x] if isinstance(x, Outcomes) else list(x)
