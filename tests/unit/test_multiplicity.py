"""Holm, Benjamini-Hochberg, p display and the significant-champion rule (study.analysis.multiplicity)."""

import math

import numpy as np
import pytest
from scipy import stats

from study.analysis import multiplicity as mt
from study.analysis import seedlevel as sl


def _holm_rejects(p, alpha):
    """Holm's step-down procedure as a hand loop: reject in ascending order while
    p_(k) <= alpha / (m - k + 1), stop at the first that is not."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    rejected = set()
    for k, i in enumerate(order):
        if p[i] <= alpha / (len(p) - k):
            rejected.add(i)
        else:
            break
    return rejected


def _bh_rejects(p, alpha):
    """Benjamini-Hochberg step-up as a hand loop: the largest k with p_(k) <= k alpha / m."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    m = len(p)
    k_max = 0
    for k, i in enumerate(order, start=1):
        if p[i] <= k * alpha / m:
            k_max = k
    return set(order[:k_max])


def test_holm_and_bh_adjusted_p_reject_what_the_step_procedures_reject():
    rng = np.random.default_rng(0)
    for trial in range(400):
        m = int(rng.integers(1, 25))
        # Mixture of nulls and small p-values, some ties.
        p = np.where(rng.random(m) < 0.4, rng.random(m) * 0.01, rng.random(m))
        if trial % 5 == 0:
            p[: m // 2] = p[0]
        holm, bh = mt.holm(p), mt.benjamini_hochberg(p)
        assert np.all(holm >= p) and np.all(holm <= 1) and np.all(bh >= p - 1e-15)
        for alpha in (0.001, 0.01, 0.05, 0.2):
            assert set(np.flatnonzero(holm <= alpha)) == _holm_rejects(p, alpha), (trial, alpha)
            assert set(np.flatnonzero(bh <= alpha + 1e-12)) == _bh_rejects(p, alpha), (trial, alpha)


def test_holm_formula_by_hand_and_nan_left_out():
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    # Ascending 0.005, 0.01, 0.03, 0.04 with m = 4: 4*0.005, 3*0.01, 2*0.03, 1*0.04, running max.
    expected = {3: 0.02, 0: 0.03, 2: 0.06, 1: 0.06}
    out = mt.holm(p)
    for i, v in expected.items():
        assert out[i] == pytest.approx(v)
    assert math.isnan(out[4])
    bh = mt.benjamini_hochberg(p)
    assert math.isnan(bh[4])
    np.testing.assert_allclose(bh[:4], stats.false_discovery_control(p[:4], method="bh"))
    assert mt.adjust(p, mt.PRIMARY)[3] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="family must be one of"):
        mt.adjust(p, "tertiary")
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        mt.holm([0.5, 1.5])


def test_p_display_never_prints_a_floor_as_a_value():
    assert mt.format_p(0.0) == "≤ 0.001"
    assert mt.format_p(0.001) == "≤ 0.001"
    assert mt.format_p(1e-9) == "≤ 0.001"
    # A resampling test's floor (2 (0 + 1) / (999 + 1) = 0.002) prints as a bound, not a value.
    assert mt.format_p(0.002, floor=0.002) == "≤ 0.002"
    assert mt.format_p(0.0021, floor=0.002) == "0.0021"
    # Rounded down: a p below 0.05 never shows as 0.05.
    assert mt.format_p(0.04999) == "0.049"
    assert mt.format_p(0.29) == "0.29"
    assert mt.format_p(0.0012) == "0.0012"
    assert mt.format_p(1.0) == "1"
    assert mt.format_p(math.nan) == "n/a"
    for p in np.random.default_rng(1).random(500) * 0.1:
        shown = mt.format_p(float(p))
        if not shown.startswith("≤"):
            assert (float(shown) < 0.05) == (p < 0.05) and float(shown) <= p


def _interval(estimate, se, df, scope=sl.CONFIGURATIONS):
    return sl.Interval(
        estimate, math.nan, math.nan, math.nan, se, df, (3, 3), 100, 0.5, 0.5, scope, 0.95, "diff"
    )


def test_champion_needs_its_adjusted_lower_bound_above_zero():
    front = [_interval(3.0, 1.0, 4.0), _interval(1.0, 1.0, 4.0), _interval(0.5, 0.5, 8.0)]
    # Unadjusted 95% lower bound 3 - 2.776 > 0; for K = 3, t_{1 - 0.05/6, 4} = 3.96: 3 - 3.96 < 0.
    res = mt.significant_champion(front, 0)
    assert not res.crowned and res.candidates == 3
    assert res.adjusted_low == pytest.approx(3.0 - stats.t.ppf(1 - 0.05 / 6, 4))
    assert "\n" not in res.reason and "not above 0" in res.reason
    front[0] = _interval(8.0, 1.0, 4.0)
    res = mt.significant_champion(front, 0, candidates=10)
    assert res.crowned and res.adjusted_low == pytest.approx(8.0 - stats.t.ppf(1 - 0.05 / 20, 4))
    assert "fresh seeds" in res.reason
    with pytest.raises(ValueError, match="at least the front's size"):
        mt.significant_champion(front, 0, candidates=2)


def test_champion_refuses_single_seed_configurations_in_one_line():
    front = [_interval(30.0, 1.0, 99.0, sl.NETWORKS), _interval(1.0, 1.0, 4.0)]
    res = mt.significant_champion(front, 0)
    assert not res.crowned and math.isnan(res.adjusted_low)
    assert "\n" not in res.reason and "replicates >= 2" in res.reason
    borrowed = [_interval(30.0, 1.0, 4.0, sl.BORROWED)]
    assert not mt.significant_champion(borrowed, 0).crowned
