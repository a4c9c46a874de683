"""A study's variance components (study.selection.variance, study.analysis.components)
against simulated studies with a known answer.

The known answer for ``clean_acc`` is exact: for the simulator's logit model
(study.analysis.simulate) with ``theta = base - b + w`` (normal, images and
configuration x image), ``a`` the seed effect and ``q`` the per-image seed quirk,
``g(theta, a) = E_q expit(theta + a + q)``, the between-seed variance of a run's mean
over n images, averaged over image draws, is

    s^2 = Var_a G(a) + (E_a Var_theta g - Var_theta E_a g) / n + E[g (1 - g)] / n,  G(a) = E_theta g,

and the configuration x image variance of a per-image difference of two unshifted
configurations is ``2 E_b Var_w h(base - b + w)`` with ``h(z) = E_{a,q} expit(z + a + q)``
(Gauss-Hermite quadrature in every dimension). For ``corruption_acc`` the reference is
brute force: the variance of run means over 100 seeds on the same images.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import special

from study import metrics as M
from study.analysis import components as C
from study.analysis import simulate
from study.analysis.outcomes import Outcomes
from study.errors import FieldError
from study.selection.variance import measure_study

_X, _W = np.polynomial.hermite.hermgauss(48)
NODES, WEIGHTS = np.sqrt(2.0) * _X, _W / np.sqrt(np.pi)  # E f(Z) = sum WEIGHTS f(NODES), Z ~ N(0, 1)


def _expit_mean(z: np.ndarray, var: float) -> np.ndarray:
    """E expit(z + sqrt(var) Z), elementwise."""
    return special.expit(np.asarray(z)[..., None] + np.sqrt(var) * NODES) @ WEIGHTS


def clean_truth(regime: simulate.Regime) -> tuple[float, float]:
    """Exact ``(s^2, w)`` of clean_acc, points squared, for unshifted configurations."""
    r, n = regime, regime.n_clean
    theta = r.base_clean + np.sqrt(r.image_sd**2 + r.config_image_sd**2) * NODES  # (T,)
    a = r.seed_sd * NODES  # (A,)
    g = _expit_mean(theta[:, None] + a[None, :], r.quirk_sd**2)  # (T, A)
    big_g = WEIGHTS @ g  # (A,) E_theta
    var_a_big_g = WEIGHTS @ big_g**2 - (WEIGHTS @ big_g) ** 2
    var_theta = WEIGHTS @ g**2 - big_g**2  # (A,)
    e_a = g @ WEIGHTS  # (T,)
    var_theta_e_a = WEIGHTS @ e_a**2 - (WEIGHTS @ e_a) ** 2
    bern = WEIGHTS @ (g * (1 - g)) @ WEIGHTS
    s2 = var_a_big_g + (WEIGHTS @ var_theta - var_theta_e_a) / n + bern / n
    z = r.base_clean + r.image_sd * NODES[:, None] + r.config_image_sd * NODES[None, :]  # (b, w)
    h = _expit_mean(z, r.seed_sd**2 + r.quirk_sd**2)
    var_w = h**2 @ WEIGHTS - (h @ WEIGHTS) ** 2  # (b,)
    return 1e4 * float(s2), 1e4 * 2.0 * float(WEIGHTS @ var_w)


def study_records(sim: simulate.Simulated, m: int, split: str = "val", seeds=None):
    """Study ``m`` of ``sim`` as trial records and outcomes, as MLflow would give them:
    configuration 0 the baseline, configuration k's replicates tagged with its id."""
    k_count, r_count = sim.clean.shape[1:3]
    trials, outcomes = [], {}
    for k in range(k_count):
        for r in range(r_count if seeds is None else seeds[k]):
            rid = f"run-{k}-{r}"
            trials.append(
                {
                    "run_id": rid,
                    "status": "FINISHED",
                    "start_time": 1000 * k + r,
                    "tags": {
                        M.TAG_CONFIG_ID: f"config-{k}",
                        M.TAG_REPLICATE: str(r),
                        M.TAG_STATUS: "finished",
                        **({M.TAG_BASELINE: "true"} if k == 0 else {}),
                    },
                    "params": {
                        "frequency.mode": "free" if k == 0 else "fixed",
                        "frequency.perturbation": str(0.0 if k == 0 else 0.01 * k),
                        "train.epochs": "1",
                        "seed": str(r),
                    },
                    "metrics": {M.EPOCHS_COMPLETED: 1.0},
                }
            )
            arrays = simulate.to_outcomes(sim, m, k, r, split)
            outcomes[rid] = Outcomes(
                arrays, {split: {"n": len(arrays[f"{split}/clean"]), "source": "simulated"}}
            )
    return {"study": "synthetic", "parent": None, "trials": trials}, outcomes


