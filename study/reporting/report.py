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
their differences from the baseline's; and the Pareto figure and table.
Choosing uses the validation objectives (``study.pareto_cmd.choose``); the
descriptive figures show test numbers, which are reported, never chosen on.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from study import metrics as M
from study.files import write_bytes_atomic
from study.reporting.figures_study import pareto_figure
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


# -- rows -----------------------------------------------------------------------------


def report_split(trials: Sequence[dict[str, Any]]) -> str:
    """``test`` when the study evaluated the test split, else ``val``."""
    return "test" if any(M.TEST_CLEAN_ACC in t["metrics"] for t in trials) else "val"


def trial_rows(choice: Choice) -> list[dict[str, Any]]:
    """One row per trial (all of them, incomplete ones with their reason), for the CSV."""
    ranks = {c.run_id: c.rank for c in choice.result.candidates}
    aliases = aliases_of(choice)
    base = choice.baseline
    rows = []
    for t in choice.trials:
        row: dict[str, Any] = {
            "trial": trial_label(t),
            "run_id": t["run_id"],
            "status": t["tags"].get(M.TAG_STATUS, ""),
            "excluded": P.incomplete_reason(t)
            or ("" if t["run_id"] in ranks else "missing or NaN objective"),
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
        for cat in M.CATEGORIES:
            row[M.category_key("test", cat)] = P.metric_of(t, M.category_key("test", cat))
        row.update(P.trial_gains(t, base))
        rows.append(row)
    return rows


def corruption_accuracy(trial: dict[str, Any], split: str) -> dict[str, float]:
    """corruption name -> accuracy (percent, mean over the severities evaluated)."""
    out = {}
    for name in M.ALL_CORRUPTIONS:
        v = P.metric_of(trial, M.corruption_key(split, name))
        if not math.isnan(v):
            out[name] = v
    return out


# -- figures --------------------------------------------------------------------------


def build_figures(choice: Choice, alpha: dict[str, np.ndarray]) -> dict[str, Any]:
    """file name -> (Figure, caption), in report order."""
    from study.reporting.figures_study import (
        plot_alpha_distributions,
        plot_per_corruption,
        plot_perturbation_gain,
        plot_proportion_accuracy,
    )

    split = report_split(choice.trials)
    complete = [c.trial for c in choice.result.candidates]
    p_hat = np.array([P.metric_of(t, M.FILTER_PROPORTION) for t in complete])
    figs: dict[str, Any] = {}
    figs["proportion_accuracy.png"] = (
        plot_proportion_accuracy(
            p_hat,
            np.array([P.metric_of(t, f"{split}/clean_acc") for t in complete]),
            np.array([P.metric_of(t, f"{split}/corruption_acc") for t in complete]),
            {
                cat: np.array([P.metric_of(t, M.category_key(split, cat)) for t in complete])
                for cat in M.CATEGORIES
                if any(M.category_key(split, cat) in t["metrics"] for t in complete)
            },
        ),
        f"Measured frequency proportion p̂ of the first layer against {split} clean accuracy, mean "
        f"corruption accuracy and each corruption category (lines: means over trials with the same p̂; "
        f"complete trials only).",
    )
    gains = [P.trial_gains(t, choice.baseline) for t in complete]
    figs["perturbation_gain.png"] = (
        plot_perturbation_gain(
            np.array([P.float_param(t, "frequency.perturbation") for t in complete]),
            np.array([g[M.ROBUSTNESS_GAIN] for g in gains]),
            [str(P.param_of(t, "frequency.mode", "?")) for t in complete],
        ),
        "Power-spectrum perturbation σ against test robustness gain over the baseline (points), by mode.",
    )
    per = {}
    if choice.baseline is not None:
        per[f"baseline ({trial_label(choice.baseline)})"] = corruption_accuracy(choice.baseline, split)
    for i, c in enumerate(choice.result.front, start=1):
        per.setdefault(f"pareto-{i} ({trial_label(c.trial)})", corruption_accuracy(c.trial, split))
    figs["per_corruption.png"] = (
        plot_per_corruption(per),
        f"{split} accuracy per corruption (mean over severities) of the baseline and the Pareto models.",
    )
    figs["alpha.png"] = (
        plot_alpha_distributions(alpha),
        "Learned per-filter α (low-band gain) after the last epoch of each learned-mode trial; trials that "
        "logged no per-filter α are pooled in the box 'mean α per trial' by their final mean α.",
    )
    figs["pareto.png"] = (
        pareto_figure(choice),
        "Validation objectives of every complete trial; the Pareto front outlined and joined, the baseline "
        "starred, colour = measured frequency proportion p̂; crosses: trials not chosen from.",
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


def _csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    if rows:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    return buf.getvalue().encode()


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return "∞" if math.isinf(v) else f"{v:.{digits}f}"
    return str(v)


def _html_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(k)))}</td>" for k, _ in columns) + "</tr>"
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
) -> str:
    """The report page; every figure inline as a data: URI.

    ``fourier``: the "Frequency sensitivity" figure and caption (:func:`fourier_figure`);
    None: the section says that no map was logged.
    """
    e = html.escape
    base = choice.baseline
    complete = [r for r in rows if r["pareto_rank"] != ""]
    complete.sort(
        key=lambda r: (
            r["pareto_rank"],
            -(r[M.ROBUSTNESS_GAIN] if not math.isnan(r[M.ROBUSTNESS_GAIN]) else -1e9),
        )
    )
    gain_cols = [
        ("trial", "trial"),
        ("mode", "mode"),
        ("pareto_rank", "Pareto rank"),
        ("aliases", "aliases"),
        (M.FILTER_PROPORTION, "p̂"),
        ("perturbation", "σ"),
        (M.TEST_CLEAN_ACC, "test clean %"),
        (M.TEST_CORRUPTION_ACC, "test CIFAR-10-C %"),
        (M.ROBUSTNESS_GAIN, "robustness gain (pts)"),
        (M.CLEAN_DROP, "clean drop (pts)"),
        (M.RELATIVE_MCE, "relative mCE (%)"),
    ]
    obj_cols = [(o.metric, f"{o.metric} ({o.short})") for o in choice.result.objectives]
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
            (M.TEST_CLEAN_ACC, "test clean %"),
            (M.TEST_CORRUPTION_ACC, "test CIFAR-10-C %"),
            (M.ROBUSTNESS_GAIN, "gain"),
            (M.CLEAN_DROP, "clean drop"),
            (M.RELATIVE_MCE, "rel. mCE"),
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
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>freqstudy report: {e(choice.study)}</title>
<style>{STYLE}</style></head><body>
<h1>Study {e(choice.study)}</h1>
<p>{len(choice.trials)} trials; {len(choice.result.candidates)} finished their full training budget and are
chosen from ({e(choice.result.describe_excluded())}); {len(pareto)} on the Pareto front of
{e(", ".join(f"{o.metric} ({o.short})" for o in choice.result.objectives))}.
Baseline: {base_txt}. Choosing uses validation metrics only; test and CIFAR-10-C numbers are reported.
Gains are test-split points against the baseline; relative mCE = 100 · Σ<sub>c</sub> E<sub>c</sub>(model) /
Σ<sub>c</sub> E<sub>c</sub>(baseline) over the benchmark corruptions evaluated.</p>
<h2>Pareto set</h2>
{_html_table(pareto, pareto_cols)}
<h2>Figures</h2>
{figs}
{_fourier_section(choice, fourier)}
<h2>Against the baseline (complete trials)</h2>
{_html_table(complete, gain_cols)}
</body></html>
"""


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
    choice: Choice, out: Path, alpha: dict[str, np.ndarray], fourier: dict[str, np.ndarray] | None = None
) -> list[Path]:
    """Write ``report.html``, ``trials.csv``, ``pareto.csv``, ``per_corruption.csv``
    and the PNGs into ``out``; returns the paths.

    ``fourier``: the Fourier heat maps of :func:`fourier_maps`; with any, the figure
    ``fourier_heatmaps.png`` is written and shown under "Frequency sensitivity".
    """
    from study.reporting.figures_trial import save_figure

    out.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(choice)
    pareto = pareto_rows(choice)
    split = report_split(choice.trials)
    written: list[Path] = []
    pngs: dict[str, tuple[bytes, str]] = {}
    for name, (fig, caption) in build_figures(choice, alpha).items():
        path = save_figure(fig, out / name)
        pngs[name] = (path.read_bytes(), caption)
        written.append(path)
    per_rows = []
    models = ([("baseline", choice.baseline)] if choice.baseline else []) + [
        (f"pareto-{i}", c.trial) for i, c in enumerate(choice.result.front, start=1)
    ]
    for role, t in models:
        for name, acc in corruption_accuracy(t, split).items():
            per_rows.append(
                {
                    "model": role,
                    "trial": trial_label(t),
                    "run_id": t["run_id"],
                    "corruption": name,
                    "category": M.category_of(name) or "extra",
                    f"{split}_accuracy": acc,
                }
            )
    written.append(write_bytes_atomic(out / "trials.csv", _csv_bytes(rows)))
    written.append(
        write_bytes_atomic(
            out / "pareto.csv",
            _csv_bytes(
                [{k: (" ".join(v) if isinstance(v, list) else v) for k, v in r.items()} for r in pareto]
            ),
        )
    )
    written.append(write_bytes_atomic(out / "per_corruption.csv", _csv_bytes(per_rows)))
    fourier_png = fourier_figure(choice, fourier) if fourier else None
    if fourier_png is not None:
        written.append(write_bytes_atomic(out / FOURIER_FIGURE, fourier_png[0]))
    written.append(
        write_bytes_atomic(out / "report.html", render_html(choice, rows, pareto, pngs, fourier_png).encode())
    )
    return written
