"""The first layer's frequency settings as plain data: no torch, so configs load without it.

``FrequencySettings`` is the typed object that travels whole from the trial
config (``frequency.*`` keys) to ``models.stem.FrequencyStem``; its range
checks need only ``math``, so reading a config, a search space or a command's
``--help`` never pays for a torch import. The kernel-dependent cutoff check
lives with the frequency grid (``models.spectral.check_cutoff``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

__all__ = ["FrequencySettings", "MODES", "SettingError", "count_low_filters"]

MODES = ("free", "fixed", "learned")


class SettingError(ValueError):
    """A frequency setting that is not allowed; ``name`` is the setting, ``problem`` what is wrong."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


def _check_setting(name: str, value: Any, lo: float, hi: float, *, lo_open=False, hi_open=False) -> float:
    bad_type = isinstance(value, bool) or not isinstance(value, numbers.Real)
    if not bad_type:
        below = value <= lo if lo_open else value < lo
        above = value >= hi if hi_open else value > hi
    if bad_type or below or above or math.isnan(value) or math.isinf(value):
        lb, rb = ("(" if lo_open else "["), (")" if hi_open else "]")
        raise SettingError(
            name, f"{value!r} is out of range; allowed {lb}{float(lo)}, {float(hi)}{rb}, finite"
        )
    return float(value)


@dataclass(frozen=True)
class FrequencySettings:
    """Everything that shapes the first layer's frequency make-up, as one typed object.

    It travels whole from the trial config (``frequency.*`` keys) to the stem;
    a new setting is a new field here (and wherever it is displayed).
    """

    mode: str = "free"  # free = plain conv (the baseline), fixed = projected, learned = gated
    proportion: float = 0.5  # p: target share of low-frequency filters
    # r_c as a fraction of Nyquist. 0.75 gives both bands spatial structure at every k (docs/method.md
    # §10): k=3 DC + 4 axis bins | 4 diagonal bins; k=5 the split of 0.6; k=7 21 | 28 bins.
    cutoff: float = 0.75
    threshold: float = 0.5  # tau: a filter is low-frequency when its low-band energy share >= tau
    perturbation: float = 0.0  # sigma of the power-spectrum perturbation (train only)
    proportion_weight: float = 0.0  # lambda: pull of the soft count of low filters toward p (learned mode)
    # T of the soft count mean_o sigmoid((alpha_o - tau)/T) (learned mode): small enough that a
    # filter 3T from tau counts ~0 or ~1, so the soft count equals the hard one (docs/method.md).
    temperature: float = 0.05

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SettingError("mode", f"{self.mode!r} is not a mode; allowed: {', '.join(MODES)}")
        _check_setting("proportion", self.proportion, 0.0, 1.0)
        # The kernel-dependent check (both bands non-empty) is check_cutoff, where k is known.
        _check_setting("cutoff", self.cutoff, 0.0, math.sqrt(2.0), lo_open=True, hi_open=True)
        _check_setting("threshold", self.threshold, 0.0, 1.0)
        _check_setting("perturbation", self.perturbation, 0.0, math.inf, hi_open=True)
        _check_setting("proportion_weight", self.proportion_weight, 0.0, math.inf, hi_open=True)
        _check_setting("temperature", self.temperature, 0.0, 1.0, lo_open=True)

    def replace(self, **changes: Any) -> FrequencySettings:
        """A copy with some settings changed (validated)."""
        return dataclasses.replace(self, **changes)


def count_low_filters(*, out_channels: int, proportion: float) -> int:
    """``round(p·O)``: the filters held to the LOW band in fixed mode (Python rounding, ties to even)."""
    return round(proportion * out_channels)
