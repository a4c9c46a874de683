"""CIFAR-10-C corruptions: the registry of all 19, and ``corrupt`` to apply one.

Each corruption is a function ``fn(images, severity, rng) -> images`` from a
uint8 ``(N, 32, 32, 3)`` HWC batch to a uint8 batch of the same shape, at the
CIFAR-10-C parameters of ``docs/cifar10c.md`` (frost also takes
``frost_dir``). Random corruptions draw only from the ``numpy.random.Generator``
they are given, so a seed fixes the output; deterministic ones ignore it.
Implementations are resolved lazily from ``module:function`` strings, so
importing this package loads no corruption code (and no Pillow).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from study.metrics import ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES

__all__ = [
    "ALL_CORRUPTIONS",
    "BENCHMARK_CORRUPTIONS",
    "DETERMINISTIC",
    "EXTRA_CORRUPTIONS",
    "GENERATOR_VERSION",
    "IMAGE_SHAPE",
    "RANDOM",
    "REGISTRY",
    "SEVERITIES",
    "corrupt",
    "get_corruption",
    "is_random",
]

# Bump whenever any corruption's output changes for the same input and seed; caches key on it.
GENERATOR_VERSION = "2"  # 2: shot noise by inverse CDF, elastic resampling in float32 lerps

IMAGE_SHAPE: tuple[int, int, int] = (32, 32, 3)  # H, W, C of every batch row

REGISTRY: dict[str, str] = {
    "gaussian_noise": "study.corruptions.noise:gaussian_noise",
    "shot_noise": "study.corruptions.noise:shot_noise",
    "impulse_noise": "study.corruptions.noise:impulse_noise",
    "speckle_noise": "study.corruptions.noise:speckle_noise",
    "defocus_blur": "study.corruptions.blur:defocus_blur",
    "glass_blur": "study.corruptions.blur:glass_blur",
    "motion_blur": "study.corruptions.blur:motion_blur",
    "zoom_blur": "study.corruptions.blur:zoom_blur",
    "gaussian_blur": "study.corruptions.blur:gaussian_blur",
    "snow": "study.corruptions.weather:snow",
    "frost": "study.corruptions.weather:frost",
    "fog": "study.corruptions.weather:fog",
    "spatter": "study.corruptions.weather:spatter",
    "brightness": "study.corruptions.digital:brightness",
    "contrast": "study.corruptions.digital:contrast",
    "elastic_transform": "study.corruptions.elastic:elastic_transform",
    "pixelate": "study.corruptions.digital:pixelate",
    "jpeg_compression": "study.corruptions.digital:jpeg_compression",
    "saturate": "study.corruptions.digital:saturate",
}

# The original generator draws no random numbers for these (docs/cifar10c.md).
DETERMINISTIC: frozenset[str] = frozenset(
    {
        "defocus_blur",
        "gaussian_blur",
        "zoom_blur",
        "brightness",
        "contrast",
        "pixelate",
        "jpeg_compression",
        "saturate",
    }
)
RANDOM: frozenset[str] = frozenset(ALL_CORRUPTIONS) - DETERMINISTIC


def is_random(name: str) -> bool:
    """Whether corruption ``name`` draws from its generator."""
    _check_name(name)
    return name in RANDOM


def _check_name(name: str) -> None:
    if name not in REGISTRY:
        raise ValueError(f"unknown corruption {name!r}; allowed: {', '.join(ALL_CORRUPTIONS)}")


def get_corruption(name: str) -> Callable[..., np.ndarray]:
    """The function implementing corruption ``name`` (imported on first use)."""
    _check_name(name)
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def check_images(images: np.ndarray) -> None:
    """ValueError unless ``images`` is a uint8 ``(N, 32, 32, 3)`` array."""
    if not isinstance(images, np.ndarray):
        raise ValueError(f"images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"images must have shape (N, 32, 32, 3), got {images.shape}")


def corrupt(
    name: str, images: np.ndarray, severity: int, rng: np.random.Generator | None = None, *, frost_dir=None
) -> np.ndarray:
    """Apply corruption ``name`` at ``severity`` (1-5) to a uint8 ``(N, 32, 32, 3)`` batch.

    Args:
        name: a CIFAR-10-C file stem (``study.metrics.ALL_CORRUPTIONS``).
        images: uint8 ``(N, 32, 32, 3)`` HWC, 0-255.
        severity: 1..5.
        rng: required for the random corruptions (``RANDOM``); its state
            advances. The draws depend on the batch: the same images split
            into other batches give other (equally valid) corruptions.
        frost_dir: folder of the frost textures (frost only).

    Returns:
        uint8 ``(N, 32, 32, 3)``.
    """
    _check_name(name)
    if (
        isinstance(severity, bool)
        or not isinstance(severity, (int, np.integer))
        or severity not in SEVERITIES
    ):
        raise ValueError(f"severity must be one of {list(SEVERITIES)}, got {severity!r}")
    check_images(images)
    if name in RANDOM and rng is None:
        raise ValueError(f"corruption {name!r} is random: pass rng=np.random.default_rng(seed)")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    fn = get_corruption(name)
    if images.shape[0] == 0:  # nothing to corrupt, and no draws: the generator is left as it was
        return images.copy()
    if name == "frost":
        return fn(images, int(severity), rng, frost_dir=frost_dir)
    return fn(images, int(severity), rng)
