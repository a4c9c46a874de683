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

Statistics of a split (names without the split prefix; each is one entry of the
statistic table, :mod:`study.analysis.statistics`):

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
over images (for the ratio, the same paired draws and arithmetic from
:func:`~study.analysis.resampling.two_level` with one run a side), seeded with
``np.random.default_rng(seed)`` for each statistic, so equal inputs and seed give
equal intervals and every statistic of an image set sees the same resampled images. Percentile rather
than BCa: at these sample sizes (hundreds to 10,000 images, a mean of bounded
scores) it is calibrated (see tests/unit/test_paired.py: 95% intervals cover the
true difference in 93-97% of simulated comparisons), it needs no jackknife (BCa's
is O(n^2) for n = 10,000), and it stays finite on degenerate data (two identical
runs: BCa is NaN).

Degenerate data (tiny smoke studies: a handful of images, a model at 0% or 100%).
Constant per-image scores give a constant bootstrap distribution and so a point
interval, ``[c, c]``: no resample of these images differs, which is all the image
bootstrap can say. A relative mCE needs A's summed error: where it is 0 on every
image the point, interval and p-value are NaN; where only some resamples draw
nothing but such images, the point and the sign-flip p stand and the interval
(and a bootstrap p) is NaN: those resamples' ratio is undefined, and dropping
them would bias the rest. Either way
``Difference.note`` says why, and nothing warns. With R >= 2 a side whose summed
error is 0 has no log-scale interval, said the same way.

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
is the mean over replicates. With R >= 2 on a side the interval and p-value are
:mod:`study.analysis.seedlevel`'s (``test = "seed-level-t"``): a t interval over
seed means with Welch-Satterthwaite df that folds in the image-level variance of
the paired mean (log scale for relative mCE; logit scale for a configuration's
own accuracy, so it stays in [0, 100]); p from the same t statistic; the seeds
per side and the seed/image share of the variance come with it; the same runs on
both sides give exactly 0 with a zero-width interval. ``scope`` says what it
speaks of: ``configurations`` with R >= 2 on both sides, ``networks`` when a side
has one run (the comparison is then conditional on that trained network). Two
groups of one run each keep the image bootstrap (the two-level resampler of
:mod:`study.analysis.resampling` with R = 1, equal to :func:`compare_runs`'s
interval), scope ``networks``. (The earlier two-level percentile bootstrap at R >= 2
covered 87-92% for a nominal 95% in the seed-dominated regime: issue 22.)

Cost (n = 10,000 images, 19 corruptions x 5 severities, 2 cores): a full
:func:`compare_runs` ~30 s, almost all in the permutation tests (scipy loops over
images in Python); its bootstraps, :func:`gain_interval`, :func:`compare_groups`
and :func:`group_summary` ~2-3 s.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from study.analysis import seedlevel as SL
from study.analysis import statistics as S
from study.analysis.gains import Gain, gain_of, gain_source_statistics
from study.analysis.outcomes import Outcomes, check_comparable
from study.analysis.resampling import (
    DEFAULT_PERMUTATIONS,
    DEFAULT_RESAMPLES,
    MCNEMAR,
    SIGN_FLIP,
    TOO_FEW_IMAGES,
    TWO_LEVEL,
    ZERO_BASELINE,
    bootstrap_p,
    mean_diff,
    percentile_interval,
    resample_batch,
    sign_flip_p,
    two_level,
    undefined_reason,
)

__all__ = [
    "DEFAULT_PERMUTATIONS",
    "DEFAULT_RESAMPLES",
    "MCNEMAR",
    "SIGN_FLIP",
    "SEED_LEVEL",
    "TWO_LEVEL",
    "Difference",
    "Gain",
    "Summary",
    "compare_groups",
    "compare_runs",
    "gain_interval",
    "group_summary",
    "resample_batch",
    "sign_flip_p",
]


