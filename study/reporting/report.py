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

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from study import metrics as M
from study.analysis.gains import GAINS, gain_fields
from study.analysis.importance import ROUGH_BELOW, Importance, param_importances
from study.analysis.outcomes import Outcomes
from study.analysis.paired import DEFAULT_RESAMPLES, group_summary
from study.analysis.statistics import available_statistics
from study.band_warnings import report_note
from study.files import write_bytes_atomic
from study.reporting.figures_study import pareto_figure
from study.reporting.formatting import csv_bytes, flat_intervals, fmt, fmt_p, with_ci
from study.selection import choose as P
from study.selection.choice import Choice, aliases_of, pareto_rows, trial_label

REPORT_ARTIFACTS = "report"  # artifact folder on the parent run
ALPHA_ARTIFACT = "alpha.npy"  # (O,) learned alpha of a learned-mode trial, when the trial logged it
METRICS_ARTIFACT = "metrics.json"  # its "alpha_history" is (epochs, O) in learned mode
# The "Frequency sensitivity" section: the trials' Fourier heat maps (study.analysis.fourier).
FOURIER_ARTIFACT = "fourier_heatmap.npy"  # = study.analysis.fourier.FOURIER_HEATMAP_NPY (no torch here)
FOURIER_FIGURE = "fourier_heatmaps.png"
FOURIER_METRICS = ("fourier/error_low", "fourier/error_middle", "fourier/error_high")
MAX_FOURIER_PANELS = 7  # the baseline and the first 6 Pareto models: a wider figure stops being legible
IMPORTANCE_FIGURE = "importance.png"
IMPORTANCE_CSV = "importance.csv"
# Each complete trial's own intervals are a bootstrap per statistic (about 0.1 s each at 10,000
# images); beyond this many complete trials they use LARGE_STUDY_RESAMPLES, and the captions say so.
LARGE_STUDY = 50
LARGE_STUDY_RESAMPLES = 999
GAIN_SPLIT = "test"  # the gains the tables and figures show (study.selection.choose.trial_gains)


# -- rows -----------------------------------------------------------------------------


def report_split(trials: Sequence[dict[str, Any]]) -> str:
    """``test`` when the study evaluated the test split, else ``val``."""
    return "test" if any(M.TEST_CLEAN_ACC in t["metrics"] for t in trials) else "val"


def trial_rows(choice: Choice, intervals: Intervals | None = None) -> list[dict[str, Any]]:
    """One row per trial (all of them, incomplete ones with their reason), for the CSV.

    Each accuracy has ``<metric>_ci_low``/``_ci_high`` (the trial's own interval, see
    :func:`trial_intervals`) and each gain its paired interval against the baseline and
    p-value (``robustness_gain_ci_low``, ..., ``robustness_gain_p``; ``val_`` for the
    validation split); blank without per-image outcomes, and blank on the runs of a
    configuration with several replicates (whose intervals are the configuration's:
    :func:`configuration_rows`, ``pareto.csv``)."""
    ranks = {c.run_id: c.rank for c in choice.result.candidates}
    aliases = aliases_of(choice)
    rows = []
    for t in choice.trials:
        runs = choice.members.get(t["run_id"], [t] if not choice.members else [])
        own = len(runs) == 1  # the run is its configuration: the intervals are its own
        rows.append(_row(choice, t, ranks, aliases, intervals if own else None, own))
    return rows


def configuration_rows(choice: Choice, intervals: Intervals | None = None) -> list[dict[str, Any]]:
    """One row per complete configuration (a trial without replicates is its own), fields as
    :func:`trial_rows`, metrics the means over its replicates, with ``replicates``."""
    ranks = {c.run_id: c.rank for c in choice.result.candidates}
    aliases = aliases_of(choice)
    rows = []
    for c in choice.result.candidates:
        row = _row(choice, c.trial, ranks, aliases, intervals, True)
        row["replicates"] = int(c.trial.get("replicates", 1))
        rows.append(row)
    return rows


