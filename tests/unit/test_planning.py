"""The seed planner (study.analysis.planning) against simulated studies with a known effect."""

import numpy as np
import pytest
from scipy import stats

from study.analysis import planning, seedlevel, simulate


def _pilot(regime, rng, configurations=20, seeds=10):
    sim = simulate.simulate(rng, regime, np.zeros(configurations), seeds)
    sc = simulate.scores(sim)["corruption_acc"][0]  # (K, R, n)
    return planning.components(list(sc))


def test_power_is_monotone_and_the_recommendation_is_the_smallest():
    c = planning.Components(run_var=4.0, image_var=25.0, n_images=100, df=50)
    level = planning.family_level(0.05, 10)
    powers = [planning.power(c, 3.0, r, level) for r in range(2, 30)]
    assert all(b >= a for a, b in zip(powers, powers[1:]))
    r = planning.seeds_for(c, 3.0, level)
    assert planning.power(c, 3.0, r, level) >= 0.8 > planning.power(c, 3.0, r - 1, level)
    # An image term alone too large for the effect: seeds cannot reach the power.
    assert planning.seeds_for(planning.Components(1.0, 1e4, 100, 50), 1.0, level) is None
    with pytest.raises(ValueError, match="effect"):
        planning.plan("corruption_acc", c, 0.0, configurations=10, used=3)


@pytest.mark.parametrize("regime", simulate.REGIMES, ids=lambda r: r.name)
def test_simulated_power_at_the_recommended_seeds_is_80_percent(regime):
    """Components from a pilot study; the effect that needs 4 seeds at the family-wise
    level of 10 configurations; 400 fresh simulated studies at the recommended seeds
    reject H0 in 80% +- 5 points of them (Monte-Carlo sd 2 points)."""
    rng = np.random.default_rng(11)
    c = _pilot(regime, rng)
    level = planning.family_level(0.05, 10)
    effect = planning.detectable_effect(c, 4, level)
    p = planning.plan("corruption_acc", c, effect * 1.0001, configurations=10, used=3)
    assert p.recommended == 4
    assert p.power_at_used < 0.8
    shift = simulate.shift_for_gain(regime, effect)
    sim = simulate.simulate(rng, regime, [0.0, shift], p.recommended, studies=400)
    y = simulate.scores(sim)["corruption_acc"]
    res = seedlevel.difference_arrays(y[:, 0], y[:, 1])
    pval = 2 * stats.t.sf(np.abs(res["estimate"]) / np.sqrt(res["var"]), res["df"])
    simulated = float(np.mean(pval < level))
    if regime is simulate.SEED_DOMINATED:
        assert abs(simulated - 0.8) <= 0.05, (simulated, effect, c)
    else:
        # Image-dominated, the planner is conservative (88.5% measured at this seed): the
        # interval's Satterthwaite df with the MSE terms exceeds the planner's two-term df.
        assert 0.75 <= simulated <= 0.95, (simulated, effect, c)
