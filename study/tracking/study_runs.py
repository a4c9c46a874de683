"""The parent MLflow run of a study: created (or found again on ``--resume``),
tagged, given the space file, and closed with the study's counts.

MLflow experiment = study. The parent run carries ``TAG_STUDY`` and
``TAG_ROLE = "study"``; every trial run is nested under it (the trial logs
that itself, from whichever node it runs on). A resumed study finds its parent
by those two tags and keeps logging under the same run, so one study is one
parent run however many drivers it took. Everything returned is plain Python.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from study import metrics as M
from study.tracking.experiments import code_version, ensure_experiment
from study.tracking.links import set_default_view
from study.tracking.server import mlflow_client

ROLE_STUDY = "study"
ROLE_TRIAL = "trial"


def find_study_run(tracking_uri: str, study: str) -> str | None:
    """The run id of the study's parent run, or None when the study is new."""
    client = mlflow_client(tracking_uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{M.TAG_STUDY}` = '{study}' and tags.`{M.TAG_ROLE}` = '{ROLE_STUDY}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def start_study_run(
    tracking_uri: str,
    study: str,
    *,
    space_path: str,
    tags: Mapping[str, str],
    params: Mapping[str, Any],
    resume: bool,
) -> str:
    """Create the parent run (or, with ``resume``, reopen the existing one).

    Args:
        tracking_uri: the MLflow server every trial logs to.
        study: study name = experiment name.
        space_path: the search-space YAML, logged as artifact ``space/<name>``.
        tags: search settings (strings); the code version is added here, as on every trial run.
        params: search settings as run params (logged once; a resumed run keeps its own).
        resume: reuse the parent run found by tags; a new study refuses an existing one.

    Returns:
        The parent run id.
    """
    from mlflow.entities import Param, RunTag

    client = mlflow_client(tracking_uri)
    experiment_id = ensure_experiment(client, study)
    objectives = [o.rsplit(":", 1)[0] for o in str(params.get("study.objectives", "")).split(",") if o]
    set_default_view(client, experiment_id, objectives)  # the objectives among the table's columns
    existing = find_study_run(tracking_uri, study)
    all_tags = {**tags, M.TAG_STUDY: study, M.TAG_ROLE: ROLE_STUDY, M.TAG_CODE_VERSION: code_version()}
    if existing is not None:
        if not resume:
            raise ValueError(
                f"study {study}: already exists in {tracking_uri} (parent run {existing}); "
                "continue it with --resume or pick another --study name"
            )
        client.update_run(existing, status="RUNNING")
        client.log_batch(existing, tags=[RunTag(k, str(v)) for k, v in all_tags.items()])
        close_orphaned_trials(client, existing, reason=ORPHAN_DRIVER_STOPPED)
        return existing
    run = client.create_run(experiment_id, run_name=study, tags=all_tags)
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    client.log_artifact(run_id, space_path, artifact_path="space")
    return run_id


def describe_study_run(tracking_uri: str, run_id: str, summary_text: str) -> None:
    """The parent run's description: the study's summary (``study.tracking.notes``), and the
    report's table when ``freqstudy report`` already put one there."""
    from study.tracking.notes import NOTE_TAG, with_summary

    client = mlflow_client(tracking_uri)
    current = client.get_run(run_id).data.tags.get(NOTE_TAG, "")
    client.set_tag(run_id, NOTE_TAG, with_summary(current, summary_text))


# Why a trial run was closed by the study rather than by its trial.
ORPHAN_DRIVER_STOPPED = "the study driver stopped before this trial ended; --resume continued it in a new run"
ORPHAN_AT_STUDY_END = (
    "killed: the trial ended without closing its run (the tracking server was unreachable, "
    "or its worker died)"
)
ORPHAN_STATUS_UNWRITTEN = "killed: the trial ended while the tracking server was unreachable"


def close_orphaned_trials(client, parent_run_id: str, *, reason: str) -> int:
    """Close the study's trial runs that no trial will close; returns how many.

    Called when no trial of the study runs (on ``--resume`` before Ray starts, and at the
    study's end): a run still RUNNING is closed as KILLED with ``reason``; a run that ended
    without its status tag (``freqstudy.status`` still ``running``) keeps its MLflow status and
    gets ``failed`` and a reason. A run never stays ``running`` once its trial has ended.
    """
    from mlflow.entities import RunTag

    parent = client.get_run(parent_run_id)
    children = f"tags.`mlflow.parentRunId` = '{parent_run_id}'"
    found = {}
    for which in ("attributes.status = 'RUNNING'", f"tags.`{M.TAG_STATUS}` = 'running'"):
        for r in client.search_runs(
            [parent.info.experiment_id], max_results=1000, filter_string=f"{children} and {which}"
        ):
            found[r.info.run_id] = r
    for run_id, r in found.items():
        running = r.info.status == "RUNNING"
        tags = [RunTag(M.TAG_STATUS, "failed")]
        if running or not r.data.tags.get(M.TAG_FAILURE):
            tags.append(RunTag(M.TAG_FAILURE, reason if running else ORPHAN_STATUS_UNWRITTEN))
        client.log_batch(run_id, tags=tags)
        if running:
            client.set_terminated(run_id, status="KILLED")
    return len(found)


def finish_study_run(
    tracking_uri: str,
    run_id: str,
    *,
    counts: Mapping[str, float],
    status: str = "FINISHED",
    reason: str = ORPHAN_AT_STUDY_END,
) -> None:
    """Close the trial runs left open (``close_orphaned_trials``), log the study's counts
    (``study/trials_finished`` ...) and close the run."""
    from mlflow.entities import Metric

    client = mlflow_client(tracking_uri)
    close_orphaned_trials(client, run_id, reason=reason)
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(f"study/{k}", float(v), now, 0) for k, v in counts.items()])
    client.set_terminated(run_id, status=status)


def tag_configuration(tracking_uri: str, study: str, config_id: str, tags: Mapping[str, str]) -> int:
    """Set ``tags`` on every trial run of configuration ``config_id`` (its seeds, and their
    crashed attempts) in ``study``; returns how many runs were tagged."""
    from mlflow.entities import RunTag

    client = mlflow_client(tracking_uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        return 0
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{M.TAG_CONFIG_ID}` = '{config_id}' and tags.`{M.TAG_ROLE}` = '{ROLE_TRIAL}'",
        max_results=1000,
    )
    batch = [RunTag(k, str(v)) for k, v in tags.items()]
    for r in runs:
        client.log_batch(r.info.run_id, tags=batch)
    return len(runs)