def _row(choice, t, ranks, aliases, intervals: Intervals | None, gains: bool) -> dict[str, Any]:
    base = choice.baseline
    row: dict[str, Any] = {
        "trial": trial_label(t),
        "run_id": t["run_id"],
        "status": t["tags"].get(M.TAG_STATUS, ""),
        "excluded": P.incomplete_reason(t) or ("" if t["run_id"] in ranks else "missing or NaN objective"),
        "baseline": base is not None and base["run_id"] == t["run_id"],
        "pareto_rank": ranks.get(t["run_id"], ""),
        "aliases": " ".join(aliases.get(t["run_id"], [])),
        **P.frequency_of(t),
        "stem_kernel": P.param_of(t, "model.stem_kernel", ""),
        "epochs": P.param_of(t, "train.epochs", ""),
        M.EPOCHS_COMPLETED: P.metric_of(t, M.EPOCHS_COMPLETED),
        M.FILTER_PROPORTION: P.metric_of(t, M.FILTER_PROPORTION),
        M.FILTER_MEAN_ALPHA: P.metric_of(t, M.FILTER_MEAN_ALPHA),
    }
    for key in (M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC, M.TEST_CLEAN_ACC, M.TEST_CORRUPTION_ACC):
        row[key] = P.metric_of(t, key)
        lo, hi = intervals.of(t["run_id"], key) if intervals is not None else (math.nan, math.nan)
        row[f"{key}_ci_low"], row[f"{key}_ci_high"] = lo, hi
    for cat in M.CATEGORIES:
        row[M.category_key("test", cat)] = P.metric_of(t, M.category_key("test", cat))
    row.update(P.trial_gains(t, base))
    row.update(flat_intervals(gain_fields(choice.gains.get(t["run_id"], {}) if gains else {})))
    return row


def corruption_accuracy(trial: dict[str, Any], split: str) -> dict[str, float]:
    """corruption name -> accuracy (percent, mean over the severities evaluated)."""
    out = {}
    for name in M.ALL_CORRUPTIONS:
        v = P.metric_of(trial, M.corruption_key(split, name))
        if not math.isnan(v):
            out[name] = v
    return out


# -- intervals and importance ---------------------------------------------------------


@dataclass(frozen=True)
class Intervals:
    """Each complete trial's own accuracies with intervals, from its per-image outcomes.

    Attributes:
        by_run: run_id -> metric key (``test/clean_acc``, ``test/category/noise``,
            ``test/corruption/fog``, ``val/corruption_acc``, ...) -> ``(low, high)``, percent.
        n_resamples: bootstrap resamples per statistic.
        confidence: of the intervals.
    """

    by_run: Mapping[str, Mapping[str, tuple[float, float]]] = field(default_factory=dict)
    n_resamples: int = DEFAULT_RESAMPLES
    confidence: float = 0.95

    def of(self, run_id: str, key: str) -> tuple[float, float]:
        """``(low, high)`` of a trial's metric; ``(nan, nan)`` when there is none."""
        return tuple(self.by_run.get(run_id, {}).get(key, (math.nan, math.nan)))  # type: ignore[return-value]

    def __bool__(self) -> bool:
        return any(self.by_run.values())

    def describe(self) -> str:
        """How the intervals were made, for captions: "95% interval of ... , {describe()}"."""
        fewer = (
            f"; {self.n_resamples} resamples, fewer than the default {DEFAULT_RESAMPLES}, as the study has "
            f"more than {LARGE_STUDY} complete trials"
            if self.n_resamples < DEFAULT_RESAMPLES
            else ""
        )
        return (
            "a percentile bootstrap over the evaluated images (an image with all its corrupted versions "
            f"resampled together; over seeds, then images, for a configuration with replicates{fewer})"
        )


