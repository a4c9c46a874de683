"""What a run's page says about it: the MLflow run description (``mlflow.note.content``,
Markdown) of the study's parent run and of each trial run.

The parent run's description holds the study's summary (what ``freqstudy run`` printed at
its end) and, once ``freqstudy report`` has run, the configuration table with its intervals
(``results.md``), so the result is on the page a researcher opens first, not an artifact
three clicks deep. A trial's description holds its configuration as the console names it
and its headline numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from study import metrics as M

NOTE_TAG = "mlflow.note.content"  # MLflow's run description, rendered as Markdown
NOTE_LIMIT = 8000  # MLflow's longest tag value; longer text would be cut where MLflow chooses
REPORT_HEADING = "## Report"
REPORT_MARK = "<!-- freqstudy report -->"  # where the report part of a parent's description starts

# The numbers a trial's page leads with, in order.
HEADLINE_METRICS = (
    M.VAL_CLEAN_ACC,
    M.VAL_CORRUPTION_ACC,
    M.TEST_CLEAN_ACC,
    M.TEST_CORRUPTION_ACC,
    M.FILTER_PROPORTION,
    M.EPOCHS_COMPLETED,
)
# The configuration keys a trial's page names, when set.
HEADLINE_PARAMS = (
    "frequency.mode",
    "frequency.proportion",
    "frequency.perturbation",
    "frequency.cutoff",
    "frequency.threshold",
    "frequency.proportion_weight",
    "model.width",
    "model.stem_kernel",
    "train.epochs",
    "train.lr",
    "seed",
)


def fit(text: str, limit: int = NOTE_LIMIT, *, where: str = "") -> str:
    """``text`` cut to ``limit`` characters at a line end, saying where the rest is."""
    if len(text) <= limit:
        return text
    tail = f"\n\n… cut here to fit MLflow's description; the whole text is {where or 'in the artifacts'}."
    cut = text[: limit - len(tail)]
    return cut[: cut.rfind("\n") if "\n" in cut else len(cut)] + tail


def _number(v: Any) -> str:
    if isinstance(v, str):  # a run's params come back as text
        try:
            v = int(v) if v.lstrip("-").isdigit() else float(v)
        except ValueError:
            return v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if not math.isfinite(float(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def trial_note(
    name: str | None,
    status: str,
    reason: str | None,
    flat_config: Mapping[str, Any],
    metrics: Mapping[str, float],
    gains: Mapping[str, float] | None = None,
) -> str:
    """The Markdown description of a trial run: its name, status, configuration, headline numbers
    (and its gains against the baseline with their intervals, once logged)."""
    lines = [f"**{name or 'trial'}** — {status}" + (f": {reason}" if reason else ""), ""]
    params = [(k, flat_config[k]) for k in HEADLINE_PARAMS if k in flat_config and flat_config[k] is not None]
    if params:
        lines += ["| setting | value |", "|---|---|"]
        lines += [f"| `{k}` | {_number(v)} |" for k, v in params] + [""]
    shown = [(k, metrics[k]) for k in HEADLINE_METRICS if k in metrics]
    if shown:
        lines += ["| metric | value |", "|---|---|"] + [f"| `{k}` | {_number(v)} |" for k, v in shown] + [""]
    if gains:
        lines += ["| against the baseline | value | 95% interval |", "|---|---|---|"]
        for key in sorted(k for k in gains if not k.endswith(("_ci_low", "_ci_high", "_p", "_p_adjusted"))):
            lo, hi = gains.get(key + "_ci_low"), gains.get(key + "_ci_high")
            interval = f"[{_number(lo)}, {_number(hi)}]" if lo is not None and hi is not None else "-"
            lines.append(f"| `{key}` | {_number(gains[key])} | {interval} |")
        lines.append("")
    return fit("\n".join(lines).rstrip() + "\n")


def set_note(client, run_id: str, text: str) -> None:
    """Write a run's description."""
    client.set_tag(run_id, NOTE_TAG, fit(text))


def set_trial_note(client, run_id: str, config, status: str, reason: str | None, metrics) -> None:
    """The trial run's description from its config (``TrialConfig``) and final metrics."""
    set_note(client, run_id, trial_note(config.tracking.run_name, status, reason, config.to_flat(), metrics))


def refresh_trial_gains(client, run_id: str) -> None:
    """Rewrite a trial's description with the gains now logged on its run (``gain/...`` metrics)."""
    run = client.get_run(run_id)
    metrics = dict(run.data.metrics)
    gains = {k: v for k, v in metrics.items() if k.startswith(M.GAIN_PREFIX)}
    text = trial_note(
        run.info.run_name,
        run.data.tags.get(M.TAG_STATUS, run.info.status.lower()),
        run.data.tags.get(M.TAG_FAILURE),
        dict(run.data.params),
        metrics,
        gains,
    )
    set_note(client, run_id, text)


def study_note(summary_text: str) -> str:
    """The parent run's description before a report: the study's end-of-run summary."""
    return f"### Study summary\n\n```\n{summary_text.rstrip()}\n```\n"


def with_summary(current: str, summary_text: str) -> str:
    """The parent's description with its summary part (re)placed, its report part kept."""
    report = current.split(REPORT_MARK, 1)[1] if REPORT_MARK in current else None
    text = study_note(summary_text)
    return fit(text if report is None else f"{text.rstrip()}\n\n{REPORT_MARK}{report}")


def with_report(current: str, report_markdown: str) -> str:
    """The parent's description with its report part (re)placed by ``report_markdown``."""
    head = current.split(REPORT_MARK, 1)[0].rstrip()
    body = f"{REPORT_MARK}\n{REPORT_HEADING}\n\n{report_markdown.lstrip('#').lstrip()}"
    text = f"{head}\n\n{body}" if head else body
    return fit(text, where="in the report/ artifacts (results.md, report.html)")


def set_report_note(client, run_id: str, report_markdown: str) -> None:
    """Put ``freqstudy report``'s configuration table on the parent run's page."""
    current = client.get_run(run_id).data.tags.get(NOTE_TAG, "")
    client.set_tag(run_id, NOTE_TAG, with_report(current, report_markdown))
