"""The outcome simulator (study.analysis.simulate): real shapes, known truth, the two regimes."""

import numpy as np
import pytest

from study.analysis import paired, simulate
from study.analysis.outcomes import Outcomes, summarize
from study.metrics import BENCHMARK_CORRUPTIONS, SEVERITIES


def test_runs_have_the_real_outcome_shape_and_paired_reads_them():
    sim = simulate.simulate(np.random.default_rng(0), simulate.SEED_DOMINATED, [0.0, 0.3], 2)
    assert sim.clean.shape == (1, 2, 2, 500) and sim.corrupted.shape == (1, 2, 2, 15, 5, 100)
    fp = {"test": {"n": 500, "corruption_limit": 100}}
    runs = [Outcomes(simulate.to_outcomes(sim, 0, k, 0), fp) for k in range(2)]
    keys = runs[0].keys("test")
    assert len(keys) == 1 + len(BENCHMARK_CORRUPTIONS) * len(SEVERITIES)
    sc = simulate.scores(sim)
    # The simulator's per-image scores are the ones paired.py reduces outcomes to.
    got = summarize(runs[1], "test")
    assert got["test/clean_acc"] == pytest.approx(100 * sc["clean_acc"][0, 1, 0].mean())
    assert got["test/corruption_acc"] == pytest.approx(100 * sc["corruption_acc"][0, 1, 0].mean())
    diff = paired.compare_runs(
        runs[0], runs[1], statistics=["category/noise", "relative_mce"], n_resamples=9, n_permutations=9
    )
    by = {d.name: d for d in diff}
    noise = sc["category/noise"][0, :, 0]
    assert by["category/noise"].diff == pytest.approx(100 * (noise[1].mean() - noise[0].mean()))
    err = sc["error_sum"][0, :, 0]
    assert by["relative_mce"].b == pytest.approx(100 * err[1].mean() / err[0].mean())


def test_truth_matches_a_large_monte_carlo():
    # Gauss-Hermite truth against the mean of 40 studies x 10 seeds (sd of the mean
    # of a statistic < 0.3 points here).
    for regime in simulate.REGIMES:
        shifts, scales = [0.0, 0.4], [1.0, 2.0]
        tr = simulate.truth(regime, shifts, [0.0, -0.3], scales)
        sim = simulate.simulate(
            np.random.default_rng(1),
            regime,
            shifts,
            10,
            studies=40,
            clean_shift=[0.0, -0.3],
            seed_scale=scales,
        )
        sc = simulate.scores(sim)
        for stat in ("clean_acc", "corruption_acc", "category/noise"):
            got = 100 * sc[stat].mean(axis=(0, 2, 3))
            np.testing.assert_allclose(got, tr[stat], atol=0.8, err_msg=f"{regime.name} {stat}")
        np.testing.assert_allclose(sc["error_sum"].mean(axis=(0, 2, 3)), tr["error_sum"], rtol=0.02)


def test_regimes_match_real_seed_spread_and_differ_in_what_dominates():
    # Between-seed sd of the CIFAR-10-C mean in real width-16 runs: 1-2.7 points.
    for regime in simulate.REGIMES:
        sim = simulate.simulate(np.random.default_rng(2), regime, [0.0], 10, studies=30)
        y = simulate.scores(sim)["corruption_acc"][:, 0]  # (M, R, n)
        sd = float(np.sqrt(np.mean(np.var(100 * y.mean(axis=-1), axis=-1, ddof=1))))
        assert 1.0 <= sd <= 2.7, (regime.name, sd)
        # Image noise in a run's mean: the seed-by-image residual's share of it.
        resid = (
            y
            - y.mean(axis=-1, keepdims=True)
            - y.mean(axis=-2, keepdims=True)
            + y.mean((-2, -1), keepdims=True)
        )
        image_var = float(np.mean(np.sum(resid**2, axis=(-2, -1)) / (9 * 99))) / 100 * 1e4
        share = image_var / sd**2
        if regime is simulate.SEED_DOMINATED:
            assert share < 0.3, share
        else:
            assert share > 0.7, share


def test_shift_for_gain_gives_the_asked_gain():
    s = simulate.shift_for_gain(simulate.IMAGE_DOMINATED, 3.0)
    tr = simulate.truth(simulate.IMAGE_DOMINATED, [0.0, s])
    assert tr["corruption_acc"][1] - tr["corruption_acc"][0] == pytest.approx(3.0, abs=1e-6)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="shift must be"):
        simulate.truth(simulate.SEED_DOMINATED, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="seed_scale must be"):
        simulate.truth(simulate.SEED_DOMINATED, [0.0], seed_scale=[-1.0])
    with pytest.raises(ValueError, match="replicates and studies"):
        simulate.simulate(np.random.default_rng(0), simulate.SEED_DOMINATED, [0.0], 0)


def test_network_truth_is_the_mean_over_fresh_images_of_fixed_networks():
    regime = simulate.SEED_DOMINATED
    sim = simulate.simulate(np.random.default_rng(3), regime, [0.0, 0.2], 2, studies=2)
    net = simulate.network_truth(regime, sim, [0.0, 0.2])
    assert net["corruption_acc"].shape == (2, 2, 2)
    # Averaging the networks' truths over many seeds gives the configuration truth.
    many = simulate.simulate(np.random.default_rng(4), regime, [0.0, 0.2], 400, studies=1)
    avg = simulate.network_truth(regime, many, [0.0, 0.2])["corruption_acc"].mean(axis=(0, 2))
    np.testing.assert_allclose(avg, simulate.truth(regime, [0.0, 0.2])["corruption_acc"], atol=0.4)
    # A network with a better seed effect is better.
    a = many.seed_effect[0, 0]
    acc = simulate.network_truth(regime, many, [0.0, 0.2])["corruption_acc"][0, 0]
    assert np.corrcoef(a, acc)[0, 1] > 0.5
