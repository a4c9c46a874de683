"""CIFAR-10-C noise corruptions: gaussian, shot and impulse noise (benchmark)
and speckle noise (extra), at the CIFAR parameters of ``cifar10c.md``.

All four are per-value and random, and work on ``x/255`` in float64 as the
original did, ending in the same truncation ``np.uint8(clip(·, 0, 1)·255)``
(``(k/255)·255`` truncates back to ``k`` for every 8-bit ``k``, so untouched
values stay put). Inputs are uint8 ``(N, 32, 32, 3)``; outputs the same
shape and dtype.
"""

from __future__ import annotations

import numpy as np

from study.corruptions._ops import severity_params, to_uint8

GAUSSIAN_SIGMA = (0.04, 0.06, 0.08, 0.09, 0.10)  # std of the additive noise, 0-1 scale
SHOT_PHOTONS = (500, 250, 100, 75, 50)  # Poisson rate at full intensity
IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)  # probability a value is replaced by 0 or 1
SPECKLE_SIGMA = (0.06, 0.1, 0.12, 0.16, 0.2)  # std of the multiplicative noise


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``clip(x/255 + N(0, σ), 0, 1)·255`` per value."""
    sigma = severity_params("gaussian_noise", GAUSSIAN_SIGMA, severity)
    x = images / 255.0
    x += rng.normal(scale=sigma, size=x.shape)
    return to_uint8(np.clip(x, 0, 1, out=x) * 255)


def shot_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``clip(Poisson(x/255·c)/c, 0, 1)·255`` per value."""
    c = severity_params("shot_noise", SHOT_PHOTONS, severity)
    x = rng.poisson(images / 255.0 * c) / c
    return to_uint8(np.clip(x, 0, 1, out=x) * 255)


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
