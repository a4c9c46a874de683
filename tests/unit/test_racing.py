"""The racer (study.search.racing) and its harness (study.search.harness).

The evidence a racer keeps (running sums) gives the same moments and intervals as
the score arrays (brute force against study.analysis.seedlevel); its decisions on
clear cases are the ones the rule names; and on simulated studies through a real
Optuna study, racing finds the true front more often than 3 fixed seeds with fewer
trainings than 8.
"""

import numpy as np
import pytest

from study.analysis import seedlevel, simulate
from study.search import harness as H
from study.search import racing as rc


def _scores(rng, means, seeds, n=60, seed_sd=0.05):
    """Per-image scores in [0, 1]: ``means[k][j]`` + seed effect + image noise."""
    out = []
    for k, mk in enumerate(means):
        row = []
        for mu in mk:
            a = seed_sd * rng.standard_normal((seeds[k], 1))
            row.append(np.clip(mu + a + 0.2 * rng.standard_normal((seeds[k], n)), 0, 1))
        out.append(row)
    return out


def test_evidence_from_sums_matches_moments_and_seedlevel():
    rng = np.random.default_rng(0)
    sc = _scores(rng, [[0.6, 0.5], [0.62, 0.47], [0.55, 0.55]], [2, 5, 3])
    ev = rc.Evidence.from_scores(sc)
    for k in range(3):
        for j in range(2):
            m = seedlevel.moments(sc[k][j])
            assert ev.mean[j, k] == pytest.approx(float(m["mean"]))
            assert ev.run_var[j, k] == pytest.approx(float(m["run_var"]))
            assert ev.mse[j, k] == pytest.approx(float(m["mse"]))
            np.testing.assert_allclose(ev.image_means[j][k], m["image_means"])
    est, se, df = rc.pairwise(ev, [1, -1])
    for a, b in [(0, 1), (1, 2), (2, 0)]:
        for j, sign in enumerate([1, -1]):
            ref = seedlevel.difference_arrays(sc[a][j], sc[b][j])
            assert est[j, a, b] == pytest.approx(sign * float(ref["estimate"]))
            assert se[j, a, b] == pytest.approx(float(np.sqrt(ref["var"])))
            assert df[j, a, b] == pytest.approx(float(ref["df"]))


def test_front_of_brute_force():
    rng = np.random.default_rng(1)
    v = rng.integers(0, 4, size=(2, 12)).astype(float)
    want = [
        not any((v[:, o] >= v[:, k]).all() and (v[:, o] > v[:, k]).any() for o in range(12))
        for k in range(12)
    ]
    assert rc.front_of(v).tolist() == want


def test_clear_cases_get_the_named_decisions():
    rng = np.random.default_rng(2)
    # 0 baseline; 1 and 2 a clear trade-off far above it; 3 far below 1; 4 a near-copy of 2.
    means = [[0.50, 0.40], [0.70, 0.55], [0.55, 0.75], [0.40, 0.30], [0.551, 0.749]]
    sc = _scores(rng, means, [6] * 5, n=400, seed_sd=0.01)
    ev = rc.Evidence.from_scores(sc)
    decided = {d.index: d for d in rc.decide(ev, np.ones(5, bool), baseline=0)}
    assert decided[3].action == rc.STOP and decided[3].reason == rc.DOMINATED
    assert decided[3].other in (1, 2)
    assert decided[1].action == rc.STOP and decided[1].reason == rc.SETTLED
    # 2 and 4 cannot be told apart: whichever is on the front has its membership open.
    assert rc.SEED in (decided[2].action, decided[4].action)
    # At max seeds an open race stops there.
    capped = {d.index: d for d in rc.decide(ev, np.ones(5, bool), policy=rc.RacePolicy(2, 6))}
    assert all(capped[i].action == rc.STOP for i in range(5))
    assert rc.MAX_SEEDS in {capped[2].reason, capped[4].reason}
    # A budget of 0 trainings stops every race that wanted a seed, naming the budget.
    broke = rc.decide(ev, np.ones(5, bool), budget_left=0)
    assert all(d.action == rc.STOP for d in broke)
    assert any(d.reason == rc.BUDGET for d in broke)


def test_policy_rejects_bad_settings():
    with pytest.raises(ValueError, match="min_seeds"):
        rc.RacePolicy(1, 8)
    with pytest.raises(ValueError, match="min_seeds"):
        rc.RacePolicy(4, 3)
    with pytest.raises(ValueError, match="confidence"):
        rc.RacePolicy(confidence=1.0)


def test_optuna_is_told_each_configurations_means():
    rng = np.random.default_rng(3)
    problem = H.draw_problem(rng, simulate.SEED_DOMINATED, configurations=8)
    runs = H.draw_runs(rng, simulate.SEED_DOMINATED, problem, 6)
    res = H.run_study(runs, rc.RacePolicy(2, 6), max_concurrent=3)
    assert res.seeds.min() >= 2 and res.seeds.max() <= 6
    for j in range(len(H.OBJECTIVES)):
        for k in range(8):
            r = res.seeds[k]
            assert res.values[k, j] == pytest.approx(100.0 * runs.run_means[j][k, :r].mean())
    assert all(reason in rc.STOP_REASONS for reason in res.reasons)


def test_racing_beats_three_seeds_and_spends_less_than_eight():
    """30 simulated studies (20 configurations, a front of 3-5) through real Optuna
    studies; the measured table (200 studies per regime) is in the README."""
    got = {
        m.policy: m
        for m in H.measure(
            simulate.SEED_DOMINATED,
            [rc.RacePolicy(3, 3), rc.RacePolicy(8, 8), rc.RacePolicy(2, 8)],
            studies=30,
            seed=7,
        )
    }
    race, r3, r8 = got["racing m = 2, M = 8"], got["fixed R = 3"], got["fixed R = 8"]
    assert race.exact_front > r3.exact_front
    assert race.trainings < 0.75 * r8.trainings
