"""Figures of a whole study: the Pareto front, frequency proportion against
clean and corruption accuracy (the paper's central figure), perturbation
strength against robustness gain, per-corruption accuracy of the baseline and
the Pareto models, learned alpha distributions, and hyperparameter importance.
Figures of an accuracy or a gain take optional intervals ([low, high] per
point) and draw them as error bars.

Pure functions of numpy arrays and plain mappings that return a matplotlib
``Figure`` built without pyplot (no global backend, no display); write them
with ``study.reporting.figures_trial.save_figure``. Accuracies are in percent, gains in
points, proportions in [0, 1], sigma is the perturbation strength.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from study import metrics as M
from study.metrics import ALL_CORRUPTIONS, EXTRA_CORRUPTIONS
from study.selection import choose as P

# Points closer than this in proportion are averaged into one point of a line:
# measured p-hat of a width-w layer moves in steps of 1/w.
PROPORTION_BIN = 0.02
# Error-barred points of the i-th series sit i * SERIES_SHIFT (centred) right of their p-hat, so that
# bars of several series at one p-hat stay apart (6 series: within one PROPORTION_BIN).
SERIES_SHIFT = 0.004
CATEGORY_COLOURS = {"noise": "tab:red", "blur": "tab:blue", "weather": "tab:green", "digital": "tab:purple"}


def plot_pareto(
    values: np.ndarray,
    proportion: np.ndarray,
    on_front: np.ndarray,
    *,
    labels: Sequence[str],
    baseline: int | None = None,
    others: np.ndarray | None = None,
    intervals: np.ndarray | None = None,
    seeds: np.ndarray | None = None,
) -> Figure:
    """All chosen-from trials on the first two objectives, the front highlighted.

    Args:
        values: (n, >=2) objective values of the complete trials; columns 0 and 1 are drawn.
        proportion: (n,) measured frequency proportion p-hat (NaN: unknown, grey).
        on_front: (n,) bool, rank-1 trials.
        labels: axis labels (the objective metric names, with direction).
        baseline: row index of the baseline trial, marked with a star.
        others: (k, 2) trials left out (stopped early, failed), drawn as small crosses.
        intervals: (n, 2, 2) each trial's interval [low, high] of the two drawn values
            (NaN: none), drawn as horizontal and vertical error bars.
        seeds: (k, 2) the single seeds of configurations run at several seeds (whose
            mean is the coloured point), drawn as small grey dots.
    """
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    values = np.asarray(values, dtype=float)
    values = values.reshape(len(proportion), values.shape[-1] if values.ndim == 2 else 2)
    on_front = np.asarray(on_front, dtype=bool)
    proportion = np.asarray(proportion, dtype=float)
    if others is not None and len(others):
        ax.scatter(
            others[:, 0], others[:, 1], marker="x", s=14, c="0.6", label="not chosen from (incomplete)"
        )
    if seeds is not None and len(seeds):
        ax.scatter(
            seeds[:, 0],
            seeds[:, 1],
            marker=".",
            s=16,
            c="0.55",
            label="one seed (the colour: the mean over seeds)",
        )
    if intervals is not None and len(values) and values.shape[1] >= 2:
        iv = np.asarray(intervals, dtype=float).reshape(len(values), 2, 2)
        has = np.isfinite(iv).all(axis=(1, 2)) & np.isfinite(values[:, :2]).all(axis=1)
        if has.any():
            ax.errorbar(
                values[has, 0],
                values[has, 1],
                xerr=_yerr(values[:, 0], iv[:, 0])[:, has],
                yerr=_yerr(values[:, 1], iv[:, 1])[:, has],
                fmt="none",
                ecolor="0.45",
                elinewidth=0.8,
                capsize=1.5,
                zorder=1,
            )
    known = ~np.isnan(proportion)
    sc = None
    if known.any():
        sc = ax.scatter(
            values[known, 0],
            values[known, 1],
            c=proportion[known],
            cmap="viridis",
            vmin=0.0,
            vmax=1.0,
            s=np.where(on_front[known], 70, 24),
            edgecolors=np.where(on_front[known], "k", "none"),
            linewidths=1.2,
            zorder=3,
        )
    if (~known).any():
        ax.scatter(
            values[~known, 0],
            values[~known, 1],
            c="0.7",
            s=np.where(on_front[~known], 70, 24),
            edgecolors=np.where(on_front[~known], "k", "none"),
            zorder=3,
            label="p-hat unknown",
        )
    if on_front.any() and values.shape[1] >= 2:
        order = np.argsort(values[on_front, 0])
        ax.plot(
            values[on_front, 0][order],
            values[on_front, 1][order],
            "k-",
            lw=1,
            alpha=0.6,
            label="Pareto front",
            zorder=2,
        )
    if baseline is not None:
        ax.scatter(
            [values[baseline, 0]],
            [values[baseline, 1]],
            marker="*",
            s=260,
            c="tab:red",
            edgecolors="k",
            zorder=4,
            label="baseline",
        )
    if sc is not None:
        fig.colorbar(sc, ax=ax, label="frequency proportion p-hat")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1] if len(labels) > 1 else "")
    ax.set_title("Pareto front (outlined) among complete trials")
    return _finish(fig, ax)


def _finish(fig: Figure, ax, legend_title: str | None = None) -> Figure:
    """Grid, a legend when anything is labelled, tight layout: the end of every scatter plot here."""
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8, title=legend_title)
    fig.tight_layout()
    return fig


def _binned_means(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of y over x rounded to PROPORTION_BIN, for the finite pairs, by x."""
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return np.array([]), np.array([])
    keys = np.round(x[ok] / PROPORTION_BIN) * PROPORTION_BIN
    uniq = np.unique(keys)
    return uniq, np.array([y[ok][keys == k].mean() for k in uniq])


