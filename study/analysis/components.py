"""A study's measured variance components, and a simulator regime that shows the same ones.

Pure (numpy and scipy). ``freqstudy plan`` and ``freqstudy simulate`` reduce each
objective of a replicated study to per-image scores with the statistic table
(:mod:`study.analysis.statistics`; one ``(R_k, n)`` array per configuration, the same n
source images everywhere) and :func:`measure` gives, in points squared:

- ``s^2`` (``run_var``), the between-seed variance of a run's mean score, pooled over
  the configurations with >= 2 seeds, and ``w`` (``image_var``), the configuration x
  image variance of a per-image difference against the baseline, pooled over the
  configurations: :func:`study.analysis.planning.components`, what the planner uses;
- ``MSE`` (``residual_var``), the seed x image residual mean square of the crossed
  layout (:func:`study.analysis.seedlevel.moments`), pooled the same way: the per-image
  noise inside ``s^2`` (``s^2 = tau^2 + MSE / n``).

:func:`fit_regime` finds the :class:`study.analysis.simulate.Regime` (logit scale)
whose simulated studies show a study's components on ``clean_acc`` and
``corruption_acc``: the seed spreads ``seed_sd`` and ``seed_corruption_sd``, the
per-image seed quirk ``quirk_sd`` and the configuration x image spread
``config_image_sd`` are fitted to the six measured components (s^2, MSE, w of both),
each weighed by its relative error, by damped Gauss-Newton steps on the four variances
with non-negative least squares (:func:`scipy.optimize.nnls`); the Jacobian is from
finite differences of simulated components with common random numbers, so the map
being fitted is deterministic. The accuracy levels are matched by the clean logit
offset and a corruption offset (:class:`FittedRegime`); image difficulty
(``image_sd``, ``image_corruption_sd``) keeps the simulator's values and the image
counts are the study's. With six components and four spreads the fit is least squares,
not exact: :func:`simulated_components` of the result is what a caller shows beside
the measurement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize

from study.analysis import planning, simulate
from study.analysis.seedlevel import moments

# The two statistics the simulator (and the search harness) knows.
SIMULATED = ("clean_acc", "corruption_acc")


@dataclass(frozen=True)
class Measured:
    """One statistic's variance components in a study.

    Attributes:
        statistic: the statistic's name (``clean_acc``, ``corruption_acc``, ...).
        components: ``s^2`` and ``w`` (points squared), n and the df behind ``s^2``.
        residual_var: ``MSE``, points squared per image (NaN with no configuration of >= 2 seeds).
        level: mean score over configurations, percent.
        seeds: ``(K,)`` seeds of each configuration, baseline first.
    """

    statistic: str
    components: planning.Components
    residual_var: float
    level: float
    seeds: tuple[int, ...]

    @property
    def seed_var(self) -> float:
        """``tau^2 = s^2 - MSE / n`` (points squared, floored at 0): the seed variance of a
        run's expected score, the part of ``s^2`` that is not image noise."""
        return max(0.0, self.components.run_var - self.residual_var / self.components.n_images)


def measure(scores: Sequence[np.ndarray], statistic: str, baseline: int = 0) -> Measured:
    """Components of one statistic from per-image scores.

    Args:
        scores: ``(R_k, n)`` per configuration (scores in [0, 1]); those with R_k < 2
            add nothing to ``s^2`` and ``MSE``.
        statistic: its name, carried along.
        baseline: index of the baseline in ``scores`` (``w`` is measured against it).

    Raises:
        ValueError: no configuration has 2 seeds, or the images differ in number.
    """
    ys = [np.atleast_2d(np.asarray(y, dtype=np.float64)) for y in scores]
    comp = planning.components(ys, baseline=baseline)
    multi = [y for y in ys if y.shape[0] >= 2]
    weights = np.array([(y.shape[0] - 1) * (y.shape[1] - 1) for y in multi], dtype=np.float64)
    mse = np.array([float(moments(y)["mse"]) for y in multi])
    residual = float(1e4 * np.sum(weights * mse) / weights.sum()) if weights.sum() > 0 else math.nan
    level = 100.0 * float(np.mean([y.mean() for y in ys]))
    return Measured(statistic, comp, residual, level, tuple(int(y.shape[0]) for y in ys))


@dataclass(frozen=True)
class FittedRegime(simulate.Regime):
    """A :class:`~study.analysis.simulate.Regime` whose corruption logits are shifted by
    ``corruption_offset`` (so the corrupted accuracy level can match a study's)."""

    corruption_offset: float = 0.0

    def corruption_base(self) -> np.ndarray:
        return super().corruption_base() + self.corruption_offset


# Logit spreads beyond this are not a model of a trained network (the accuracy would be a
# coin flip per seed); the fit stops there.
MAX_SPREAD = 5.0
_SPREADS = ("seed_sd", "seed_corruption_sd", "quirk_sd", "config_image_sd")


def simulated_components(
    regime: simulate.Regime,
    *,
    configurations: int = 20,
    seeds: int = 6,
    studies: int = 10,
    seed: int = 0,
) -> dict[str, Measured]:
    """What :func:`measure` gives, averaged over ``studies`` simulated studies of
    ``configurations`` equal configurations x ``seeds`` seeds (``rng`` from ``seed``:
    the same draws for every regime, common random numbers)."""
    rng = np.random.default_rng(seed)
    sim = simulate.simulate(rng, regime, np.zeros(configurations), seeds, studies=studies)
    sc = simulate.scores(sim)
    out = {}
    for stat in SIMULATED:
        per = [measure(list(sc[stat][m]), stat) for m in range(studies)]
        c = per[0].components
        out[stat] = Measured(
            stat,
            planning.Components(
                float(np.mean([p.components.run_var for p in per])),
                float(np.mean([p.components.image_var for p in per])),
                c.n_images,
                sum(p.components.df for p in per),
            ),
            float(np.mean([p.residual_var for p in per])),
            float(np.mean([p.level for p in per])),
            per[0].seeds,
        )
    return out


