"""Calibration of the configuration-level intervals on simulated studies with a known answer.

Monte-Carlo sizes: a coverage near 95% over M = 2000 studies has a binomial sd of
sqrt(0.95 * 0.05 / 2000) = 0.49 points, so the 93-97% band is +-4 sd around a
calibrated 95% (and a null rejection of 5% is 2 sd below the 6% limit); the
seeds are fixed, so the figures are the same on every run. Pure-noise studies
use M = 2000 (sd of a 5% rate: 0.49 points). `pytest -s` prints the tables.
"""

import numpy as np
import pytest

from study.analysis import calibration, simulate

M = 2000


def _check(cells, low=0.93, high=0.97, null=0.06):
    print("\n" + calibration.table(cells))
    for c in cells:
        assert low <= c.coverage <= high, c
        assert c.null_rejection <= null, c


def test_three_seeds_calibrated_in_both_regimes():
    # The headline case (3 seeds: the old two-level bootstrap covered 86.6-87.7%).
    cells = []
    for regime in simulate.REGIMES:
        cells += calibration.calibrate(
            regime, (3,), studies=M, statistics=("corruption_acc", "relative_mce"), seed=22
        )
    _check(cells)


@pytest.mark.slow
@pytest.mark.parametrize("regime", simulate.REGIMES, ids=lambda r: r.name)
def test_calibration_table(regime):
    # R = 2, 3, 5, 10 x clean, CIFAR-10-C mean, the noise category, relative mCE.
    _check(calibration.calibrate(regime, (2, 3, 5, 10), studies=M, seed=1))


@pytest.mark.slow
def test_unequal_seed_variance_stays_close():
    # A configuration with twice the seed sd (4x the variance) of the baseline, R = 2
    # and 3: the equal-variance df is then slightly liberal (normal theory: 94.0% at
    # R = 2). Documents the price of that df (docs/method.md §8), with its own bounds.
    cells = calibration.calibrate(
        simulate.SEED_DOMINATED, (2, 3), studies=M, seed_scale=2.0, statistics=("corruption_acc",), seed=3
    )
    _check(cells, low=0.92, null=0.075)


@pytest.mark.slow
@pytest.mark.parametrize("regime", simulate.REGIMES, ids=lambda r: r.name)
def test_pure_noise_studies_control_family_wise_error_and_champions(regime):
    res = calibration.noise_study(regime, configs=10, replicates=3, studies=M, seed=4)
    print(f"\n{res}")
    assert res.any_primary <= 0.05, res
    assert res.crowned <= 0.05, res
    # Without adjustment the problem the issue measured is there (teeth of this test).
    assert res.any_unadjusted > 0.3, res


@pytest.mark.slow
def test_power_of_a_3_point_effect_at_5_seeds_image_dominated():
    shift = simulate.shift_for_gain(simulate.IMAGE_DOMINATED, 3.0)
    (cell,) = calibration.calibrate(
        simulate.IMAGE_DOMINATED, (5,), studies=1000, shift=shift, statistics=("corruption_acc",), seed=5
    )
    print(f"\npower of +3 points, R = 5, image-dominated: {100 * cell.power:.1f}% ({cell})")
    assert 0.93 <= cell.coverage <= 0.97
    # Reported; the bound only catches an interval that became far too wide.
    assert cell.power > 0.35, cell


@pytest.mark.slow
def test_borrowed_baseline_seed_variance_holds_only_under_its_assumption():
    holds = [
        calibration.calibrate_borrowed(regime, 5, studies=M, seed=6, statistic=stat)
        for regime in simulate.REGIMES
        for stat in ("corruption_acc", "relative_mce")
    ]
    _check(holds)
    # The configuration doubles the seed sd: the borrowed variance is too small.
    fails = calibration.calibrate_borrowed(simulate.SEED_DOMINATED, 5, studies=M, seed_scale=2.0, seed=7)
    print(calibration.table([fails]))
    assert fails.coverage < 0.9 and fails.null_rejection > 0.1, fails


