"""Configuration-level intervals (study.analysis.seedlevel): identities, ranges, brute force.

Calibration on simulated studies is in test_calibration.py.
"""

import math

import numpy as np
import pytest
from scipy import stats

from study.analysis import seedlevel as sl
from study.analysis import simulate


def _scores(rng, r, n, offset=0.0):
    return np.clip(rng.random((r, n)) * 0.8 + offset, 0.0, 1.0)


def test_self_comparison_is_exactly_zero_with_zero_width():
    rng = np.random.default_rng(0)
    y = _scores(rng, 3, 100)
    for kind, other in ((sl.DIFF, y[::-1]), (sl.RATIO, (1 + y)[[1, 2, 0]])):
        ya = y if kind == sl.DIFF else 1 + y
        res = sl.configuration_difference(ya, other, kind)
        assert (res.estimate, res.ci_low, res.ci_high, res.p_value) == (0.0, 0.0, 0.0, 1.0)
    # A single run against itself too (the R = 1 path).
    res = sl.configuration_difference(y[0], y[0])
    assert (res.estimate, res.ci_low, res.ci_high) == (0.0, 0.0, 0.0) and res.scope == sl.NETWORKS


def test_p_below_alpha_exactly_when_zero_outside_interval():
    rng = np.random.default_rng(1)
    seen = set()
    for trial in range(300):
        r_a, r_b = rng.integers(2, 6, size=2)
        n = int(rng.integers(20, 120))
        shift = rng.normal(0, 0.08)
        ya, yb = _scores(rng, r_a, n), _scores(rng, r_b, n, shift)
        ya += rng.normal(0, 0.05, (r_a, 1))
        yb += rng.normal(0, 0.05, (r_b, 1))
        for kind, a, b in ((sl.DIFF, ya, yb), (sl.RATIO, 1.5 - ya, 1.5 - yb)):
            conf = (0.95, 0.9, 0.99)[trial % 3]
            res = sl.configuration_difference(a, b, kind, confidence=conf)
            excluded = res.ci_low > 0 or res.ci_high < 0
            assert (res.p_value < 1 - conf) == excluded, (trial, kind, res)
            assert res.ci_low <= res.estimate <= res.ci_high
            seen.add(excluded)
    assert seen == {True, False}  # both outcomes exercised


def test_accuracy_level_intervals_stay_in_range_and_ratio_above_minus_100():
    # 1.25% accuracy on 80 images, 2 seeds: a symmetric interval would go below 0.
    y = np.zeros((2, 80))
    y[0, :2] = 1.0
    low = sl.configuration_level(y)
    assert 0.0 <= low.ci_low < low.estimate < low.ci_high <= 100.0
    high = sl.configuration_level(1.0 - y)
    assert 0.0 <= high.ci_low < high.estimate < high.ci_high <= 100.0
    assert math.isclose(low.estimate + high.estimate, 100.0)
    # The R = 1 level is about that network (images only).
    assert sl.configuration_level(y[:1]).scope == sl.NETWORKS
    # All right: exactly 100, zero width.
    full = sl.configuration_level(np.ones((3, 50)))
    assert (full.estimate, full.ci_low, full.ci_high) == (100.0, 100.0, 100.0)
    # Relative mCE: the ratio's interval is positive (diff > -100) even with wild seeds.
    rng = np.random.default_rng(2)
    ea = rng.random((2, 50)) * 0.2 + 0.01
    eb = ea * np.array([[0.05], [3.0]])
    res = sl.configuration_difference(ea, eb, sl.RATIO)
    assert -100.0 < res.ci_low < res.estimate < res.ci_high
    # Differences of accuracies stay in [-100, 100].
    res = sl.configuration_difference(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[1.0, 1.0], [0.0, 0.0]]))
    assert -100.0 <= res.ci_low and res.ci_high <= 100.0


def test_seeds_whose_accuracies_tie_still_carry_image_noise():
    # Two seeds with the same accuracy on different images (a discrete tie): the seed
    # term is 0, yet the interval is not zero-width and p is not 0.
    ya = np.zeros((2, 100))
    ya[0, :60], ya[1, 40:] = 1.0, 1.0
    yb = np.zeros((2, 100))
    yb[0, :65], yb[1, 35:] = 1.0, 1.0
    res = sl.configuration_difference(ya, yb)
    assert res.estimate == pytest.approx(5.0) and res.ci_high - res.ci_low > 1.0 and res.p_value > 0.001
    level = sl.configuration_level(ya)
    assert level.ci_low < 60.0 < level.ci_high


def _brute_moments(y):
    r, n = y.shape
    runs = [sum(y[k, i] for i in range(n)) / n for k in range(r)]
    imgs = [sum(y[k, i] for k in range(r)) / r for i in range(n)]
    grand = sum(runs) / r
    run_var = sum((m - grand) ** 2 for m in runs) / (r - 1)
    sse = sum((y[k, i] - runs[k] - imgs[i] + grand) ** 2 for k in range(r) for i in range(n))
    return grand, run_var, sse / ((r - 1) * (n - 1)), np.array(imgs)