def _yerr(y: np.ndarray, interval: np.ndarray | None) -> np.ndarray | None:
    """``(2, n)`` distances below and above ``y`` of the ``(n, 2)`` interval [low, high]
    (0 where either is unknown or the point lies outside its percentile interval)."""
    if interval is None:
        return None
    iv = np.asarray(interval, dtype=float).reshape(len(y), 2)
    err = np.stack([y - iv[:, 0], iv[:, 1] - y])
    return np.where(np.isfinite(err), np.maximum(err, 0.0), 0.0)


def _error_points(ax, x, y, yerr, colour: str, *, ms: float, alpha: float, capsize: float) -> None:
    """Points with vertical error bars, faint, under the series they belong to."""
    ax.errorbar(x, y, yerr=yerr, fmt="o", ms=ms, color=colour, alpha=alpha, elinewidth=0.9, capsize=capsize)


def _has_interval(interval: np.ndarray | None) -> np.ndarray | None:
    """Rows of an ``(n, 2)`` interval with both bounds known (None without intervals)."""
    if interval is None:
        return None
    return np.isfinite(np.asarray(interval, dtype=float).reshape(-1, 2)).all(axis=1)


def plot_proportion_accuracy(
    proportion: np.ndarray,
    clean: np.ndarray,
    corruption: np.ndarray,
    categories: Mapping[str, np.ndarray],
    *,
    clean_ci: np.ndarray | None = None,
    corruption_ci: np.ndarray | None = None,
    category_ci: Mapping[str, np.ndarray] | None = None,
) -> Figure:
    """Frequency proportion against accuracy: clean, corruption mean, and one
    line per corruption category (noise, blur, weather, digital).

    Args:
        proportion: (n,) measured p-hat of each trial.
        clean, corruption: (n,) accuracies, percent.
        categories: category -> (n,) mean accuracy over its benchmark corruptions.
        clean_ci, corruption_ci: (n, 2) each trial's interval [low, high] of the
            accuracy (NaN: none); with them every trial's point gets a vertical
            error bar, the points of a series shifted by a few thousandths of p-hat
            so that bars at the same p-hat stay apart.
        category_ci: category -> (n, 2), the same for each category.
    """
    fig = Figure(figsize=(7.0, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    p = np.asarray(proportion, dtype=float)
    category_ci = category_ci or {}
    series = [
        ("clean", clean, clean_ci, "k", "-"),
        ("corruption mean", corruption, corruption_ci, "tab:orange", "--"),
    ]
    series += [
        (cat, acc, category_ci.get(cat), CATEGORY_COLOURS.get(cat, None), "-")
        for cat, acc in categories.items()
    ]
    shift = SERIES_SHIFT
    for i, (name, acc, ci, colour, style) in enumerate(series):
        acc = np.asarray(acc, dtype=float)
        has = _has_interval(ci)
        if has is not None and has.any():
            x = p + (i - (len(series) - 1) / 2) * shift
            _error_points(ax, x[has], acc[has], _yerr(acc, ci)[:, has], colour, ms=3, alpha=0.45, capsize=1.5)
            if (~has).any():
                ax.scatter(p[~has], acc[~has], s=10, color=colour, alpha=0.25)
        else:
            ax.scatter(p, acc, s=10, color=colour, alpha=0.25)
        xs, ys = _binned_means(p, acc)
        if len(xs):
            ax.plot(xs, ys, linestyle=style, marker="o", ms=4, color=colour, label=name)
    ax.set_xlabel("frequency proportion p-hat (share of low-frequency first-layer filters)")
    ax.set_ylabel("accuracy (%)")
    ax.set_xlim(-0.03, 1.03)
    ax.set_title("Frequency proportion vs clean and corruption accuracy")
    return _finish(fig, ax)


def plot_perturbation_gain(
    sigma: np.ndarray, gain: np.ndarray, modes: Sequence[str], *, gain_ci: np.ndarray | None = None
) -> Figure:
    """Perturbation strength sigma against robustness gain over the baseline
    (points), one colour and one mean line per first-layer mode.

    ``gain_ci``: (n, 2) each trial's interval [low, high] of its gain (NaN: none),
    drawn as vertical error bars."""
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    sigma, gain = np.asarray(sigma, dtype=float), np.asarray(gain, dtype=float)
    modes = np.asarray(list(modes), dtype=object)
    has = _has_interval(gain_ci)
    err = _yerr(gain, gain_ci)
    for i, mode in enumerate(sorted(set(modes.tolist()))):
        sel = (modes == mode) & np.isfinite(sigma) & np.isfinite(gain)
        if not sel.any():
            continue
        colour = f"C{i}"
        bars = sel & has if has is not None else np.zeros_like(sel)
        if bars.any():
            _error_points(ax, sigma[bars], gain[bars], err[:, bars], colour, ms=4, alpha=0.55, capsize=2)
        if (sel & ~bars).any():
            ax.scatter(sigma[sel & ~bars], gain[sel & ~bars], s=18, color=colour, alpha=0.5)
        xs = np.unique(sigma[sel])
        ax.plot(xs, [gain[sel][sigma[sel] == x].mean() for x in xs], "-o", ms=4, color=colour, label=mode)
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_xlabel("perturbation strength sigma")
    ax.set_ylabel("robustness gain over baseline (points)")
    ax.set_title("Power-spectrum perturbation vs robustness gain")
    return _finish(fig, ax, legend_title="mode")


def plot_per_corruption(
    accuracy: Mapping[str, Mapping[str, float]],
    intervals: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
) -> Figure:
    """Grouped bars: accuracy (percent, mean over severities) per corruption
    for each model (the baseline first, then the Pareto models); extras last.

    Args:
        accuracy: model label -> {corruption name -> percent}.
        intervals: model label -> {corruption name -> (low, high)}, drawn as error
            bars on the bars (a model or corruption without one has none).
    """
    names = [c for c in ALL_CORRUPTIONS if any(c in acc for acc in accuracy.values())]
    models = list(accuracy)
    # Horizontal bars, one row per corruption: the figure keeps the page's width and grows
    # downward, so its labels stay readable at any number of corruptions and models.
    row = 0.8 / max(1, len(models))
    fig = Figure(figsize=(8.0, max(3.5, 0.16 * len(names) * max(1, len(models)) + 1.6)))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(names))
    for i, label in enumerate(models):
        vals = np.array([accuracy[label].get(c, np.nan) for c in names], dtype=float)
        mine = (intervals or {}).get(label, {})
        ci = np.array([mine.get(c, (np.nan, np.nan)) for c in names], dtype=float).reshape(len(names), 2)
        has = _has_interval(ci)
        ax.barh(
            y - 0.4 + row * (i + 0.5),
            vals,
            row,
            label=label,
            color="0.35" if i == 0 else f"C{i - 1}",
            xerr=_yerr(vals, ci) if has.any() else None,
            error_kw={"elinewidth": 0.8, "capsize": 1.5, "ecolor": "k"},
        )
    if any(c in EXTRA_CORRUPTIONS for c in names):
        first_extra = min(i for i, c in enumerate(names) if c in EXTRA_CORRUPTIONS)
        ax.axhline(first_extra - 0.5, color="k", lw=0.8, ls=":")
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=9)
    ax.invert_yaxis()  # the benchmark order from the top
    ax.set_xlabel("accuracy (%)")
    ax.set_title(
        "Per-corruption accuracy, baseline vs Pareto models"
        + ("\n(extras below the dotted rule)" if any(c in EXTRA_CORRUPTIONS for c in names) else ""),
        fontsize=10,
    )
    ax.grid(axis="x", alpha=0.3)
    if models:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_alpha_distributions(alpha: Mapping[str, np.ndarray]) -> Figure:
    """Distribution of the learned per-filter low-band energy shares alpha in [0, 1] (1 = all
    low band) of each learned trial, as box plots with the points over them.

    Args:
        alpha: trial label -> (O,) alpha values; an empty mapping draws a note.
    """
    labels = list(alpha)
    fig = Figure(figsize=(max(5.0, 0.5 * len(labels) + 2), 4.4))
    ax = fig.add_subplot(1, 1, 1)
    if not labels:
        ax.text(0.5, 0.5, "no learned-mode trials with alpha values", ha="center", va="center")
        ax.set_axis_off()
        return fig
    data = [np.asarray(alpha[k], dtype=float).ravel() for k in labels]
    ax.boxplot(data, showfliers=False)
    rng = np.random.default_rng(0)  # jitter only, fixed so the figure is reproducible
    for i, d in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(d)), d, s=6, alpha=0.5, color="tab:blue")
    ax.set_xticks(np.arange(1, len(labels) + 1))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("alpha (low-band energy share)")
    ax.set_title("Learned alpha per first-layer filter")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_importance(importances: Mapping[str, Mapping[str, float]]) -> Figure:
    """Hyperparameter importance: one panel per objective, one horizontal bar per
    parameter, the most important on top.

    Args:
        importances: objective -> {parameter -> importance (summing to 1)}; an empty
            mapping draws a note.
    """
    names = list(importances)
    n_params = max((len(v) for v in importances.values()), default=0)
    fig = Figure(figsize=(max(5.0, 4.2 * len(names)), max(2.6, 0.45 * n_params + 1.6)))
    if not names:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no importances to show", ha="center", va="center")
        ax.set_axis_off()
        return fig
    for i, objective in enumerate(names, start=1):
        ax = fig.add_subplot(1, len(names), i)
        ranked = sorted(importances[objective].items(), key=lambda kv: kv[1])
        ax.barh([k for k, _ in ranked], [v for _, v in ranked], color="tab:blue")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("importance (sums to 1)")
        ax.set_title(objective, fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def pareto_figure(choice, intervals: Mapping[str, Mapping[str, tuple[float, float]]] | None = None) -> Figure:
    """The Pareto figure of a choice (all complete trials, front, baseline, p-hat colour).

    ``intervals``: run_id -> {metric -> (low, high)} (``study.reporting.report.trial_intervals``);
    a trial with intervals of both drawn metrics gets error bars."""
    cands = choice.result.candidates
    objs = choice.result.objectives
    values = np.array([[c.objectives[o.metric] for o in objs] for c in cands], dtype=float).reshape(
        len(cands), len(objs)
    )
    if values.shape[1] == 1:  # one objective: draw it against robustness so the figure still reads
        values = np.column_stack([values[:, 0], [P.metric_of(c.trial, P.ROBUSTNESS_METRIC) for c in cands]])
        labels = [f"{objs[0].metric} ({objs[0].short})", P.ROBUSTNESS_METRIC]
        drawn = [objs[0].metric, P.ROBUSTNESS_METRIC]
    else:
        labels = [f"{o.metric} ({o.short})" for o in objs[:2]]
        drawn = [o.metric for o in objs[:2]]
    bars = None
    if intervals:
        nan = (np.nan, np.nan)
        bars = np.array(
            [[intervals.get(c.run_id, {}).get(m, nan) for m in drawn] for c in cands], dtype=float
        ).reshape(len(cands), 2, 2)
    # The runs of a configuration with several seeds are its seeds, not trials left out.
    seed_runs = {
        r["run_id"]
        for c in cands
        for r in (choice.members.get(c.run_id) or [])
        if len(choice.members[c.run_id]) > 1
    }
    chosen = {c.run_id for c in cands}

    def points(keep) -> np.ndarray | None:
        if len(objs) < 2:
            return None
        rows = [[P.metric_of(t, o.metric) for o in objs[:2]] for t in choice.trials if keep(t["run_id"])]
        out = np.array(rows, dtype=float).reshape(-1, 2)
        return out[np.isfinite(out).all(axis=1)]

    seeds = points(lambda rid: rid in seed_runs)
    others = points(lambda rid: rid not in chosen and rid not in seed_runs)
    base_idx = next(
        (
            i
            for i, c in enumerate(cands)
            if choice.baseline is not None and c.run_id == choice.baseline["run_id"]
        ),
        None,
    )
    return plot_pareto(
        values,
        np.array([P.metric_of(c.trial, M.FILTER_PROPORTION) for c in cands]),
        np.array([c.rank == 1 for c in cands]),
        labels=labels,
        baseline=base_idx,
        others=others,
        intervals=bars,
        seeds=seeds,
    )
