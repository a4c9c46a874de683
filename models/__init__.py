"""The network and its first layer: pure torch/numpy, no I/O and nothing from ``study``.

``settings`` holds the frequency settings as plain data (no torch), ``spectral``
the frequency analysis of first-layer filters, ``stem`` the frequency-controlled
first convolution, ``resnet`` the CIFAR ResNet-18 that takes the stem as an
argument (docs/method.md).

The names below are loaded on first use (PEP 562), so importing
``models.settings`` (which the trial config does) costs no torch import; torch
enters where a network or a spectrum is built.
"""

from __future__ import annotations

import importlib

# public name -> the submodule that defines it
_HOME = {
    "BasicBlock": "resnet",
    "ResNet18": "resnet",
    "build_resnet18": "resnet",
    "band_masks": "spectral",
    "check_cutoff": "spectral",
    "classify_filters": "spectral",
    "frequency_grid": "spectral",
    "frequency_proportion": "spectral",
    "low_energy_ratio": "spectral",
    "normalised_radius": "spectral",
    "padded_power_spectrum": "spectral",
    "power_spectrum": "spectral",
    "radial_power_profile": "spectral",
    "spectral_centroid": "spectral",
    "valid_cutoffs": "spectral",
    "MODES": "settings",
    "FrequencySettings": "settings",
    "SettingError": "settings",
    "count_low_filters": "settings",
    "FrequencyStem": "stem",
    "LEARNED_FORM": "stem",
    "LEGACY_LEARNED_FORM": "stem",
    "initial_alpha": "stem",
}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"models.{_HOME[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