def trial_intervals(
    choice: Choice,
    outcomes: Mapping[str, Outcomes],
    *,
    seed: int = 0,
    n_resamples: int | None = None,
) -> Intervals:
    """The intervals of each complete trial's own accuracies that the report shows.

    Computed once per trial (configurations: over their replicates' outcomes): on the
    report split clean, corruption-mean and per-category accuracy, and per corruption
    for the baseline and the Pareto models (the per-corruption figure); on ``val`` clean
    and corruption accuracy and every objective that is such a statistic (the Pareto
    figure and table). Trials without outcomes, or whose replicates were evaluated on
    different images, get none.

    Args:
        n_resamples: per statistic; default :data:`~study.analysis.paired.DEFAULT_RESAMPLES`,
            :data:`LARGE_STUDY_RESAMPLES` for studies of more than :data:`LARGE_STUDY`
            complete trials.
    """
    split = report_split(choice.trials)
    complete = [c.trial for c in choice.result.candidates]
    if n_resamples is None:
        n_resamples = DEFAULT_RESAMPLES if len(complete) <= LARGE_STUDY else LARGE_STUDY_RESAMPLES
    models = {t["run_id"] for _, t in fourier_models(choice)}
    records = complete + [t for _, t in fourier_models(choice) if all(t is not c for c in complete)]
    val_extra = {o.metric[len("val/") :] for o in choice.result.objectives if o.metric.startswith("val/")}
    by_run: dict[str, dict[str, tuple[float, float]]] = {}
    for t in records:
        runs = choice.members.get(t["run_id"]) or [t]
        group = [outcomes[r["run_id"]] for r in runs if r["run_id"] in outcomes]
        if not group:
            continue
        for sp in dict.fromkeys((split, "val")):
            if not all(sp in o.splits for o in group):
                continue
            available = available_statistics(group[0], sp)
            wanted = {"clean_acc", "corruption_acc"}
            if sp == split:
                wanted |= {a for a in available if a.startswith("category/")}
                if t["run_id"] in models:
                    wanted |= {a for a in available if a.startswith("corruption/")}
            if sp == "val":
                wanted |= val_extra
            try:
                summaries = group_summary(
                    group, sp, statistics=sorted(wanted & available), n_resamples=n_resamples, seed=seed
                )
            except ValueError:
                continue  # replicates evaluated on different images: no interval
            mine = by_run.setdefault(t["run_id"], {})
            for name, summary in summaries.items():
                mine[f"{sp}/{name}"] = (summary.ci_low, summary.ci_high)
    return Intervals(by_run, n_resamples)


def searched_parameters(choice: Choice) -> tuple[list[str], bool]:
    """The study's searched parameters (its parent run's ``study.parameters``), and whether
    they came from there; without it, the parameters whose values differ across the
    complete trials (baseline excluded)."""
    listed = str(((choice.parent or {}).get("params") or {}).get("study.parameters") or "")
    names = [n.strip() for n in listed.split(",") if n.strip()]
    if names:
        return names, True
    trials = _importance_trials(choice)
    keys = dict.fromkeys(k for c in trials for k in c.trial.get("params", {}))
    return [k for k in keys if len({str(c.trial["params"].get(k)) for c in trials}) > 1], False


def _importance_trials(choice: Choice) -> list[P.Candidate]:
    base = choice.baseline["run_id"] if choice.baseline is not None else None
    return [c for c in choice.result.candidates if c.run_id != base]


def study_importance(choice: Choice, *, seed: int = 0) -> Importance:
    """Hyperparameter importance of each objective over the complete trials (configurations),
    the baseline excluded: the sampler did not draw it, and its settings may lie outside the
    space (:func:`study.analysis.importance.param_importances`)."""
    names, _ = searched_parameters(choice)
    trials = _importance_trials(choice)
    objs = choice.result.objectives
    return param_importances(
        [c.trial.get("params", {}) for c in trials],
        [[c.objectives[o.metric] for o in objs] for c in trials],
        [o.metric for o in objs],
        names,
        directions=[o.direction for o in objs],
        seed=seed,
    )


