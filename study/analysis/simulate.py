"""Simulated per-image outcomes with a known answer, for calibrating the statistics.

Pure (numpy and scipy only). A simulated study draws source images once and, per
configuration and seed, whether each clean image and each corrupted version
(15 benchmark corruptions x 5 severities of the first ``n_corrupted`` images) is
classified correctly: ``x = u < expit(z)`` with the logit

    z = base[c, s] + shift[k, c] - b[i] - h[i, c] + w[k, i] + a[k, r] + a_c[k, r, c] + q[k, r, i]

- ``b[i]`` image difficulty (shared by every corruption: a hard image is hard
  under all of them, for every model), ``h[i, c]`` image x corruption difficulty;
- ``shift[k, c]`` the configuration's effect, ``w[k, i]`` a configuration x image
  effect (shared by the configuration's seeds: what a configuration is better or
  worse at, image by image);
- ``a[k, r]`` the seed effect on everything, ``a_c[k, r, c]`` per corruption;
- ``q[k, r, i]`` a per-image seed quirk shared by the clean image and all its
  corrupted versions (a network that happens to get image i right does so under
  most corruptions).

The clean logit is ``base_clean + clean_shift[k] - b[i] + w[k, i] + a[k, r] + q[k, r, i]``.
All random parts are normal, so the expected accuracy of a (corruption, severity)
over images and seeds is a one-dimensional Gaussian integral of ``expit``
(:func:`truth`, by Gauss-Hermite quadrature): the truth a 95% interval must cover.

Two regimes from real width-16 CPU runs (between-seed sd of the CIFAR-10-C mean
1-2.7 points; 500 clean test images, 100 per corruption and severity):
:data:`SEED_DOMINATED` (a seed effect of ~2.3 points on the CIFAR-10-C mean,
small per-image quirks) and :data:`IMAGE_DOMINATED` (seed effect ~0.3 points,
large per-image quirks and configuration x image effects: run-to-run sd ~1.3
points, mostly image noise). :func:`to_outcomes` gives the real
``{"test/clean": (N,), "test/<corruption>/<severity>": (L,)}`` shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from study.metrics import BENCHMARK_CORRUPTIONS, CATEGORIES, SEVERITIES

N_CORRUPTIONS = len(BENCHMARK_CORRUPTIONS)
N_SEVERITIES = len(SEVERITIES)

# Corruption difficulty (logit offsets, benchmark order) and the step per severity:
# noise and blur hardest, brightness easiest, roughly as CIFAR-10-C at width 16.
_CORRUPTION_BASE = np.array(
    [-0.9, -0.7, -1.0, 0.2, -0.8, 0.0, -0.1, 0.0, -0.2, 0.3, 1.0, -0.6, 0.4, 0.1, 0.3]
)
_SEVERITY_STEP = -0.3


@dataclass(frozen=True)
class Regime:
    """Standard deviations of the simulator's logit parts (see the module docstring).

    Attributes:
        name: label in tables.
        image_sd, image_corruption_sd: ``b``, ``h``.
        config_image_sd: ``w``.
        seed_sd, seed_corruption_sd: ``a``, ``a_c``.
        quirk_sd: ``q``.
        base_clean: clean logit offset.
        n_clean, n_corrupted: source images, all clean and the first ``n_corrupted`` corrupted.
    """

    name: str
    image_sd: float
    image_corruption_sd: float
    config_image_sd: float
    seed_sd: float
    seed_corruption_sd: float
    quirk_sd: float
    base_clean: float = 1.6
    n_clean: int = 500
    n_corrupted: int = 100

    def corruption_base(self) -> np.ndarray:
        """``(C, S)`` logit offsets of each corruption and severity."""
        return _CORRUPTION_BASE[:, None] + 0.7 + _SEVERITY_STEP * (np.arange(N_SEVERITIES)[None, :] - 2)


SEED_DOMINATED = Regime("seed-dominated", 1.5, 0.8, 0.1, 0.13, 0.12, 0.3)
IMAGE_DOMINATED = Regime("image-dominated", 1.5, 0.8, 0.5, 0.02, 0.03, 1.2)
REGIMES = (SEED_DOMINATED, IMAGE_DOMINATED)

_NODES, _WEIGHTS = np.polynomial.hermite.hermgauss(96)


def _expected_expit(mean: np.ndarray, var: float) -> np.ndarray:
    """``E[expit(mean + sqrt(var) Z)]``, Z standard normal (Gauss-Hermite, 96 nodes)."""
    x = np.asarray(mean, dtype=np.float64)[..., None] + np.sqrt(2.0 * var) * _NODES
    return special.expit(x) @ _WEIGHTS / np.sqrt(np.pi)


def _shifts(shift, clean_shift, seed_scale=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shift = np.asarray(shift, dtype=np.float64)
    if shift.ndim == 1:
        shift = np.repeat(shift[:, None], N_CORRUPTIONS, axis=1)
    if shift.ndim != 2 or shift.shape[1] != N_CORRUPTIONS:
        raise ValueError(f"simulate: shift must be (K,) or (K, {N_CORRUPTIONS}), got {shift.shape}")
    clean = np.zeros(len(shift)) if clean_shift is None else np.asarray(clean_shift, dtype=np.float64)
    if clean.shape != (len(shift),):
        raise ValueError(f"simulate: clean_shift must be ({len(shift)},), got {clean.shape}")
    scale = np.ones(len(shift)) if seed_scale is None else np.asarray(seed_scale, dtype=np.float64)
    if scale.shape != (len(shift),) or np.any(scale < 0):
        raise ValueError(f"simulate: seed_scale must be ({len(shift)},) and >= 0, got {scale}")
    return shift, clean, scale


def truth(regime: Regime, shift, clean_shift=None, seed_scale=None) -> dict[str, np.ndarray]:
    """Expected statistics of each configuration over images and seeds.

    Args:
        shift: ``(K,)`` or ``(K, C)`` logit effect on corrupted images.
        clean_shift: ``(K,)`` logit effect on clean images (default 0).
        seed_scale: ``(K,)`` factor on each configuration's seed parts ``a``,
            ``a_c``, ``q`` (default 1: a configuration that changes seed variance).

    Returns:
        ``{"clean_acc", "corruption_acc", "category/<cat>": (K,) percent,
        "error_sum": (K,) expected summed error over benchmark corruptions}``
        (relative mCE of B against A is ``100 * error_sum[B] / error_sum[A]``).
    """
    shift, clean, scale = _shifts(shift, clean_shift, seed_scale)
    r = regime
    seed = scale**2 * (r.seed_sd**2 + r.quirk_sd**2)  # (K,)
    v_clean = r.image_sd**2 + r.config_image_sd**2 + seed
    v_cor = v_clean + r.image_corruption_sd**2 + scale**2 * r.seed_corruption_sd**2
    acc = np.stack(
        [_expected_expit(r.corruption_base() + shift[k, :, None], v_cor[k]) for k in range(len(shift))]
    )
    per_c = acc.mean(axis=2)
    out = {
        "clean_acc": 100.0 * np.array([_expected_expit(r.base_clean + c, v) for c, v in zip(clean, v_clean)]),
        "corruption_acc": 100.0 * per_c.mean(axis=1),
        "error_sum": (1.0 - per_c).sum(axis=1),
    }
    for cat, members in CATEGORIES.items():
        idx = [BENCHMARK_CORRUPTIONS.index(m) for m in members]
        out[f"category/{cat}"] = 100.0 * per_c[:, idx].mean(axis=1)
    return out


@dataclass(frozen=True)
class Simulated:
    """Simulated outcomes of ``M`` studies of ``K`` configurations x ``R`` seeds.

    Attributes:
        clean: ``(M, K, R, n_clean)`` bool.
        corrupted: ``(M, K, R, C, S, n_corrupted)`` bool, benchmark order,
            severities 1-5; image ``i`` is the corrupted version of clean image ``i``.
        seed_effect: ``(M, K, R)`` each network's ``a`` (logit).
        seed_corruption_effect: ``(M, K, R, C)`` each network's ``a_c`` (logit).
    """

    clean: np.ndarray
    corrupted: np.ndarray
    seed_effect: np.ndarray
    seed_corruption_effect: np.ndarray


@dataclass(frozen=True)
class Images:
    """One validation set's image effects, to hold fixed across simulated studies.

    Attributes:
        difficulty: ``(n_clean,)`` ``b``.
        corruption_difficulty: ``(C, n_corrupted)`` ``h``.
    """

    difficulty: np.ndarray
    corruption_difficulty: np.ndarray


def draw_images(rng: np.random.Generator, regime: Regime) -> Images:
    """A validation set's ``b`` and ``h`` (what a study that reuses the images shares)."""
    return Images(
        regime.image_sd * rng.standard_normal(regime.n_clean),
        regime.image_corruption_sd * rng.standard_normal((N_CORRUPTIONS, regime.n_corrupted)),
    )