def test_reading_a_study_gives_the_components_of_its_scores():
    rng = np.random.default_rng(3)
    sim = simulate.simulate(rng, simulate.SEED_DOMINATED, np.zeros(5), 3)
    runs, outcomes = study_records(sim, 0)
    runs["trials"] = runs["trials"][::-1]  # the baseline is found, not taken as the first run
    got = measure_study(runs, outcomes, ["clean_acc", "corruption_acc"], "val")
    assert got.run_ids[0] == got.baseline == "run-0-0" and got.seeds == (3,) * 5 and got.used == 3
    scores = simulate.scores(sim)
    for stat in ("clean_acc", "corruption_acc"):
        want = C.measure(list(scores[stat][0]), stat)
        g, w = got.measured[stat].components, want.components
        assert (g.n_images, g.df) == (w.n_images, w.df)
        assert (g.run_var, g.image_var) == pytest.approx((w.run_var, w.image_var), rel=1e-12)
        assert got.measured[stat].residual_var == pytest.approx(want.residual_var)


@pytest.mark.parametrize("regime", simulate.REGIMES, ids=lambda r: r.name)
def test_measured_components_match_the_simulators_truth(regime):
    """30 simulated studies of 20 configurations x 3 seeds, each read as a study: the mean
    of the estimates is within 3.5 standard errors (over studies) of the exact clean_acc
    components and of the brute-force corruption_acc seed variance."""
    rng = np.random.default_rng(5)
    studies = 30
    sim = simulate.simulate(rng, regime, np.zeros(20), 3, studies=studies)
    est = {s: [] for s in ("clean_s2", "clean_w", "cor_s2")}
    for m in range(studies):
        runs, outcomes = study_records(sim, m)
        got = measure_study(runs, outcomes, ["clean_acc", "corruption_acc"], "val").measured
        est["clean_s2"].append(got["clean_acc"].components.run_var)
        est["clean_w"].append(got["clean_acc"].components.image_var)
        est["cor_s2"].append(got["corruption_acc"].components.run_var)
    big = simulate.simulate(np.random.default_rng(6), regime, np.zeros(10), 100, studies=2)
    runs_cor = simulate.scores(big)["corruption_acc"].mean(axis=-1)  # (2, 10, 100) run means
    s2_clean, w_clean = clean_truth(regime)
    truth = {
        "clean_s2": s2_clean,
        "clean_w": w_clean,
        "cor_s2": 1e4 * float(runs_cor.var(axis=-1, ddof=1).mean()),
    }
    for key, values in est.items():
        v = np.asarray(values)
        se = v.std(ddof=1) / np.sqrt(len(v))
        print(f"{regime.name} {key}: estimated {v.mean():.3f} +- {se:.3f}, truth {truth[key]:.3f}")
        if key == "clean_w" and regime is simulate.SEED_DOMINATED:
            # w ~ 0 here, and the planner floors each study's estimate at 0 (conservative), so
            # the mean is biased up; what matters is its share of a gain's variance, w / n
            # beside 2 s^2 / R: off by under 5% of s^2.
            assert abs(v.mean() - truth[key]) / regime.n_clean <= 0.05 * s2_clean, (key, v.mean(), truth[key])
            continue
        assert abs(v.mean() - truth[key]) <= 3.5 * se + 0.02 * truth[key], (key, v.mean(), truth[key], se)
    if regime is simulate.IMAGE_DOMINATED:  # teeth: the configuration x image term is real here
        assert np.mean(est["clean_w"]) > 5 * np.std(est["clean_w"], ddof=1) / np.sqrt(studies)