def importance_rows(importance: Importance) -> list[dict[str, Any]]:
    """``importance.csv``: objective, parameter, importance (most important first per objective)."""
    return [
        {"objective": objective, "parameter": name, "importance": value}
        for objective, ranked in importance.values.items()
        for name, value in ranked.items()
    ]


def importance_text(choice: Choice, importance: Importance) -> str:
    """The section's sentences: what the importances rest on, or why there are none."""
    _, from_parent = searched_parameters(choice)
    where = (
        ""
        if from_parent
        else " The study's parent run names no searched parameters (study.parameters): the parameters "
        "assessed are those whose values differ across the trials."
    )
    if importance.note or not importance.values:
        why = importance.note or "Every objective takes the same value in every complete trial."
        return f"{why} No importance is shown.{where}"
    rough = (
        f"; with fewer than ~{ROUGH_BELOW} trials these ranks are rough"
        if importance.n_trials < ROUGH_BELOW
        else ""
    )
    notes = ["the baseline excluded"] if choice.baseline is not None else []
    if any(int(c.trial.get("replicates", 1)) > 1 for c in choice.result.candidates):
        notes.append("a configuration with replicates counts once, at the mean over its seeds")
    text = (
        f"Importance over {importance.n_trials} complete trials"
        f"{' (' + '; '.join(notes) + ')' if notes else ''}, evaluator "
        f"{importance.evaluator}, seeded{rough}. Each objective's importances sum to 1. "
        f"Parameters assessed: {', '.join(importance.parameters)}."
    )
    if importance.left_out:
        text += " Left out: " + "; ".join(f"{k} ({why})" for k, why in importance.left_out.items()) + "."
    if importance.skipped:
        text += " No importance for " + "; ".join(f"{k} ({why})" for k, why in importance.skipped.items())
        text += "."
    return text + where


# -- figures --------------------------------------------------------------------------


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
        "Learned per-filter α (low-band gain) after the last epoch of each learned-mode trial; trials that "
        "logged no per-filter α are pooled in the box 'mean α per trial' by their final mean α.",
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


def learned_alpha(choice: Choice, client, workdir: Path) -> dict[str, np.ndarray]:
    """Per-filter alpha after the last epoch of each complete learned-mode trial.

    Read from the trial's ``alpha.npy`` artifact when it has one, else from the
    last row of ``alpha_history`` (epochs x filters) in its ``metrics.json``;
    trials with neither contribute their final ``filters/mean_alpha`` to one
    pooled box, so the figure still shows where the proportion went.
    """
    from study.tracking.queries import download_artifact

    out: dict[str, np.ndarray] = {}
    pooled = []
    for c in choice.result.candidates:
        t = c.trial
        if P.param_of(t, "frequency.mode") != "learned":
            continue
        alpha = _alpha_from_artifacts(t["run_id"], client, workdir / t["run_id"], download_artifact)
        if alpha is not None:
            out[trial_label(t)] = alpha
        elif not math.isnan(P.metric_of(t, M.FILTER_MEAN_ALPHA)):
            pooled.append(P.metric_of(t, M.FILTER_MEAN_ALPHA))
    if pooled:
        out["mean α per trial"] = np.array(pooled)
    return out


def _alpha_from_artifacts(run_id: str, client, workdir: Path, download) -> np.ndarray | None:
    path = download(run_id, ALPHA_ARTIFACT, workdir, client=client)
    if path is not None:
        return np.load(path, allow_pickle=False).ravel()
    path = download(run_id, METRICS_ARTIFACT, workdir, client=client)
    if path is None:
        return None
    try:
        history = json.loads(Path(path).read_text()).get("alpha_history")
    except (OSError, ValueError, AttributeError):
        return None
    if not history:
        return None
    last = np.asarray(history[-1], dtype=float).ravel()
    return last if last.size and np.isfinite(last).all() else None