SEED_LEVEL = "seed-level-t"  # seedlevel's Welch-Satterthwaite t over seed means (R >= 2)
_NONE = (math.nan, math.nan, math.nan)  # ci_low, ci_high, p_value of a Difference that has none


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
        test: ``"mcnemar-exact"``, ``"sign-flip-permutation"``, ``"two-level-bootstrap"``
            (two single runs as groups) or ``"seed-level-t"`` (a group with R >= 2).
        n_images: source images the statistic is defined on (resampled units).
        replicates: runs in group A and in group B (``(1, 1)`` for two runs).
        scope: what the interval speaks of: ``"configurations"`` (R >= 2 on both sides)
            or ``"networks"`` (a side with one run: these trained networks, images only).
        seed_share, image_share: shares of the interval's variance from seeds and from
            images (NaN for a bootstrap interval or a zero-width one).
        df: degrees of freedom of the t interval (NaN for a bootstrap interval).
        family: multiplicity family (``multiplicity.PRIMARY``/``SECONDARY``), None when
            not adjusted; ``p_adjusted`` the adjusted p-value (NaN when not adjusted).
        note: why a value is NaN (not available), ``""`` when all are: a relative mCE
            against a baseline with no error (:data:`~study.analysis.resampling.ZERO_BASELINE`),
            or resamples drawing only such images, or too few images.
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
    scope: str = SL.NETWORKS
    seed_share: float = math.nan
    image_share: float = math.nan
    df: float = math.nan
    family: str | None = None
    p_adjusted: float = math.nan
    note: str = ""


@dataclass(frozen=True)
class Summary:
    """A configuration's own value of a statistic, over its replicates.

    Attributes:
        name: statistic, as in :class:`Difference` (``relative_mce`` excluded).
        mean: mean over replicates, percent.
        ci_low, ci_high: interval, percent, within [0, 100] (R >= 2: seedlevel's logit
            t interval; R = 1: image bootstrap of that network).
        replicates: runs in the group.
        n_images: source images resampled.
        scope: ``"configurations"`` (R >= 2) or ``"networks"`` (R = 1).
    """

    name: str
    mean: float
    ci_low: float
    ci_high: float
    replicates: int
    n_images: int
    scope: str = SL.NETWORKS


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
    for stat in S.select(S.statistics_of(keys, split, per_severity=per_severity), statistics):
        kind = stat.kind
        sa, sb = stat.scores(a), stat.scores(b)
        n = len(sa)
        pa, pb = kind.points(sa, sb)
        if n < 2 or not math.isfinite(pb):
            note = TOO_FEW_IMAGES if n < 2 else ZERO_BASELINE
            out.append(Difference(stat.name, pa, pb, pb - pa, *_NONE, kind.test, n, note=note))
            continue
        p = kind.p_value(a.arrays, b.arrays, stat.keys, sb - sa, n_permutations, seed)
        if kind.contrast == "ratio":
            # The two-level resampler with one run a side draws scipy's paired bootstrap's images
            # and does its arithmetic (tests/unit/test_paired.py holds them equal), and counts
            # the resamples where A's error is 0 rather than dividing by it.
            dist = two_level([sa[None, :], sb[None, :]], "ratio", n_resamples, seed)
            lo, hi = percentile_interval(dist, confidence)
            note = undefined_reason(dist)
            out.append(Difference(stat.name, pa, pb, pb - pa, lo, hi, p, kind.test, n, note=note))
            continue
        common = dict(
            vectorized=True,
            n_resamples=n_resamples,
            batch=resample_batch(n, n_resamples),
            method="percentile",
            confidence_level=confidence,
            rng=np.random.default_rng(seed),
        )
        res = stats.bootstrap((sb - sa,), mean_diff, **common)
        ci = res.confidence_interval
        out.append(Difference(stat.name, pa, pb, pb - pa, float(ci.low), float(ci.high), p, kind.test, n))
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