def simulate(
    rng: np.random.Generator,
    regime: Regime,
    shift,
    replicates: int,
    *,
    studies: int = 1,
    clean_shift=None,
    seed_scale=None,
    images: Images | None = None,
) -> Simulated:
    """Draw ``studies`` independent studies (fresh images, configuration x image
    effects and seeds each) of the ``K`` configurations that ``shift`` describes.

    Args:
        rng: the only source of randomness.
        shift, clean_shift, seed_scale: as :func:`truth`.
        replicates: seeds per configuration, R >= 1.
        studies: M.
        images: hold these image effects in every study (a later study on the
            same validation images; configuration x image effects and seeds are
            still fresh); default fresh images per study.
    """
    shift, clean, scale = _shifts(shift, clean_shift, seed_scale)
    if replicates < 1 or studies < 1:
        raise ValueError(f"simulate: replicates and studies must be >= 1, got {replicates}, {studies}")
    r, k, m = regime, len(shift), studies
    n, ell, c = regime.n_clean, regime.n_corrupted, N_CORRUPTIONS
    f32 = np.float32
    if images is None:
        b = (r.image_sd * rng.standard_normal((m, 1, 1, n))).astype(f32)
        h = (r.image_corruption_sd * rng.standard_normal((m, 1, 1, c, 1, ell))).astype(f32)
    else:
        if images.difficulty.shape != (n,) or images.corruption_difficulty.shape != (c, ell):
            raise ValueError(f"simulate: images must be ({n},) and ({c}, {ell}) for regime {regime.name}")
        b = np.asarray(images.difficulty, dtype=f32)[None, None, None, :]
        h = np.asarray(images.corruption_difficulty, dtype=f32)[None, None, None, :, None, :]
    w = (r.config_image_sd * rng.standard_normal((m, k, 1, n))).astype(f32)
    sc = scale.astype(f32)[None, :, None, None]
    a = (r.seed_sd * rng.standard_normal((m, k, replicates, 1))).astype(f32)
    a_c = (r.seed_corruption_sd * rng.standard_normal((m, k, replicates, c, 1, 1))).astype(f32)
    q = (r.quirk_sd * rng.standard_normal((m, k, replicates, n))).astype(f32)
    a, q = sc * a, sc * q
    a_c = sc[..., None, None] * a_c
    common = -b + w + a + q  # (M, K, R, n): what the clean image and its corrupted versions share
    z_clean = common + (r.base_clean + clean).astype(f32)[None, :, None, None]
    x_clean = rng.random(z_clean.shape, dtype=f32) < special.expit(z_clean)
    base = (r.corruption_base()[None] + shift[:, :, None]).astype(f32)  # (K, C, S)
    z = common[:, :, :, None, None, :ell] - h + a_c + base[None, :, None, :, :, None]
    x = rng.random(z.shape, dtype=f32) < special.expit(z)
    return Simulated(x_clean, x, a[..., 0].astype(np.float64), a_c[..., 0, 0].astype(np.float64))