def fourier_models(choice: Choice) -> list[tuple[str, dict[str, Any]]]:
    """``(name, trial)`` of the baseline (``baseline``) and the Pareto models (``pareto-1``...),
    in report order, each trial once (a baseline on the front keeps the name ``baseline``)."""
    models = ([("baseline", choice.baseline)] if choice.baseline else []) + [
        (f"pareto-{i}", c.trial) for i, c in enumerate(choice.result.front, start=1)
    ]
    seen: set[str] = set()
    out = []
    for name, t in models:
        if t["run_id"] not in seen:
            seen.add(t["run_id"])
            out.append((name, t))
    return out


def fourier_maps(choice: Choice, client, workdir: Path) -> dict[str, np.ndarray]:
    """The Fourier heat maps that the baseline and the Pareto models logged, by their names
    in :func:`fourier_models` (at most ``MAX_FOURIER_PANELS``); models without one are left out.

    Each map is the trial's ``fourier_heatmap.npy`` artifact, loaded without pickle; a file
    that is not a square 2-D float array is skipped.
    """
    from study.tracking.queries import download_artifact

    out: dict[str, np.ndarray] = {}
    for name, t in fourier_models(choice):
        if len(out) == MAX_FOURIER_PANELS:
            break
        path = download_artifact(t["run_id"], FOURIER_ARTIFACT, workdir / t["run_id"], client=client)
        if path is None:
            continue
        try:
            heatmap = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            continue
        if heatmap.ndim == 2 and heatmap.shape[0] == heatmap.shape[1] and heatmap.dtype.kind == "f":
            out[name] = heatmap
    return out


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


# -- writing --------------------------------------------------------------------------


def _ci_of(row: Mapping[str, Any], key: str) -> tuple[Any, Any]:
    return row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")


def _html_table(rows: list[dict[str, Any]], columns: list[tuple[Any, str]]) -> str:
    """A table; a column's key is a row field or a function of the row returning the cell's text."""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
    body = "\n".join(
        "<tr>"
        + "".join(f"<td>{html.escape(k(r) if callable(k) else fmt(r.get(k)))}</td>" for k, _ in columns)
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}\n"
    "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}\n"
    "th{background:#f2f2f2}figure{margin:1.5em 0}img{max-width:100%}figcaption{font-size:13px;color:#555}"
)


