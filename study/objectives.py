"""Objectives: a metric and a direction, the one vocabulary for search, choice and report.

Directions are Optuna's words (``maximize``, ``minimize``); ``max`` and
``min`` are accepted wherever a user types one (``--objectives
val/clean_acc:max``) and mean the same. Pure: no Ray, Optuna or MLflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DIRECTIONS = ("maximize", "minimize")
_ALIASES = {"max": "maximize", "min": "minimize", "maximize": "maximize", "minimize": "minimize"}


def parse_direction(text: str) -> str:
    """``max``/``maximize`` -> ``maximize``, ``min``/``minimize`` -> ``minimize``; else ValueError."""
    direction = _ALIASES.get(str(text).strip().lower())
    if direction is None:
        raise ValueError(f"direction {text!r} is not one of max, min (or maximize, minimize)")
    return direction


def _default_worst(direction: str) -> float:
    # Percent metrics: the worst a maximised accuracy can be is 0, a minimised error 100.
    return 0.0 if direction == "maximize" else 100.0


@dataclass(frozen=True)
class Objective:
    """A metric key, whether larger or smaller is better, and the value a diverged trial reports."""

    metric: str
    direction: str = "maximize"
    worst: float = field(default=math.nan)  # NaN: 0 for maximize, 100 for minimize (percent metrics)

    def __post_init__(self) -> None:
        if not self.metric:
            raise ValueError("objectives: empty metric name; expected METRIC:max or METRIC:min")
        try:
            object.__setattr__(self, "direction", parse_direction(self.direction))
        except ValueError:
            raise ValueError(
                f"objectives: direction {self.direction!r} of {self.metric!r} is not one of max, min "
                "(or maximize, minimize)"
            ) from None
        if math.isnan(self.worst):
            object.__setattr__(self, "worst", _default_worst(self.direction))

    @property
    def short(self) -> str:
        """``max`` or ``min``: Tune's ``mode`` and the ``METRIC:max`` spelling."""
        return "max" if self.direction == "maximize" else "min"

    @property
    def sign(self) -> float:
        """+1 when larger is better, -1 when smaller is."""
        return 1.0 if self.direction == "maximize" else -1.0