def network_truth(regime: Regime, sim: Simulated, shift, clean_shift=None, seed_scale=None) -> dict:
    """Expected statistics of each simulated NETWORK over images: its seed effects
    ``a``, ``a_c`` held fixed, images (and the per-image quirks that come with
    them) drawn afresh. What a single-run comparison (scope ``networks``) is about.

    Returns:
        ``{"clean_acc", "corruption_acc": (M, K, R) percent, "error_sum": (M, K, R)}``.
    """
    shift, clean, scale = _shifts(shift, clean_shift, seed_scale)
    r = regime
    v_clean = r.image_sd**2 + r.config_image_sd**2 + scale**2 * r.quirk_sd**2  # (K,)
    v_cor = v_clean + r.image_corruption_sd**2
    a, a_c = sim.seed_effect, sim.seed_corruption_effect  # (M, K, R), (M, K, R, C)
    out_clean = np.empty(a.shape)
    per_c = np.empty(a_c.shape)
    base = r.corruption_base()  # (C, S)
    for k in range(len(shift)):
        out_clean[:, k] = 100.0 * _expected_expit(r.base_clean + clean[k] + a[:, k], v_clean[k])
        z = base + shift[k, :, None] + (a[:, k, :, None] + a_c[:, k])[..., None]  # (M, R, C, S)
        per_c[:, k] = _expected_expit(z, v_cor[k]).mean(axis=-1)
    return {
        "clean_acc": out_clean,
        "corruption_acc": 100.0 * per_c.mean(axis=-1),
        "error_sum": (1.0 - per_c).sum(axis=-1),
    }


