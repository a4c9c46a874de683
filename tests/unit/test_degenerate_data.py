"""Degenerate data (a handful of images, a model at 0% or 100%): what the statistics say, silently.

A relative change of an error of 0 is undefined: the value or its interval is NaN with
``Difference.note`` saying why. A constant bootstrap distribution gives a point interval.
Every call here runs with warnings as errors: numpy's divide warnings and scipy's
``DegenerateDataWarning`` were what such data used to print.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from study.analysis import paired as P
from study.analysis.outcomes import Outcomes, clean_key, corrupted_key
from study.analysis.resampling import (
    ZERO_BASELINE,
    percentile_interval,
    ratio_diff,
    relative_change,
    resample_batch,
    two_level,
    undefined_reason,
)

pytestmark = pytest.mark.filterwarnings("error")  # any warning fails the test


def run(clean, gaussian_noise) -> Outcomes:
    """One run's outcomes: clean images, and the first few of them under gaussian_noise severity 1."""
    arrays = {
        clean_key("test"): np.asarray(clean, dtype=bool),
        corrupted_key("test", "gaussian_noise", 1): np.asarray(gaussian_noise, dtype=bool),
    }
    fp = {"test": {"source": "sim", "n": len(clean), "corruption_limit": len(gaussian_noise)}}
    return Outcomes(arrays, fp)


CLEAN = [1, 0, 1, 0, 1, 1, 0, 1]
A_MOSTLY_RIGHT = run(CLEAN, [1, 1, 0, 1, 1])  # one corrupted image wrong: its error is 0 on the other 4
A_ALL_RIGHT = run(CLEAN, [1, 1, 1, 1, 1])
B_ALL_WRONG = run([0, 0, 1, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0])  # 0% on the corruption


def by_name(diffs) -> dict:
    return {d.name: d for d in diffs}


def test_relative_change_of_a_zero_baseline_is_nan_without_a_warning():
    ea = np.array([0.0, 0.0, 0.5, 2.0])
    eb = np.array([0.0, 1.0, 0.25, 3.0])
    out = relative_change(ea, eb)
    assert np.isnan(out[:2]).all()
    assert out[2:] == pytest.approx([-50.0, 50.0])
    # Along an axis: the rows whose baseline mean is 0 only.
    rows_a = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 2.0]])
    rows_b = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    r = ratio_diff(rows_a, rows_b)
    assert math.isnan(r[0]) and r[1] == pytest.approx(100 * 1 / 1 - 100)


def test_resamples_of_only_error_free_images_are_counted_not_divided():
    ea = np.array([0.0, 0.0, 0.0, 1.0, 0.0])  # A errs on one image of five
    eb = np.array([1.0, 0.0, 1.0, 1.0, 1.0])
    dist = two_level([ea[None, :], eb[None, :]], "ratio", 999, seed=4)
    # Brute force: the same draws (one batch), a resample is undefined iff it misses image 3.
    idx = np.random.default_rng(4).integers(0, 5, (resample_batch(5, 999), 5))
    undefined = ~(idx == 3).any(axis=1)
    assert np.array_equal(np.isnan(dist), undefined)
    k = int(undefined.sum())
    assert 0 < k < 999  # (4/5)^5 = 33% of resamples
    expected = 100 * eb[idx[~undefined]].mean(axis=1) / ea[idx[~undefined]].mean(axis=1) - 100
    assert dist[~undefined] == pytest.approx(expected, rel=1e-12)
    assert all(math.isnan(v) for v in percentile_interval(dist, 0.95))
    assert f"in {k} of 999 resamples" in undefined_reason(dist)
    assert undefined_reason(dist[~undefined]) == ""


def test_a_constant_distribution_is_a_point_interval():
    for c in (0.0, -100.0, 37.5):
        assert percentile_interval(np.full(999, c), 0.95) == (c, c)
    # A model wrong on every image: its own level and the bootstrap of it are exactly 0.
    zeros = np.zeros((1, 7))
    assert percentile_interval(two_level([zeros], "level", 199, seed=0), 0.95) == (0.0, 0.0)


