"""``freqstudy report``: what a study says, as one self-contained HTML file
(figures embedded as base64 PNG, no external resources), the CSV tables and
the PNGs beside it, all also logged to the study's parent run.

Contents: (1) frequency proportion against clean and corruption accuracy with
one line per corruption category, the paper's central figure; (2) perturbation
strength against robustness gain; (3) per-corruption accuracy of the baseline
and the Pareto models; (4) learned alpha distributions; (5) robustness gain,
clean drop and relative mCE of every complete trial against the baseline;
(6) "Frequency sensitivity": the Fourier heat maps of the baseline and the
Pareto models (when their trials measured them) on one colour scale, with
their differences from the baseline's; (7) "Which settings matter": the
hyperparameter importance of each objective over the complete trials
(``study.analysis.importance``); and the Pareto figure and table.
Choosing uses the validation objectives (``study.selection.choice.choose``); the
descriptive figures show test numbers, which are reported, never chosen on.

Intervals: with the trials' per-image outcomes (``outcomes.npz``), every table
gives 95% intervals and every figure of an accuracy or a gain error bars. A gain,
clean drop or relative mCE has the paired interval against the baseline over
source images (``Choice.gains``, :func:`study.analysis.paired.gain_interval`); a
trial's own accuracy the bootstrap interval over the images it was evaluated on
(:func:`trial_intervals`, :func:`study.analysis.paired.group_summary`; over seeds
then images for a configuration with replicates).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from study import metrics as M
from study.analysis.outcomes import Outcomes
from study.files import write_bytes_atomic
from study.reporting.formatting import csv_bytes
from study.reporting.html import render_html
from study.reporting.importance_text import importance_text, study_importance
from study.reporting.intervals import Intervals, report_split, trial_intervals
from study.reporting.report_figures import (
    FOURIER_FIGURE,
    FOURIER_METRICS,
    IMPORTANCE_FIGURE,
    build_figures,
    fourier_figure,
)
from study.reporting.rows import corruption_accuracy, importance_rows, pareto_csv_rows, trial_rows
from study.selection.choice import (
    Choice,
    pareto_rows,
    trial_label,
)

__all__ = ["FOURIER_FIGURE", "FOURIER_METRICS", "REPORT_ARTIFACTS", "write_report"]

REPORT_ARTIFACTS = "report"  # artifact folder on the parent run
IMPORTANCE_CSV = "importance.csv"


def write_report(
    choice: Choice,
    out: Path,
    alpha: dict[str, np.ndarray],
    fourier: dict[str, np.ndarray] | None = None,
    outcomes: Mapping[str, Outcomes] | None = None,
) -> list[Path]:
    """Write ``report.html``, ``trials.csv``, ``pareto.csv``, ``per_corruption.csv``
    and the PNGs into ``out``; returns the paths.

    ``fourier``: the Fourier heat maps of :func:`study.tracking.queries.fourier_maps`; with any, the figure
    ``fourier_heatmaps.png`` is written and shown under "Frequency sensitivity".
    ``outcomes``: run_id -> per-image outcomes (``study.tracking.gains.study_outcomes``);
    with them every trial's accuracies get intervals (:func:`trial_intervals`) in the
    tables and error bars in the figures (the gains' intervals come from ``choice.gains``).
    "Which settings matter" writes ``importance.png`` and ``importance.csv`` when there
    is an importance to show.
    """
    from study.reporting.figures_study import plot_importance
    from study.reporting.figures_trial import save_figure

    out.mkdir(parents=True, exist_ok=True)
    intervals = trial_intervals(choice, outcomes) if outcomes else Intervals()
    rows = trial_rows(choice, intervals)
    pareto = pareto_rows(choice)
    split = report_split(choice.trials)
    written: list[Path] = []
    pngs: dict[str, tuple[bytes, str]] = {}
    for name, (fig, caption) in build_figures(choice, alpha, intervals).items():
        path = save_figure(fig, out / name)
        pngs[name] = (path.read_bytes(), caption)
        written.append(path)
    per_rows = []
    models = ([("baseline", choice.baseline)] if choice.baseline else []) + [
        (f"pareto-{i}", c.trial) for i, c in enumerate(choice.result.front, start=1)
    ]
    for role, t in models:
        for name, acc in corruption_accuracy(t, split).items():
            lo, hi = intervals.of(t["run_id"], M.corruption_key(split, name))
            per_rows.append(
                {
                    "model": role,
                    "trial": trial_label(t),
                    "run_id": t["run_id"],
                    "corruption": name,
                    "category": M.category_of(name) or "extra",
                    f"{split}_accuracy": acc,
                    f"{split}_accuracy_ci_low": lo,
                    f"{split}_accuracy_ci_high": hi,
                }
            )
    written.append(write_bytes_atomic(out / "trials.csv", csv_bytes(rows)))
    written.append(
        write_bytes_atomic(out / "pareto.csv", csv_bytes(pareto_csv_rows(choice, pareto, intervals)))
    )
    written.append(write_bytes_atomic(out / "per_corruption.csv", csv_bytes(per_rows)))
    fourier_png = fourier_figure(choice, fourier) if fourier else None
    if fourier_png is not None:
        written.append(write_bytes_atomic(out / FOURIER_FIGURE, fourier_png[0]))
    importance = study_importance(choice)
    importance_png = None
    if importance.values:
        path = save_figure(plot_importance(importance.values), out / IMPORTANCE_FIGURE)
        importance_png = path.read_bytes()
        written.append(path)
        written.append(write_bytes_atomic(out / IMPORTANCE_CSV, csv_bytes(importance_rows(importance))))
    section = (importance_png, importance_text(choice, importance))
    page = render_html(choice, rows, pareto, pngs, fourier_png, intervals, section)
    written.append(write_bytes_atomic(out / "report.html", page.encode()))
    return written
