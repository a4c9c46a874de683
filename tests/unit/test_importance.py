"""Which settings matter: ``study.analysis.importance`` on synthetic trials with a known driver,
and the report's figures of accuracies and gains draw their intervals as error bars."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.container import ErrorbarContainer

from study.analysis.importance import FANOVA, param_importances


def synthetic(n: int, seed: int = 0):
    """``lr`` drives the first objective, ``mode`` the second; ``noise`` drives nothing."""
    rng = np.random.default_rng(seed)
    params, values = [], []
    for _ in range(n):
        lr, noise = rng.uniform(0.01, 0.2), rng.uniform(0.0, 1.0)
        mode = str(rng.choice(["fixed", "learned"]))
        params.append({"train.lr": f"{lr:.5f}", "frequency.noise": str(noise), "frequency.mode": mode})
        values.append([80.0 + 60.0 * lr + rng.normal(0.0, 0.2), 60.0 + 5.0 * (mode == "learned")])
    return params, values


def test_the_driving_parameter_ranks_first_for_each_objective():
    params, values = synthetic(30)
    names = ["train.lr", "frequency.noise", "frequency.mode"]
    imp = param_importances(params, values, ["val/clean_acc", "val/corruption_acc"], names)
    assert imp.n_trials == 30 and set(imp.parameters) == set(names) and not imp.left_out
    assert imp.evaluator == FANOVA  # scikit-learn is installed (mlflow needs it)
    clean, corr = imp.values["val/clean_acc"], imp.values["val/corruption_acc"]
    assert next(iter(clean)) == "train.lr" and clean["train.lr"] > 0.8
    assert next(iter(corr)) == "frequency.mode" and corr["frequency.mode"] > 0.8
    for ranked in imp.values.values():
        assert sum(ranked.values()) == pytest.approx(1.0)
        assert list(ranked.values()) == sorted(ranked.values(), reverse=True)
    # Seeded: the same inputs give the same importances.
    again = param_importances(params, values, ["val/clean_acc", "val/corruption_acc"], names)
    assert again.values == imp.values


def test_constant_missing_and_too_few_are_said_not_raised():
    params, values = synthetic(12, seed=1)
    for p in params:
        p["train.epochs"] = "2"  # searched in name only: one value everywhere
    del params[3]["frequency.noise"]  # a conditional parameter some trials lack
    values = [[v[0], 50.0] for v in values]  # the second objective never moves
    imp = param_importances(
        params, values, ["a", "b"], ["train.lr", "frequency.noise", "train.epochs", "absent"]
    )
    assert imp.parameters == ("train.lr",)
    assert imp.left_out == {
        "frequency.noise": "missing in 1 of 12 trials",
        "train.epochs": "one value (2) in every trial",
        "absent": "missing in 12 of 12 trials",
    }
    assert imp.values == {"a": {"train.lr": pytest.approx(1.0)}}
    assert imp.skipped == {"b": "the same value in every trial"}

    one = param_importances(params[:1], values[:1], ["a", "b"], ["train.lr"])
    assert one.values == {} and "at least 2 complete trials; there are 1" in one.note
    flat = param_importances(params, values, ["a", "b"], ["train.epochs"])
    assert flat.values == {} and "No searched parameter varies" in flat.note
    nan = param_importances(params[:2], [[np.nan, 1.0], [1.0, 2.0]], ["a", "b"], ["train.lr"])
    assert nan.n_trials == 1 and nan.note  # a trial without a finite objective does not count


def _errorbars(ax) -> int:
    return sum(isinstance(c, ErrorbarContainer) for c in ax.containers)


def test_the_central_figure_draws_each_trials_interval():
    from study.reporting.figures_study import plot_proportion_accuracy

    p = np.array([0.25, 0.25, 0.5, 0.75])
    clean = np.array([90.0, 89.0, 88.0, 85.0])
    corr = np.array([60.0, 62.0, 70.0, 75.0])
    cats = {"noise": corr - 10, "blur": corr + 5}

    def ci(y):
        return np.column_stack([y - 1.5, y + 2.0])

    fig = plot_proportion_accuracy(
        p,
        clean,
        corr,
        cats,
        clean_ci=ci(clean),
        corruption_ci=ci(corr),
        category_ci={"noise": ci(cats["noise"]), "blur": np.full((4, 2), np.nan)},  # blur: no intervals
    )
    ax = fig.axes[0]
    assert _errorbars(ax) == 3  # clean, corruption mean, noise; not blur
    segments = [
        s for c in ax.containers if isinstance(c, ErrorbarContainer) for s in c.lines[2][0].get_segments()
    ]
    assert len(segments) == 3 * 4
    spans = sorted(round(float(s[1, 1] - s[0, 1]), 6) for s in segments)
    assert spans == [3.5] * 12  # from low to high: 1.5 below the point, 2 above
    assert any(isinstance(c, LineCollection) for c in ax.collections)
    # The old call, without intervals, still draws (no error bars).
    assert _errorbars(plot_proportion_accuracy(p, clean, corr, cats).axes[0]) == 0


def test_gain_per_corruption_and_pareto_figures_draw_intervals():
    from study.reporting.figures_study import plot_pareto, plot_per_corruption, plot_perturbation_gain

    sigma, gain = np.array([0.0, 0.2, 0.4]), np.array([0.0, 1.0, 3.0])
    fig = plot_perturbation_gain(
        sigma, gain, ["free", "fixed", "fixed"], gain_ci=np.array([[np.nan, np.nan], [-0.5, 2.5], [1.0, 5.0]])
    )
    assert _errorbars(fig.axes[0]) == 1  # the fixed-mode trials; the baseline has none
    fig = plot_per_corruption(
        {"baseline": {"fog": 60.0, "snow": 50.0}, "pareto-1": {"fog": 70.0, "snow": 55.0}},
        {"baseline": {"fog": (58.0, 62.0), "snow": (48.0, 52.0)}},
    )
    assert _errorbars(fig.axes[0]) == 1  # one bar container with error bars: the baseline's
    values = np.array([[90.0, 60.0], [88.0, 70.0]])
    fig = plot_pareto(
        values,
        np.array([0.5, 0.3]),
        np.array([True, True]),
        labels=["a", "b"],
        intervals=np.array([[[89.0, 91.0], [59.0, 61.0]], [[87.0, 89.0], [69.0, 71.0]]]),
    )
    assert _errorbars(fig.axes[0]) == 1