def test_variance_decomposition_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    ya, yb = _scores(rng, 3, 40), _scores(rng, 4, 40, 0.05)
    ga, va, ea, ia = _brute_moments(ya)
    gb, vb, eb, ib = _brute_moments(yb)
    for y, (g, v, e, _) in ((ya, (ga, va, ea, ia)), (yb, (gb, vb, eb, ib))):
        m = sl.moments(y)
        assert m["mean"] == pytest.approx(g) and m["run_var"] == pytest.approx(v)
        assert m["mse"] == pytest.approx(e)
    n = 40
    d = ib - ia
    s_d = sum((x - d.mean()) ** 2 for x in d) / (n - 1)
    image = s_d - ea / 3 - eb / 4
    seed = va / 3 + vb / 4
    v = seed + max(0.0, image) / n
    df_seed = (1 / 3 + 1 / 4) ** 2 / (1 / (9 * 2) + 1 / (16 * 3))
    terms = [(seed, df_seed)]
    if image > 0:
        terms += [(s_d / n, n - 1), (-ea / (3 * n), 2 * (n - 1)), (-eb / (4 * n), 3 * (n - 1))]
    df = v**2 / sum(t**2 / k for t, k in terms)
    res = sl.difference_arrays(ya, yb)
    assert float(res["var"]) == pytest.approx(1e4 * v)
    assert float(res["df"]) == pytest.approx(df)
    tau = max(0.0, va - ea / n) / 3 + max(0.0, vb - eb / n) / 4
    assert float(res["seed_var"]) == pytest.approx(1e4 * tau)
    out = sl.configuration_difference(ya, yb)
    assert out.seed_share + out.image_share == pytest.approx(1.0)
    assert out.seed_share == pytest.approx(min(1.0, tau / v))


def test_equal_replicates_without_image_effect_is_students_t_on_run_means():
    # Per-image pattern shared by both configurations, seeds shift whole runs: the
    # image term vanishes and the test is Student's t on run means (equal R: the
    # unpooled standard error equals the pooled one).
    rng = np.random.default_rng(4)
    base = rng.random(60) * 0.5
    ya = base + rng.normal(0, 0.03, (4, 1))
    yb = base + 0.02 + rng.normal(0, 0.03, (4, 1))
    res = sl.configuration_difference(ya, yb)
    ref = stats.ttest_ind(yb.mean(axis=1), ya.mean(axis=1), equal_var=True)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.df == pytest.approx(6.0)
    assert res.seed_share == pytest.approx(1.0)


def test_single_runs_are_a_paired_t_test_about_the_networks():
    rng = np.random.default_rng(5)
    xa, xb = rng.random(200) < 0.6, rng.random(200) < 0.65
    res = sl.configuration_difference(xa.astype(float), xb.astype(float))
    ref = stats.ttest_rel(xb.astype(float), xa.astype(float))
    assert res.scope == sl.NETWORKS and res.replicates == (1, 1) and res.df == 199
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.estimate == pytest.approx(100 * (xb.mean() - xa.mean()))
    # One side replicated, the other not: still only about networks unless the
    # baseline's seed variance is borrowed, which says so.
    assert sl.configuration_difference(np.stack([xa, xa[::-1]]), xb.astype(float)).scope == sl.NETWORKS
    borrowed = sl.configuration_difference(
        np.stack([xa, xa[::-1], xb]).astype(float), xb[::-1].astype(float), seed_variance="baseline"
    )
    assert borrowed.scope == sl.BORROWED and borrowed.replicates == (3, 1)


def test_vectorised_arrays_match_one_at_a_time():
    sim = simulate.simulate(np.random.default_rng(6), simulate.SEED_DOMINATED, [0.0, 0.1], 3, studies=4)
    sc = simulate.scores(sim)
    for stat, kind in (("corruption_acc", sl.DIFF), ("error_sum", sl.RATIO)):
        y = sc[stat]
        res = sl.difference_arrays(y[:, 0], y[:, 1], kind)
        for j in range(4):
            one = sl.configuration_difference(y[j, 0], y[j, 1], kind)
            centre = math.log1p(one.estimate / 100) if kind == sl.RATIO else one.estimate
            assert centre == pytest.approx(float(res["estimate"][j]))
            assert one.se**2 == pytest.approx(float(res["var"][j]))
            assert one.df == pytest.approx(float(res["df"][j]))


def test_variance_estimate_is_unbiased_for_the_spread_of_the_estimate():
    # E[V] against the empirical variance of the estimate over 600 simulated studies
    # (3 seeds per side; relative sd of a variance estimate over 600: ~6%).
    for regime in simulate.REGIMES:
        sim = simulate.simulate(np.random.default_rng(7), regime, [0.0, 0.0], 3, studies=600)
        y = simulate.scores(sim)["corruption_acc"]
        res = sl.difference_arrays(y[:, 0], y[:, 1])
        ratio = float(np.mean(res["var"]) / np.var(res["estimate"], ddof=1))
        assert 0.85 < ratio < 1.2, (regime.name, ratio)


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.zeros((2, 5)), np.zeros((2, 6))), "A has 5 images per run, B 6"),
        ((np.zeros((2, 5)), np.full((2, 5), np.nan)), "non-finite"),
        ((np.zeros((2, 1)), np.zeros((2, 1))), "n >= 2"),
    ],
)
def test_bad_input_is_one_line(args, message):
    with pytest.raises(ValueError, match=message) as err:
        sl.configuration_difference(*args)
    assert "\n" not in str(err.value)


def test_bad_options_name_themselves():
    y = np.full((2, 5), 0.5)
    with pytest.raises(ValueError, match="kind must be"):
        sl.configuration_difference(y, y + 0.1, "odds")
    with pytest.raises(ValueError, match="seed_variance='baseline' needs"):
        sl.configuration_difference(y, y + 0.1, seed_variance="baseline")
    with pytest.raises(ValueError, match="confidence must be in"):
        sl.configuration_difference(y, y, confidence=95)
    with pytest.raises(ValueError, match="positive mean summed errors"):
        sl.configuration_difference(np.zeros((2, 5)), y, sl.RATIO)
