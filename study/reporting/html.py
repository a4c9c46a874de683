"""The report page: one self-contained HTML document, every figure inline as a data: URI
and every table's numbers formatted by :mod:`study.reporting.formatting`."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from typing import Any

from study import metrics as M
from study.analysis.gains import GAINS
from study.band_warnings import report_note
from study.reporting.formatting import fmt, fmt_p, with_ci
from study.reporting.intervals import Intervals
from study.reporting.report_figures import FOURIER_FIGURE, FOURIER_METRICS, IMPORTANCE_FIGURE
from study.reporting.rows import configuration_rows
from study.selection import choose as P
from study.selection.choice import (
    Choice,
    fourier_models,
    shown_settings,
    trial_label,
)
from study.selection.race_outcomes import (
    other_labels,
    race_of,
    race_text,
    seeds_line,
    seeds_text,
    shows_races,
)


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
    "td{overflow-wrap:anywhere}"  # a 32-character run id wraps instead of running off the page
    "th{background:#f2f2f2}figure{margin:1.5em 0}img{max-width:100%}figcaption{font-size:13px;color:#555}"
)


def _counts(choice: Choice, runs: int) -> str:
    """``12 trial runs in 4 configurations; 4 configurations``: what the opening sentence counts
    (a configuration run at several seeds is chosen from once, as the mean over its seeds)."""
    configs = len(choice.configurations) or runs
    complete = len(choice.result.candidates)
    if configs == runs:
        return f"{runs} trials; {complete}"
    return f"{runs} trial runs in {configs} configurations; {complete} configurations"


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
            gain_cols.append(
                (lambda r, g=g: fmt_p(r.get(f"{g.name}_p_adjusted")), f"p adj, Holm ({g.short})")
            )
    # What each row's gain intervals speak of: "configurations" or "networks" (one seed: two networks).
    gain_cols.append(("gain_scope", "intervals about"))
    # Seeds per configuration (and, in a racing study, why a configuration got no more); a study of
    # one seed each keeps its narrow tables.
    configs = [c.trial for c in choice.result.candidates]
    seeds = seeds_line(configs)
    race_cols: list[tuple[Any, str]] = [(seeds_text, "seeds")] if seeds is not None else []
    if shows_races(configs):
        label = other_labels(choice.configurations, trial_label)
        race_cols.append((lambda r: race_text(race_of(r), label), "race ended"))
    gain_cols[4:4] = race_cols
    seeds_txt = f" {seeds[0].upper()}{seeds[1:]}." if seeds else ""
    obj_cols = [(objective(o.metric), f"{o.metric} ({o.short}) [95% CI]") for o in choice.result.objectives]
    objs = {o.metric for o in choice.result.objectives}
    pareto_cols = (
        [
            ("position", "#"),
            ("trial", "trial"),
            ("mode", "mode"),
            *race_cols,
            (lambda r: fmt(shown_settings(r)["proportion"]), "p"),
            (lambda r: fmt(shown_settings(r)["cutoff"]), "cutoff"),
            ("perturbation", "σ"),
            (lambda r: fmt(shown_settings(r)["proportion_weight"]), "λ"),
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
            (lambda r: r["run_id"], "run"),
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
            "Each gain, clean drop and relative mCE has its 95% interval and a two-sided p-value. With "
            "2 or more seeds per configuration: a t interval over seed means with Welch-Satterthwaite "
            "degrees of freedom folding in the image-level variance, p from the same statistic, about "
            "configurations. With one seed: a paired bootstrap over source images (an image with all its "
            "corrupted versions, and both models' outcomes on it, resampled together), exact McNemar "
            "(clean drop) or sign-flip (gain) p, about two trained networks, not configurations. "
            "'p adj': Holm over every configuration's gain and clean drop (the primary family)."
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
<p>{e(_counts(choice, len(rows)))} finished their full training budget and are
chosen from ({e(choice.result.describe_excluded())}); {len(pareto)} on the Pareto front of
{e(", ".join(f"{o.metric} ({o.short})" for o in choice.result.objectives))}.
Baseline: {base_txt}.{e(seeds_txt)}
Choosing uses validation metrics only; test and CIFAR-10-C numbers are reported.
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