def test_calibrate_is_deterministic_in_its_seed():
    a = calibration.calibrate(simulate.SEED_DOMINATED, (2,), studies=20, statistics=("clean_acc",), seed=9)
    b = calibration.calibrate(simulate.SEED_DOMINATED, (2,), studies=20, statistics=("clean_acc",), seed=9)
    assert a == b
    assert np.isfinite(a[0].mean_seed_share)


def test_single_runs_are_calibrated_about_networks_not_configurations():
    # R = 1, two runs of the same configuration: the interval covers the two
    # networks' difference over images, but read as a configuration claim it
    # "finds" a difference in about half the comparisons when seeds matter.
    cell, config_coverage = calibration.calibrate_networks(simulate.SEED_DOMINATED, studies=M, seed=8)
    print(f"\n{cell}; covers the configurations' difference (0) in {100 * config_coverage:.1f}%")
    assert 0.93 <= cell.coverage <= 0.97, cell
    assert cell.null_rejection > 0.3 and config_coverage < 0.7, cell


def test_configuration_accuracy_intervals_cover_in_both_regimes():
    # One configuration's own accuracy (logit-scale t interval), R = 2 and 5, 2000 studies.
    # Not among the must-shows (those are differences); the floor on s^2 makes the
    # image-dominated clean level slightly conservative (97.2%), hence 97.5 here.
    from scipy import special, stats

    from study.analysis import seedlevel

    for regime in simulate.REGIMES:
        rng = np.random.default_rng(10)
        truth = simulate.truth(regime, [0.0])
        covered = {(s, r): [] for s in ("clean_acc", "corruption_acc") for r in (2, 5)}
        for _ in range(M // 100):
            sc = simulate.scores(simulate.simulate(rng, regime, [0.0], 5, studies=100))
            for (stat, r), out in covered.items():
                res = seedlevel.level_arrays(sc[stat][:, 0, :r])
                p = res["estimate"] / 100
                se = np.sqrt(res["var"]) / 100 / (p * (1 - p))
                q = stats.t.ppf(0.975, res["df"]) * se
                lo, hi = 100 * special.expit(special.logit(p) - q), 100 * special.expit(special.logit(p) + q)
                out.append((lo <= truth[stat][0]) & (truth[stat][0] <= hi))
        for key, out in covered.items():
            coverage = float(np.mean(np.concatenate(out)))
            print(regime.name, key, f"{100 * coverage:.1f}%")
            assert 0.93 <= coverage <= 0.975, (regime.name, key, coverage)


@pytest.mark.slow
@pytest.mark.parametrize("seed_scale", [1.0, 2.0], ids=["equal-seed-sd", "config-seed-sd-x2"])
def test_unequal_seeds_of_a_racing_study_keep_their_coverage(seed_scale):
    # Racing leaves configurations with unequal seeds: a dominated one stops at 2 while the
    # baseline goes on to 8. Each side's seed variance counts with its own R (no truncation to
    # the smallest R); the df are those of equal seed variances (seedlevel.difference_from_moments).
    # Measured (M = 2000, seed 23): 94.9-98.1% with equal seed sd (seeds dominating and the
    # 2-seed side's one df in the seed term: conservative, ~98%); with B's (and A''s) seed sd
    # doubled 94.3-99.7%, the low end when the 2-seed side is the noisier one. Welch's plug-in
    # df would go the other way (91% at 2 v 8 in normal theory), an equal-variance-exact df to
    # 89-90% when the 2-seed side is the noisier: this df keeps the low end.
    pairs = ((2, 8), (8, 2), (2, 5), (3, 8))
    cells = []
    for regime in simulate.REGIMES:
        cells += calibration.calibrate(
            regime,
            pairs,
            studies=M,
            seed_scale=seed_scale,
            statistics=("corruption_acc", "relative_mce"),
            seed=23,
        )
    if seed_scale == 1.0:
        _check(cells, low=0.93, high=0.985)
    else:
        _check(cells, low=0.93, high=0.998, null=0.06)