@pytest.mark.parametrize("regime", simulate.REGIMES, ids=lambda r: r.name)
def test_a_fitted_regime_shows_the_measured_components(regime):
    """Components of a known regime (one set of simulated studies); the regime fitted to
    them, simulated afresh (other draws), shows them again: the seed variance and the
    residual within 20%, the image term within 25% (or too small to matter); the fitted seed
    and per-image spreads are near the known ones where they matter."""
    regime = replace(regime, n_clean=300, n_corrupted=60)
    measured = C.simulated_components(regime, seed=21, studies=20)
    fitted = C.fit_regime(measured)
    again = C.simulated_components(fitted, seed=22, studies=20)
    for stat in C.SIMULATED:
        m, g = measured[stat], again[stat]
        assert g.components.run_var == pytest.approx(m.components.run_var, rel=0.2), stat
        assert g.residual_var == pytest.approx(m.residual_var, rel=0.2), stat
        # The image term within 25%, or too small to matter: its share of a gain's variance
        # (w / n beside 2 s^2 / R) off by under 5% of s^2.
        gap = abs(g.components.image_var - m.components.image_var)
        assert (
            gap <= 0.25 * m.components.image_var or gap / m.components.n_images <= 0.05 * m.components.run_var
        ), (
            stat,
            g.components.image_var,
            m.components.image_var,
        )
        assert g.level == pytest.approx(m.level, abs=2.5)
    assert fitted.n_clean == 300 and fitted.n_corrupted == 60
    if regime.name == "seed-dominated":
        assert fitted.seed_sd == pytest.approx(regime.seed_sd, rel=0.25)
    else:
        assert fitted.quirk_sd == pytest.approx(regime.quirk_sd, rel=0.25)
        assert fitted.config_image_sd == pytest.approx(regime.config_image_sd, rel=0.3)


def test_study_errors_name_what_is_missing():
    rng = np.random.default_rng(8)
    sim = simulate.simulate(rng, simulate.SEED_DOMINATED, np.zeros(3), 2)
    runs, outcomes = study_records(sim, 0, seeds=[1, 1, 1])
    with pytest.raises(FieldError, match="every configuration has one seed") as e:
        measure_study(runs, outcomes, ["clean_acc"], "val")
    assert e.value.field == "study"
    runs, outcomes = study_records(sim, 0)
    with pytest.raises(FieldError, match=r"no finished trial has per-image outcomes \(outcomes.npz\)"):
        measure_study(runs, {}, ["clean_acc"], "val")
    with pytest.raises(FieldError, match="on the test split"):
        measure_study(runs, outcomes, ["clean_acc"], "test")
    with pytest.raises(FieldError, match="val/relative_mce has no per-image accuracy") as e:
        measure_study(runs, outcomes, ["relative_mce"], "val")
    assert e.value.field == "objectives"
    no_base = {**runs, "trials": [t for t in runs["trials"] if t["tags"][M.TAG_CONFIG_ID] != "config-0"]}
    with pytest.raises(FieldError, match="no complete baseline"):
        measure_study(no_base, outcomes, ["clean_acc"], "val")
    with pytest.raises(FieldError, match="no trial runs yet"):
        measure_study({**runs, "trials": []}, outcomes, ["clean_acc"], "val")
    # A baseline with one seed: the image term cannot be measured against it, and says so.
    runs, outcomes = study_records(sim, 0, seeds=[1, 2, 2])
    got = measure_study(runs, outcomes, ["clean_acc"], "val")
    assert got.seeds == (1, 2, 2) and got.used == 2 and got.measured["clean_acc"].components.image_var == 0.0
    assert any("baseline has one seed" in n for n in got.notes)