def _vector(m: Mapping[str, Measured]) -> np.ndarray:
    """The six fitted components: s^2, MSE, w of clean_acc then corruption_acc."""
    return np.array(
        [
            v
            for s in SIMULATED
            for v in (m[s].components.run_var, m[s].residual_var, m[s].components.image_var)
        ]
    )


def _root(f, low: float = -30.0, high: float = 30.0) -> float:
    """The root of an increasing ``f`` in [low, high], or the end nearer one (a level that
    the spreads cannot reach: with large ones the expected accuracy is squeezed toward 50%)."""
    fl, fh = f(low), f(high)
    if fl >= 0 or fh <= 0:
        return low if abs(fl) <= abs(fh) else high
    return float(optimize.brentq(f, low, high, xtol=1e-6))


def _with_levels(regime: FittedRegime, levels: Mapping[str, float]) -> FittedRegime:
    """``regime`` with the clean offset and the corruption offset that give ``levels``
    (percent) as expected accuracies of an unshifted configuration."""

    def at(field: str, value: float, stat: str) -> float:
        if field == "base_clean":
            moved = replace(regime, base_clean=value)
        else:
            moved = replace(regime, corruption_offset=value)
        return float(simulate.truth(moved, [0.0])[stat][0]) - levels[stat]

    clean = _root(lambda b: at("base_clean", b, "clean_acc"))
    offset = _root(lambda o: at("corruption_offset", o, "corruption_acc"))
    return replace(regime, base_clean=clean, corruption_offset=offset)


def fit_regime(
    measured: Mapping[str, Measured],
    *,
    name: str = "fitted",
    iterations: int = 4,
    configurations: int = 20,
    seeds: int = 6,
    studies: int = 10,
    seed: int = 0,
) -> FittedRegime:
    """The regime whose simulated components come closest to ``measured``.

    Args:
        measured: ``clean_acc`` and ``corruption_acc`` of a study (:func:`measure`).
        name: the regime's label.
        iterations: Gauss-Newton steps (each costs five simulated measurements).
        configurations, seeds, studies, seed: of each simulated measurement
            (:func:`simulated_components`).

    Raises:
        ValueError: a statistic is missing, has no residual (no configuration with 2
            seeds), or levels out of (0, 100).
    """
    missing = [s for s in SIMULATED if s not in measured]
    if missing:
        raise ValueError(f"components: the fit needs {', '.join(SIMULATED)}; missing {', '.join(missing)}")
    for s in SIMULATED:
        m = measured[s]
        if not math.isfinite(m.residual_var) or not 0.0 < m.level < 100.0:
            raise ValueError(f"components: {s} has no residual variance or a level outside (0, 100)")
    n_clean = measured["clean_acc"].components.n_images
    n_cor = measured["corruption_acc"].components.n_images
    if n_cor > n_clean:
        raise ValueError(f"components: {n_cor} corrupted images per key but only {n_clean} clean ones")
    target = _vector(measured)
    # Relative errors; an image term near 0 is weighed against the residual it hides in.
    scale = target.copy()
    scale[2::3] = np.maximum(target[2::3], 0.05 * target[1::3])
    scale = np.maximum(scale, 1e-6)
    levels = {s: measured[s].level for s in SIMULATED}
    start = simulate.SEED_DOMINATED
    base = FittedRegime(
        name,
        **{f: getattr(start, f) for f in ("image_sd", "image_corruption_sd")},
        config_image_sd=0.3,
        seed_sd=0.1,
        seed_corruption_sd=0.1,
        quirk_sd=0.5,
        n_clean=n_clean,
        n_corrupted=n_cor,
    )

    def regime_of(theta: np.ndarray) -> FittedRegime:
        spreads = dict(zip(_SPREADS, np.sqrt(np.maximum(theta, 0.0)).tolist()))
        return _with_levels(replace(base, **spreads), levels)

    def components_of(theta: np.ndarray) -> np.ndarray:
        kw = {"configurations": configurations, "seeds": seeds, "studies": studies, "seed": seed}
        return _vector(simulated_components(regime_of(theta), **kw))

    theta = np.array([getattr(base, f) ** 2 for f in _SPREADS])
    value = components_of(theta)
    best = (float(np.sum(((value - target) / scale) ** 2)), theta)
    for _ in range(iterations):
        steps = np.maximum(0.3 * theta, 0.003)
        jac = np.stack(
            [(components_of(theta + np.eye(4)[j] * steps[j]) - value) / steps[j] for j in range(4)], axis=1
        )
        a = jac / scale[:, None]
        b = (target - value + jac @ theta) / scale
        proposal, _ = optimize.nnls(a, b)
        # Damped: at most a 4-fold change of a variance per step (the map bends where expit does).
        proposal = np.clip(proposal, theta / 4.0, np.minimum(4.0 * theta + 0.01, MAX_SPREAD**2))
        theta = proposal
        value = components_of(theta)
        loss = float(np.sum(((value - target) / scale) ** 2))
        if loss < best[0]:
            best = (loss, theta)
    return regime_of(best[1])