def compare_groups(
    a: Sequence[Outcomes],
    b: Sequence[Outcomes],
    split: str = "test",
    *,
    statistics: Collection[str] | None = None,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,  # no n_permutations: the p-value comes from the same two-level bootstrap
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
    reps = (len(a), len(b))
    out = []
    for stat in S.select(S.statistics_of(keys, split, per_severity=per_severity), statistics):
        sa = np.stack([stat.scores(o) for o in a])
        sb = np.stack([stat.scores(o) for o in b])
        n = sa.shape[1]
        pa, pb = stat.kind.points(sa, sb)
        if n < 2 or not math.isfinite(pb):
            note = TOO_FEW_IMAGES if n < 2 else ZERO_BASELINE
            out.append(Difference(stat.name, pa, pb, pb - pa, *_NONE, TWO_LEVEL, n, reps, note=note))
            continue
        if max(reps) >= 2:
            out.append(_seed_level(stat.name, stat.kind.contrast, sa, sb, pa, pb, confidence))
            continue
        dist = two_level([sa, sb], stat.kind.contrast, n_resamples, seed)
        lo, hi = percentile_interval(dist, confidence)
        note = undefined_reason(dist)
        out.append(
            Difference(stat.name, pa, pb, pb - pa, lo, hi, bootstrap_p(dist), TWO_LEVEL, n, reps, note=note)
        )
    return out


def _seed_level(
    name: str, contrast: str, sa: np.ndarray, sb: np.ndarray, pa: float, pb: float, confidence: float
) -> Difference:
    """A :class:`Difference` from :func:`study.analysis.seedlevel.configuration_difference`
    (``contrast`` ``"diff"`` or ``"ratio"``; ``(R, n)`` scores of each side).

    A ratio whose B makes no error (``pb = 0``, B's error 0% of A's) has no interval:
    the seed-level interval is on the log scale, where 0 is minus infinity."""
    if contrast == "ratio" and not pb > 0:
        note = "no interval: B's summed error is 0 on every image, and a ratio of 0 has none on the log scale"
        reps = (sa.shape[0], sb.shape[0])
        return Difference(name, pa, pb, pb - pa, *_NONE, SEED_LEVEL, sa.shape[1], reps, note=note)
    iv = SL.configuration_difference(
        sa, sb, SL.RATIO if contrast == "ratio" else SL.DIFF, confidence=confidence
    )
    diff = 0.0 if iv.estimate == 0.0 and iv.ci_low == iv.ci_high == 0.0 else pb - pa
    return Difference(
        name,
        pa,
        pb,
        diff,
        iv.ci_low,
        iv.ci_high,
        iv.p_value,
        SEED_LEVEL,
        iv.n_images,
        (sa.shape[0], sb.shape[0]),
        iv.scope,
        iv.seed_share,
        iv.image_share,
        iv.df,
    )


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
    available = S.statistics_of(keys, split, per_severity=per_severity, relative=False)
    for stat in S.select(available, statistics):
        scores = np.stack([stat.scores(o) for o in group])
        n = scores.shape[1]
        mean = 100.0 * float(scores.mean()) if n else math.nan
        if n < 2:
            out[stat.name] = Summary(stat.name, mean, math.nan, math.nan, len(group), n)
            continue
        if len(group) >= 2:
            iv = SL.configuration_level(scores, confidence=confidence)
            out[stat.name] = Summary(stat.name, mean, iv.ci_low, iv.ci_high, len(group), n, iv.scope)
            continue
        lo, hi = percentile_interval(two_level([scores], "level", n_resamples, seed), confidence)
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
    """Every gain of the gain table (:data:`study.analysis.gains.GAINS`: robustness gain, clean
    drop, relative mCE, ...) of ``candidate`` against ``baseline``.

    Two single :class:`Outcomes` go through :func:`compare_runs` (McNemar p for the
    clean drop, sign-flip p for the gain and mCE); if either is a sequence (a
    group of replicates; a single run counts as R = 1) through
    :func:`compare_groups`. Units: points for gain and drop, percent for mCE.

    Raises:
        ValueError: when the runs are not comparable on ``split`` or it has no
            benchmark corruption.
    """
    wanted = gain_source_statistics()
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
    return gain_of({d.name: d for d in diffs})


def _as_group(x: Outcomes | Sequence[Outcomes]) -> list[Outcomes]:
    return [x] if isinstance(x, Outcomes) else list(x)
