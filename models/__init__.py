"""The network and its first layer: pure torch/numpy, no I/O and nothing from ``study``.

``spectral`` holds the frequency analysis of first-layer filters, ``stem`` the
frequency-controlled first convolution, ``resnet`` the CIFAR ResNet-18 that
takes the stem as an argument (docs/method.md).
"""

from models.resnet import BasicBlock, ResNet18, build_resnet18
from models.spectral import (
    band_masks,
    check_cutoff,
    classify_filters,
    frequency_grid,
    frequency_proportion,
    low_energy_ratio,
    normalised_radius,
    padded_power_spectrum,
    power_spectrum,
    radial_power_profile,
    spectral_centroid,
    valid_cutoffs,
)
from models.stem import (
    LEARNED_FORM,
    LEGACY_LEARNED_FORM,
    MODES,
    FrequencySettings,
    FrequencyStem,
    SettingError,
    count_low_filters,
    initial_alpha,
)

__all__ = [
    "LEARNED_FORM",
    "LEGACY_LEARNED_FORM",
    "MODES",
    "FrequencySettings",
    "SettingError",
    "BasicBlock",
    "FrequencyStem",
    "ResNet18",
    "band_masks",
    "build_resnet18",
    "check_cutoff",
    "classify_filters",
    "count_low_filters",
    "frequency_grid",
    "frequency_proportion",
    "initial_alpha",
    "low_energy_ratio",
    "normalised_radius",
    "padded_power_spectrum",
    "power_spectrum",
    "radial_power_profile",
    "spectral_centroid",
    "valid_cutoffs",
]
