"""CIFAR-10-C noise corruptions: gaussian, shot and impulse noise (benchmark)
and speckle noise (extra), at the CIFAR parameters of ``docs/cifar10c.md``.

All four are per-value and random, and work on ``x/255`` in float64 as the
original did, ending in the same truncation ``np.uint8(clip(·, 0, 1)·255)``
(``(k/255)·255`` truncates back to ``k`` for every 8-bit ``k``, so untouched
values stay put). Shot noise is drawn by inverting the exact Poisson CDF of
each of the 256 input levels (tabulated once per severity) rather than by
numpy's per-value Poisson sampler: the same distribution, 3x faster. Inputs
are uint8 ``(N, 32, 32, 3)``; outputs the same shape and dtype.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from study.corruptions._ops import severity_params, to_uint8

GAUSSIAN_SIGMA = (0.04, 0.06, 0.08, 0.09, 0.10)  # std of the additive noise, 0-1 scale
SHOT_PHOTONS = (500, 250, 100, 75, 50)  # Poisson rate at full intensity
SHOT_GUIDE_CELLS = (
    2048  # guide-table cells per input level: a draw almost always lands within a step of its answer
)
IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)  # probability a value is replaced by 0 or 1
SPECKLE_SIGMA = (0.06, 0.1, 0.12, 0.16, 0.2)  # std of the multiplicative noise


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``clip(x/255 + N(0, σ), 0, 1)·255`` per value."""
    sigma = severity_params("gaussian_noise", GAUSSIAN_SIGMA, severity)
    x = images / 255.0
    x += rng.normal(scale=sigma, size=x.shape)
    return to_uint8(np.clip(x, 0, 1, out=x) * 255)


def shot_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``clip(Poisson(x/255·c)/c, 0, 1)·255`` per value, by inverse-CDF lookup (see :func:`shot_noise_table`).

    One uniform ``u`` per value; the output is the first level whose
    cumulative probability exceeds ``u``, found from the guide table and a
    few forward steps.
    """
    photons = severity_params("shot_noise", SHOT_PHOTONS, severity)
    bounds, levels, guide = shot_noise_table(photons)
    x = images.reshape(-1)
    u = rng.random(x.shape)
    pos = guide[x.astype(np.intp) * SHOT_GUIDE_CELLS + (u * SHOT_GUIDE_CELLS).astype(np.intp)]
    # The guide gives the first level that can hold u; step on while u is past that level's bound.
    behind = np.flatnonzero(u >= bounds[pos])
    while behind.size:
        pos[behind] += 1
        behind = behind[u[behind] >= bounds[pos[behind]]]
    return levels[pos].reshape(images.shape)


@lru_cache(maxsize=len(SHOT_PHOTONS))
def shot_noise_table(photons: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-CDF tables of shot noise at ``photons`` (c) for the 256 input levels.

    For input level ``k`` the count is ``J ~ Poisson(λ)``, ``λ = (k/255)·c``
    (computed as the original did), and the output level is
    ``uint8(clip(J/c, 0, 1)·255)``, a non-decreasing step function of ``J``
    that reaches 255 at ``J = c``. So each row lists the output levels ``m``
    in order with ``bound = P(J <= last count giving m)`` (``scipy.special.pdtr``,
    the regularised incomplete gamma), the last level taking all ``J >= c``:
    no tail is cut.

    Returns:
        ``bounds`` float64 ``(256·L,)``, ``P(output <= level)`` per row of
        ``L`` levels (2.0 on the last, which takes the rest); ``levels`` uint8
        ``(256·L,)``, the output level at each position; ``guide`` int32
        ``(256·SHOT_GUIDE_CELLS,)``, for input ``k`` and cell ``g`` the first
        position of row ``k`` whose bound exceeds ``g / SHOT_GUIDE_CELLS``. Read-only.
    """
    from scipy import special  # here: only a worker that draws shot noise pays for importing scipy

    counts = np.arange(photons + 1)
    out = to_uint8(np.clip(counts / photons, 0, 1) * 255)  # the original's output for each count
    last = np.flatnonzero(np.diff(out.astype(np.int64)) != 0)  # last count of every level but 255
    row_levels = np.append(out[last], out[-1])  # (L,)
    width = len(row_levels)
    lam = (np.arange(256) / 255.0) * photons  # (256,): the original's x/255·c
    cdf = special.pdtr(last[None, :], lam[:, None])  # (256, L-1)
    bounds = np.concatenate([cdf, np.full((256, 1), 2.0)], axis=1)  # (256, L)
    cells = np.arange(SHOT_GUIDE_CELLS) / SHOT_GUIDE_CELLS
    guide = np.stack([np.searchsorted(bounds[k], cells, side="right") for k in range(256)])  # (256, cells)
    guide = (guide + width * np.arange(256)[:, None]).astype(np.int32)
    tables = (bounds.reshape(-1), np.tile(row_levels, 256), guide.reshape(-1))
    for t in tables:
        t.setflags(write=False)
    return tables


def impulse_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper (skimage ``random_noise(mode='s&p')``): each value hit with probability
    ``amount``, a hit value becomes 1 or 0 with equal odds; then ``·255``."""
    amount = severity_params("impulse_noise", IMPULSE_AMOUNT, severity)
    out = images.copy()
    hit = rng.random(images.shape) < amount
    salt = rng.random(images.shape) < 0.5
    out[hit & salt] = 255
    out[hit & ~salt] = 0
    return out


def speckle_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``clip(x + x·N(0, σ), 0, 1)·255`` on the 0-1 scale."""
    sigma = severity_params("speckle_noise", SPECKLE_SIGMA, severity)
    x = images / 255.0
    x += x * rng.normal(scale=sigma, size=x.shape)
    return to_uint8(np.clip(x, 0, 1, out=x) * 255)