def scores(sim: Simulated) -> dict[str, np.ndarray]:
    """Per-image scores of each statistic, ``(M, K, R, n)`` float64, as
    :mod:`study.analysis.paired` reduces outcomes: ``clean_acc`` (n_clean images),
    ``corruption_acc`` and ``category/<cat>`` (mean correctness over their
    corruptions x severities), ``error_sum`` (summed error over corruptions, each
    averaged over severities: the relative-mCE score)."""
    per_c = sim.corrupted.mean(axis=-2, dtype=np.float64)  # (M, K, R, C, L)
    out = {
        "clean_acc": sim.clean.astype(np.float64),
        "corruption_acc": per_c.mean(axis=-2),
        "error_sum": (1.0 - per_c).sum(axis=-2),
    }
    for cat, members in CATEGORIES.items():
        idx = [BENCHMARK_CORRUPTIONS.index(m) for m in members]
        out[f"category/{cat}"] = per_c[..., idx, :].mean(axis=-2)
    return out


def to_outcomes(sim: Simulated, study: int, config: int, seed: int, split: str = "test") -> dict:
    """One simulated run as the real per-image outcome arrays,
    ``{"<split>/clean": (N,) bool, "<split>/<corruption>/<severity>": (L,) bool}``
    (the ``arrays`` of :class:`study.analysis.outcomes.Outcomes`)."""
    out = {f"{split}/clean": sim.clean[study, config, seed].copy()}
    for ci, name in enumerate(BENCHMARK_CORRUPTIONS):
        for si, sev in enumerate(SEVERITIES):
            out[f"{split}/{name}/{sev}"] = sim.corrupted[study, config, seed, ci, si].copy()
    return out


def shift_for_gain(regime: Regime, gain: float, statistic: str = "corruption_acc") -> float:
    """The logit shift (on every corruption) that raises the expected ``statistic``
    by ``gain`` points over an unshifted configuration."""
    from scipy.optimize import brentq

    base = float(truth(regime, [0.0])[statistic][0])
    return float(brentq(lambda s: float(truth(regime, [s])[statistic][0]) - base - gain, -5.0, 5.0))
