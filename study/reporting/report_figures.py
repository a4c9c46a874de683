"""The report's figures, assembled from a study's choice: each figure with its caption, error
bars where intervals exist (the plotting itself is :mod:`study.reporting.figures_study`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from study import metrics as M
from study.reporting.figures_study import pareto_figure
from study.reporting.intervals import Intervals, report_split
from study.reporting.rows import corruption_accuracy
from study.selection import choose as P
from study.selection.choice import (
    MAX_FOURIER_PANELS,
    Choice,
    fourier_models,
    trial_label,
)

FOURIER_FIGURE = "fourier_heatmaps.png"
FOURIER_METRICS = ("fourier/error_low", "fourier/error_middle", "fourier/error_high")
IMPORTANCE_FIGURE = "importance.png"
GAIN_SPLIT = "test"  # the gains the tables and figures show (study.selection.choose.trial_gains)


def _gain_intervals(choice: Choice, run_ids: Sequence[str], name: str = "robustness_gain") -> np.ndarray:
    """``(n, 2)`` paired interval of a gain (:data:`GAIN_SPLIT`) of each run against the baseline
    (NaN where there is none)."""
    out = np.full((len(run_ids), 2), np.nan)
    for i, rid in enumerate(run_ids):
        g = choice.gains.get(rid, {}).get(GAIN_SPLIT)
        if g is not None:
            d = getattr(g, name)
            out[i] = (d.ci_low, d.ci_high)
    return out


def build_figures(
    choice: Choice, alpha: dict[str, np.ndarray], intervals: Intervals | None = None
) -> dict[str, Any]:
    """file name -> (Figure, caption), in report order.

    ``intervals``: each trial's own (:func:`trial_intervals`); with them, and with
    ``choice.gains``, every accuracy and gain gets an error bar."""
    from study.reporting.figures_study import (
        plot_alpha_distributions,
        plot_per_corruption,
        plot_perturbation_gain,
        plot_proportion_accuracy,
    )

    intervals = intervals or Intervals()
    split = report_split(choice.trials)
    complete = [c.trial for c in choice.result.candidates]
    ids = [t["run_id"] for t in complete]

    def ci(key: str) -> np.ndarray:
        return np.array([intervals.of(r, key) for r in ids], dtype=float).reshape(len(ids), 2)

    pct = f"{100 * intervals.confidence:g}"
    cats = [c for c in M.CATEGORIES if any(M.category_key(split, c) in t["metrics"] for t in complete)]
    p_hat = np.array([P.metric_of(t, M.FILTER_PROPORTION) for t in complete])
    bars = (
        f" Error bars: {pct}% interval of each trial's own accuracy, {intervals.describe()}; the points "
        f"of a series are shifted by a few thousandths of p̂ so that bars at one p̂ stay apart."
        if intervals
        else " No error bars: no complete trial has per-image outcomes (outcomes.npz)."
    )
    figs: dict[str, Any] = {}
    figs["proportion_accuracy.png"] = (
        plot_proportion_accuracy(
            p_hat,
            np.array([P.metric_of(t, f"{split}/clean_acc") for t in complete]),
            np.array([P.metric_of(t, f"{split}/corruption_acc") for t in complete]),
            {cat: np.array([P.metric_of(t, M.category_key(split, cat)) for t in complete]) for cat in cats},
            clean_ci=ci(f"{split}/clean_acc"),
            corruption_ci=ci(f"{split}/corruption_acc"),
            category_ci={cat: ci(M.category_key(split, cat)) for cat in cats},
        ),
        f"Measured frequency proportion p̂ of the first layer against {split} clean accuracy, mean "
        f"corruption accuracy and each corruption category (lines: means over trials with the same p̂; "
        f"complete trials only).{bars}",
    )
    gains = [P.trial_gains(t, choice.baseline) for t in complete]
    gain_ci = _gain_intervals(choice, ids)
    figs["perturbation_gain.png"] = (
        plot_perturbation_gain(
            np.array([P.float_param(t, "frequency.perturbation") for t in complete]),
            np.array([g[M.ROBUSTNESS_GAIN] for g in gains]),
            [str(P.param_of(t, "frequency.mode", "?")) for t in complete],
            gain_ci=gain_ci,
        ),
        "Power-spectrum perturbation σ against test robustness gain over the baseline (points), by mode."
        + (
            " Error bars: the gain's 95% paired-bootstrap interval against the baseline over source images "
            "(an image with all its corrupted versions, both models' outcomes on it resampled together)."
            if np.isfinite(gain_ci).all(axis=1).any()
            else " No error bars: the baseline has no per-image outcomes to pair with."
        ),
    )
    per: dict[str, dict[str, float]] = {}
    per_ci: dict[str, dict[str, tuple[float, float]]] = {}
    models = ([("baseline", choice.baseline)] if choice.baseline is not None else []) + [
        (f"pareto-{i}", c.trial) for i, c in enumerate(choice.result.front, start=1)
    ]
    for role, t in models:
        label = f"{role} ({trial_label(t)})"
        if label in per:
            continue
        per[label] = corruption_accuracy(t, split)
        per_ci[label] = {n: intervals.of(t["run_id"], M.corruption_key(split, n)) for n in per[label]}
    has_per_ci = any(np.isfinite(v).all() for m in per_ci.values() for v in m.values())
    figs["per_corruption.png"] = (
        plot_per_corruption(per, per_ci),
        f"{split} accuracy per corruption (mean over severities) of the baseline and the Pareto models."
        + (f" Error bars: {pct}% interval of each accuracy, {intervals.describe()}." if has_per_ci else ""),
    )
    figs["alpha.png"] = (
        plot_alpha_distributions(alpha),
        "Learned per-filter α (low-band energy share) after the last epoch of each learned-mode trial; "
        "trials that logged no per-filter α are pooled in the box 'mean α per trial' by their final mean α.",
    )
    drawn = [o.metric for o in choice.result.objectives[:2]]
    has_pareto_ci = any(np.isfinite(intervals.of(r, m)).all() for r in ids for m in drawn)
    figs["pareto.png"] = (
        pareto_figure(choice, intervals.by_run),
        "Validation objectives of every complete trial; the Pareto front outlined and joined, the baseline "
        "starred, colour = measured frequency proportion p̂; crosses: trials not chosen from."
        + (
            f" Error bars: {pct}% interval of each trial's validation accuracies, {intervals.describe()}."
            if has_pareto_ci
            else ""
        ),
    )
    return figs


def fourier_figure(choice: Choice, maps: dict[str, np.ndarray]) -> tuple[bytes, str] | None:
    """The section's figure and caption (None without maps): every map on one colour scale,
    and below each its difference from the baseline's map."""
    from study.reporting.fourier_figures import heatmap_grid_png

    shapes = {m.shape for m in maps.values()}
    if not maps or len(shapes) != 1:
        return None
    reference = "baseline" if "baseline" in maps else next(iter(maps))
    trials = dict(fourier_models(choice))
    who = "; ".join(f"{name}: {trial_label(trials[name])}" for name in maps if name in trials)
    note = (
        "" if reference == "baseline" else f" The baseline logged no map: differences are from {reference}."
    )
    omitted = len(fourier_models(choice)) - len(maps)
    caption = (
        f"Fourier heat maps (Yin et al. 2019): test error (%) when each image gets a ±ε Fourier basis "
        f"image of one frequency; DC at the centre, axes in cycles/pixel. Top: all maps on one colour "
        f"scale; bottom: each map minus the {reference}'s, in points (red: more error). {who}."
        f"{note}"
        + (
            f" {omitted} model(s) without a map or beyond the first {MAX_FOURIER_PANELS} are not shown."
            if omitted
            else ""
        )
    )
    return heatmap_grid_png(maps, reference), caption
