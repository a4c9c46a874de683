"""A study's per-image outcomes in, its paired gains out to MLflow: each trial's
gain against the baseline and its interval bounds become metrics of its run,
so the MLflow runs table can be sorted by a lower bound."""

from __future__ import annotations

import time
from typing import Any

from mlflow.entities import Metric, RunTag

from study.analysis.outcomes import Outcomes
from study.tracking.notes import refresh_trial_gains
from study.tracking.queries import client_for, load_outcomes


def study_outcomes(
    study_runs: dict[str, Any], tracking_uri: str | None = None, client=None
) -> dict[str, Outcomes]:
    """run_id -> outcomes of every trial run that has them (FINISHED runs only)."""
    client = client or client_for(tracking_uri)
    out: dict[str, Outcomes] = {}
    for t in study_runs["trials"]:
        if t.get("status") != "FINISHED":
            continue
        o = load_outcomes(t["run_id"], client=client)
        if o is not None:
            out[t["run_id"]] = o
    return out


def log_gains(choice, tracking_uri: str | None = None, client=None) -> int:
    """Log ``study.analysis.gains.gain_metrics`` on each trial run; returns how many runs got them."""
    from study.analysis.gains import gain_metrics, gain_tags

    client = client or client_for(tracking_uri)
    now = int(time.time() * 1000)
    for run_id, gains in choice.gains.items():
        metrics = [Metric(k, v, now, 0) for k, v in gain_metrics(gains).items()]
        # The scope tag says whether the logged interval is about configurations or two networks.
        tags = [RunTag(k, v) for k, v in gain_tags(gains).items()]
        if metrics or tags:
            client.log_batch(run_id, metrics=metrics, tags=tags)
            refresh_trial_gains(client, run_id)  # the trial's description shows them too
    return len(choice.gains)


def annotate_study(study: str, objectives, tracking_uri: str | None = None, client=None) -> int | str:
    """At a study's end: every complete trial's gain against the baseline, with intervals,
    logged on its run. Returns how many trials got them, or why none did (a study whose
    trials all failed still ends normally)."""
    from study.selection.choice import choose

    client = client or client_for(tracking_uri)
    try:
        from study.tracking.queries import load_study

        runs = load_study(study, client=client)
        choice = choose(runs, objectives, None, outcomes=study_outcomes(runs, client=client))
    except ValueError as e:
        return str(e)
    if choice.baseline is None:
        return "no finished baseline trial"
    return log_gains(choice, client=client)