def render_html(
    choice: Choice,
    rows: list[dict[str, Any]],
    pareto: list[dict[str, Any]],
    pngs: dict[str, tuple[bytes, str]],
    fourier: tuple[bytes, str] | None = None,
    intervals: Intervals | None = None,
    importance: tuple[bytes | None, str] | None = None,
) -> str:
    """The report page; every figure inline as a data: URI.

    ``rows``: the per-run rows (``trials.csv``; counted in the opening paragraph); the
    table against the baseline shows the complete configurations (:func:`configuration_rows`).
    ``fourier``: the "Frequency sensitivity" figure and caption (:func:`fourier_figure`);
    None: the section says that no map was logged. ``intervals``: the trials' own
    (:func:`trial_intervals`). ``importance``: the "Which settings matter" figure (None
    when nothing was computed) and its text; None: the section is left out.
    """
    e = html.escape
    base = choice.baseline
    complete = configuration_rows(choice, intervals)
    complete.sort(
        key=lambda r: (
            r["pareto_rank"],
            -(r[M.ROBUSTNESS_GAIN] if not math.isnan(r[M.ROBUSTNESS_GAIN]) else -1e9),
        )
    )
    iv = intervals or Intervals()

    def acc(key: str, digits: int = 2):
        return lambda r: with_ci(r.get(key), _ci_of(r, key), digits)

    def gain(key: str, digits: int = 2, signed: bool = True):
        return lambda r: with_ci(r.get(key), _ci_of(r, key), digits, signed)

    def objective(metric: str):
        return lambda r: with_ci(r.get(metric), iv.of(r["run_id"], metric))

    def pareto_gain(key: str, digits: int = 2, signed: bool = True):
        return lambda r: with_ci(r.get(key), r.get(f"{key}_ci"), digits, signed)

    gain_cols = [
        ("trial", "trial"),
        ("mode", "mode"),
        ("pareto_rank", "Pareto rank"),
        ("aliases", "aliases"),
        (M.FILTER_PROPORTION, "p̂"),
        ("perturbation", "σ"),
        (acc(M.TEST_CLEAN_ACC), "test clean % [95% CI]"),
        (acc(M.TEST_CORRUPTION_ACC), "test CIFAR-10-C % [95% CI]"),
    ]
    for g in GAINS:
        gain_cols.append((gain(g.name, g.digits, g.signed), f"{g.label} [95% CI]"))
        if g.has_p:
            gain_cols.append((lambda r, g=g: fmt_p(r.get(f"{g.name}_p")), f"p ({g.short})"))
    if any(r.get("replicates", 1) > 1 for r in complete):
        gain_cols.insert(4, ("replicates", "seeds"))
    obj_cols = [(objective(o.metric), f"{o.metric} ({o.short}) [95% CI]") for o in choice.result.objectives]
    objs = {o.metric for o in choice.result.objectives}
    pareto_cols = (
        [
            ("position", "#"),
            ("trial", "trial"),
            ("mode", "mode"),
            ("proportion", "p"),
            ("cutoff", "cutoff"),
            ("perturbation", "σ"),
            ("proportion_weight", "λ"),
            (M.FILTER_PROPORTION, "p̂"),
        ]
        + obj_cols
        + [
            (objective(key), f"{label} [95% CI]")
            for key, label in (
                (M.TEST_CLEAN_ACC, "test clean %"),
                (M.TEST_CORRUPTION_ACC, "test CIFAR-10-C %"),
            )
            if key not in objs
        ]
        + [(pareto_gain(g.name, g.digits, g.signed), f"{g.short} [95% CI]") for g in GAINS]
        + [
            ("run_id", "run"),
        ]
    )
    figs = "\n".join(
        f'<figure><img alt="{e(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
        for name, (data, caption) in pngs.items()
    )
    base_txt = (
        f"{e(trial_label(base))} (run {e(base['run_id'])})"
        if base
        else "none found: gains, clean drop and relative mCE are blank"
    )
    if choice.gains:
        gains_txt = (
            "Each gain, clean drop and relative mCE has its 95% interval from a paired bootstrap over "
            "source images (an image with all its corrupted versions, and both models' outcomes on it, "
            "resampled together; over seeds, then images, for configurations with replicates) and a "
            "two-sided p-value (exact McNemar for the clean drop, a paired sign-flip permutation test "
            "for the gain; a two-level bootstrap one with replicates)."
        )
    elif base:
        gains_txt = "The baseline has no per-image outcomes (outcomes.npz): the gains have no intervals."
    else:
        gains_txt = ""
    acc_txt = (
        f" A trial's own accuracies have {100 * iv.confidence:g}% intervals, {e(iv.describe())}."
        if iv
        else " Accuracies have no intervals: no trial has per-image outcomes (outcomes.npz)."
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>freqstudy report: {e(choice.study)}</title>
<style>{STYLE}</style></head><body>
<h1>Study {e(choice.study)}</h1>
<p>{len(rows)} trials; {len(choice.result.candidates)} finished their full training budget and are
chosen from ({e(choice.result.describe_excluded())}); {len(pareto)} on the Pareto front of
{e(", ".join(f"{o.metric} ({o.short})" for o in choice.result.objectives))}.
Baseline: {base_txt}. Choosing uses validation metrics only; test and CIFAR-10-C numbers are reported.
Gains are test-split points against the baseline; relative mCE = 100 · Σ<sub>c</sub> E<sub>c</sub>(model) /
Σ<sub>c</sub> E<sub>c</sub>(baseline) over the benchmark corruptions evaluated. {e(gains_txt)}{acc_txt}
{e(report_note(choice.trials))}</p>
<h2>Pareto set</h2>
{_html_table(pareto, pareto_cols)}
<h2>Figures</h2>
{figs}
{_fourier_section(choice, fourier)}
<h2>Against the baseline (complete trials)</h2>
{_html_table(complete, gain_cols)}
{_importance_section(importance)}
</body></html>
"""


def _importance_section(importance: tuple[bytes | None, str] | None) -> str:
    """ "Which settings matter": the importance figure and what it rests on, or one sentence."""
    if importance is None:
        return ""
    data, text = importance
    e = html.escape
    if data is None:
        return f"<h2>Which settings matter</h2>\n<p>{e(text)}</p>"
    return (
        f'<h2>Which settings matter</h2>\n<figure><img alt="{e(IMPORTANCE_FIGURE)}" '
        f'src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        f"<figcaption>Hyperparameter importance for each objective "
        f"(optuna.importance over the complete trials).</figcaption></figure>\n<p>{e(text)}</p>"
    )


def _fourier_section(choice: Choice, fourier: tuple[bytes, str] | None) -> str:
    """The "Frequency sensitivity" section: the maps' figure and the band means, or one sentence."""
    e = html.escape
    if fourier is None:
        return (
            "<h2>Frequency sensitivity</h2>\n<p>Neither the baseline nor any Pareto model logged a Fourier "
            "heat map (a trial measures one when <code>eval.fourier_images</code> &gt; 0).</p>"
        )
    data, caption = fourier
    rows = [
        {"model": name, "trial": trial_label(t), **{k: P.metric_of(t, k) for k in FOURIER_METRICS}}
        for name, t in fourier_models(choice)
        if any(k in t["metrics"] for k in FOURIER_METRICS)
    ]
    cols = [("model", "model"), ("trial", "trial")] + [
        (k, f"{k.split('_')[-1]}-band error %") for k in FOURIER_METRICS
    ]
    return (
        f'<h2>Frequency sensitivity</h2>\n<figure><img alt="{e(FOURIER_FIGURE)}" '
        f'src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        f"<figcaption>{e(caption)}</figcaption></figure>\n" + (_html_table(rows, cols) if rows else "")
    )


def write_report(
    choice: Choice,
    out: Path,
    alpha: dict[str, np.ndarray],
    fourier: dict[str, np.ndarray] | None = None,
    outcomes: Mapping[str, Outcomes] | None = None,
) -> list[Path]:
    """Write ``report.html``, ``trials.csv``, ``pareto.csv``, ``per_corruption.csv``
    and the PNGs into ``out``; returns the paths.

    ``fourier``: the Fourier heat maps of :func:`fourier_maps`; with any, the figure
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


def pareto_csv_rows(
    choice: Choice, pareto: list[dict[str, Any]], intervals: Intervals | None = None
) -> list[dict[str, Any]]:
    """``pareto.csv``: the Pareto rows with each ``*_ci`` split into ``_ci_low``/``_ci_high``,
    the objectives' and the validation and test accuracies' intervals beside them
    (``<metric>_ci_low``, ...), and lists (aliases, runs) joined by spaces."""
    iv = intervals or Intervals()
    keys = list(
        dict.fromkeys(
            [o.metric for o in choice.result.objectives]
            + [M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC, M.TEST_CLEAN_ACC, M.TEST_CORRUPTION_ACC]
        )
    )
    out = []
    for r in pareto:
        row: dict[str, Any] = {}
        for k, v in flat_intervals(r).items():
            row[k] = " ".join(map(str, v)) if isinstance(v, list) else v
            if k in keys:
                row[f"{k}_ci_low"], row[f"{k}_ci_high"] = iv.of(r["run_id"], k)
        out.append(row)
    return out