def test_relative_mce_against_an_error_free_baseline_is_not_available_with_the_reason():
    for diffs in (
        P.compare_runs(A_ALL_RIGHT, B_ALL_WRONG, n_resamples=199, n_permutations=99),
        P.compare_groups([A_ALL_RIGHT], [B_ALL_WRONG], n_resamples=199),
        P.compare_groups([A_ALL_RIGHT] * 2, [B_ALL_WRONG] * 2, n_resamples=199),
    ):
        d = by_name(diffs)
        mce = d["relative_mce"]
        assert mce.a == 100.0 and math.isnan(mce.b) and math.isnan(mce.ci_low) and math.isnan(mce.ci_high)
        assert mce.note == ZERO_BASELINE
        # The accuracies are constant (100% and 0%): a point interval, no note.
        acc = d["corruption_acc"]
        assert (acc.diff, acc.ci_low, acc.ci_high, acc.note) == (-100.0, -100.0, -100.0, "")


def test_relative_mce_with_some_error_free_images_keeps_point_and_p_and_says_why_no_interval():
    d = by_name(P.compare_runs(A_MOSTLY_RIGHT, B_ALL_WRONG, n_resamples=199, n_permutations=99))[
        "relative_mce"
    ]
    # A errs on 1 of 5 images, B on all 5: B's summed error is 5x A's.
    assert d.b == pytest.approx(500.0) and d.diff == pytest.approx(400.0)
    assert 0 < d.p_value <= 1
    assert math.isnan(d.ci_low) and math.isnan(d.ci_high)
    assert "resamples" in d.note and "change relative to 0 is undefined" in d.note
    # The other way round A (now B_ALL_WRONG) errs everywhere: an interval, no note.
    back = by_name(P.compare_runs(B_ALL_WRONG, A_MOSTLY_RIGHT, n_resamples=199, n_permutations=99))
    assert (
        back["relative_mce"].note == ""
        and back["relative_mce"].ci_low <= -80.0 <= back["relative_mce"].ci_high
    )


def test_a_replicated_b_with_no_error_has_ratio_zero_and_no_log_interval():
    d = by_name(P.compare_groups([B_ALL_WRONG] * 2, [A_ALL_RIGHT] * 2, n_resamples=199))["relative_mce"]
    assert (d.b, d.diff) == (0.0, -100.0) and d.test == P.SEED_LEVEL
    assert math.isnan(d.ci_low) and math.isnan(d.p_value) and "log scale" in d.note


def test_group_summary_of_a_model_at_zero_percent_is_the_point_zero():
    for group in ([B_ALL_WRONG], [B_ALL_WRONG] * 3):
        s = P.group_summary(group, n_resamples=199)["corruption_acc"]
        assert (s.mean, s.ci_low, s.ci_high) == (0.0, 0.0, 0.0)


def test_the_ratio_interval_is_still_scipys_paired_bootstrap_on_ordinary_data():
    rng = np.random.default_rng(7)
    n = 300
    z = rng.normal(0, 1, n)
    arrays = []
    for mu in (0.3, 0.6):
        arr = {clean_key("test"): rng.random(n) < 0.7}
        for name in ("gaussian_noise", "fog", "contrast"):
            arr[corrupted_key("test", name, 3)] = rng.random(n) < 1 / (1 + np.exp(-(mu - z)))
        arrays.append(Outcomes(arr, {"test": {"source": "sim", "n": n}}))
    a, b = arrays
    d = by_name(P.compare_runs(a, b, n_resamples=999, n_permutations=99, seed=3))["relative_mce"]
    ea = sum(1.0 - a.arrays[corrupted_key("test", c, 3)] for c in ("gaussian_noise", "fog", "contrast"))
    eb = sum(1.0 - b.arrays[corrupted_key("test", c, 3)] for c in ("gaussian_noise", "fog", "contrast"))
    res = stats.bootstrap(
        (ea, eb),
        ratio_diff,
        paired=True,
        vectorized=True,
        n_resamples=999,
        batch=resample_batch(n, 999),
        method="percentile",
        rng=np.random.default_rng(3),
    )
    assert (d.ci_low, d.ci_high) == pytest.approx(
        (res.confidence_interval.low, res.confidence_interval.high), rel=1e-12
    )
    assert d.note == ""
