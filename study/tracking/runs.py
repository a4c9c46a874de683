"""One MLflow run per trial: params, per-epoch and final metrics, tags,
figures, raw filters and the model.

:func:`run_tracked_trial` wraps ``study.engine.trial.run_trial``: it makes sure the
experiment (= study) exists and is marked as model training (so the MLflow UI
opens on its runs table), creates the run (nested under a study's parent run
when given), logs the flattened config as params, sends each epoch's metrics
in one ``log_batch`` request with ``step = epoch``, and at the end the final
metrics (batched), the artifacts and the model. A diverged
trial ends as a FAILED run with the reason in the ``freqstudy.failure_reason``
tag and in ``metrics.json``; any exception does the same and is re-raised for
the caller. The client talks to a tracking server by URI, so trials on other
nodes log the same way.

The artifacts are rendered by :mod:`study.reporting.trial_artifacts`; the model is the
run's ``model/`` folder (:mod:`study.engine.model_folder`), logged and loaded back by
:mod:`study.tracking.models`.
"""

from __future__ import annotations

import math
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from models.stem import LEARNED_FORM
from study.config import TrialConfig
from study.engine.model_folder import param_text
from study.engine.prepare import prepare_data
from study.engine.trial import DIVERGED, TrialResult, run_trial
from study.metrics import (
    EPOCHS_COMPLETED,
    TAG_CODE_VERSION,
    TAG_CONFIG_ID,
    TAG_DATA,
    TAG_FAILURE,
    TAG_LEARNED_FORM,
    TAG_MODE,
    TAG_NODE,
    TAG_REPLICATE,
    TAG_ROLE,
    TAG_STATUS,
    TAG_STUDY,
    TAG_TRIAL_ID,
)
from study.reporting.trial_artifacts import write_artifacts
from study.tracking.datasets import log_trial_datasets
from study.tracking.experiments import code_version, ensure_experiment
from study.tracking.links import EXPANDS_PARENT
from study.tracking.models import log_model
from study.tracking.notes import set_trial_note
from study.tracking.server import bound_http, health_problem, logging_to, mlflow_client

PARENT_RUN_TAG = "mlflow.parentRunId"
MAX_BATCH_METRICS = 1000  # MLflow's limit per log_batch request
MAX_BATCH_PARAMS = 100


@dataclass
class TrackedTrial:
    """The outcome of one tracked trial.

    Attributes:
        run_id: the MLflow run.
        status: ``finished``, ``diverged`` or ``stopped`` (see ``study.engine.trial``).
        reason: one line when not finished.
        metrics: the final metrics as logged.
        result: the full ``TrialResult`` (model on the CPU, history).
    """

    run_id: str
    status: str
    reason: str | None
    metrics: dict[str, float]
    result: TrialResult | None = field(default=None, repr=False)


def _param_value(v: Any) -> str:
    # The model loader compares a model's config.yaml with these params in the same form.
    return param_text(v)


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int) -> None:
    """Finite metrics in as few ``log_batch`` requests as MLflow allows."""
    now = int(time.time() * 1000)
    entries = [
        Metric(k, float(v), now, step)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and math.isfinite(float(v))
    ]
    for chunk in _chunks(entries, MAX_BATCH_METRICS):
        client.log_batch(run_id, metrics=chunk)


def finished_run_of(
    tracking_uri: str,
    experiment: str,
    trial_id: str,
    *,
    config_id: str | None = None,
    replicate: str | None = None,
) -> tuple[str, dict[str, float]] | None:
    """``(run_id, metrics)`` of a finished run of Tune trial ``trial_id`` in ``experiment``,
    or of seed ``replicate`` of configuration ``config_id`` when both are given; None if none.

    A driver killed after a trial's run finished but before Tune recorded the trial
    as terminated would, on ``--resume``, run that trial again (under a new trial id when
    Tune's checkpoint predates it); the trial asks here first and reports the finished run
    instead, so no replicate is duplicated.
    """
    bound_http()
    client = mlflow_client(tracking_uri)
    finished = f"tags.`{TAG_STATUS}` = 'finished' and attributes.status = 'FINISHED'"
    filters = [f"tags.`{TAG_TRIAL_ID}` = '{trial_id}' and {finished}"]
    if config_id and replicate is not None:
        seed = f"tags.`{TAG_CONFIG_ID}` = '{config_id}' and tags.`{TAG_REPLICATE}` = '{replicate}'"
        filters.append(f"{seed} and {finished}")
    with logging_to(tracking_uri, f"looking up the finished runs of trial {trial_id}"):
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        for filter_string in filters:
            runs = client.search_runs(
                [exp.experiment_id],
                filter_string=filter_string,
                max_results=1,
                order_by=["attributes.start_time DESC"],
            )
            if runs:
                return runs[0].info.run_id, {k: float(v) for k, v in runs[0].data.metrics.items()}
    return None


def start_trial_run(
    client: MlflowClient, config: TrialConfig, *, parent_run_id: str | None, tags: Mapping[str, str] | None
) -> str:
    """Create the run with its tags and params; returns the run id."""
    experiment_id = ensure_experiment(client, config.tracking.experiment)
    run_tags = {
        TAG_STUDY: config.tracking.experiment,
        TAG_ROLE: "trial",
        TAG_STATUS: "running",
        TAG_MODE: config.frequency.mode,
        **({TAG_LEARNED_FORM: LEARNED_FORM} if config.frequency.mode == "learned" else {}),
        TAG_NODE: socket.gethostname(),
        TAG_CODE_VERSION: code_version(),
    }
    if parent_run_id:
        run_tags.update({PARENT_RUN_TAG: parent_run_id, **EXPANDS_PARENT})
    run_tags.update({k: str(v) for k, v in (tags or {}).items()})
    run = client.create_run(experiment_id, tags=run_tags, run_name=config.tracking.run_name)
    params = [Param(k, _param_value(v)) for k, v in sorted(config.to_flat().items())]
    for chunk in _chunks(params, MAX_BATCH_PARAMS):
        client.log_batch(run.info.run_id, params=chunk)
    return run.info.run_id


def run_tracked_trial(
    config: TrialConfig,
    *,
    tracking_uri: str,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    data: Any = None,
) -> TrackedTrial:
    """Run one trial as one MLflow run.

    Args:
        config: the trial.
        tracking_uri: an MLflow tracking server (``http://...``).
        parent_run_id: the study's parent run; the trial run is nested under it.
        tags: extra run tags (e.g. ``freqstudy.trial_id``, ``freqstudy.baseline``).
        on_epoch: called with each epoch's metrics after they are logged.
        checkpoint_dir: checkpoints go to ``<checkpoint_dir>/<run_id>/``; None = none.
        resume_from: a checkpoint to continue from (a new run is created).
        should_stop: see ``study.engine.trial.run_trial``.
        data: a ``study.engine.prepare.PreparedData`` to reuse.

    Returns:
        The run id, status, reason and final metrics. A diverged trial returns
        normally (run FAILED); any other exception marks the run FAILED and is re-raised.

    Raises:
        TrackingServerLost: the server stopped answering (MLflow's HTTP calls are bounded:
            ``study.tracking.server.HTTP_BOUNDS``); one line naming the URI and what was being
            logged. The run is marked FAILED with that reason if the server still answers;
            otherwise it stays RUNNING until the study closes it (``study_runs``).
    """
    bound_http()
    client = mlflow_client(tracking_uri)
    with logging_to(tracking_uri, f"creating the run of {config.tracking.run_name or 'the trial'}"):
        run_id = start_trial_run(client, config, parent_run_id=parent_run_id, tags=tags)

    # The last epoch row this run logged: a resumed trial's history also holds the epochs
    # restored from its checkpoint, which an earlier run logged, not this one.
    logged: dict[str, float] = {}

    def report(row: dict[str, float]) -> None:
        step = int(row["epoch"])
        with logging_to(tracking_uri, f"logging epoch {step} metrics of run {run_id}"):
            log_metrics(client, run_id, {k: v for k, v in row.items() if k != "epoch"}, step)
        logged.clear()
        logged.update(row)
        if on_epoch is not None:
            on_epoch(row)

    try:
        data = data or prepare_data(config)  # here, so the training subset can be logged as an input
        result = run_trial(
            config,
            report=report,
            should_stop=should_stop,
            data=data,
            resume_from=resume_from,
            checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir) / run_id,
        )
        step = int(result.metrics.get(EPOCHS_COMPLETED, 0))
        # A final value this run's last epoch already logged at this step (val/clean_acc) is not
        # sent twice; a trial resumed after its last epoch logged no epoch here, so it sends all.
        last = logged if logged.get("epoch") == step else {}
        with logging_to(tracking_uri, f"logging the final metrics of run {run_id}"):
            client.set_tag(run_id, TAG_DATA, result.fingerprint)
            log_metrics(client, run_id, {k: v for k, v in result.metrics.items() if last.get(k) != v}, step)
            log_trial_datasets(client, run_id, config, result.outcomes, data)
            set_trial_note(client, run_id, config, result.status, result.reason, result.metrics)
        with tempfile.TemporaryDirectory(prefix="freqstudy-artifacts-") as tmp:
            write_artifacts(Path(tmp), config, result)
            with logging_to(tracking_uri, f"logging the artifacts of run {run_id}"):
                client.log_artifacts(run_id, tmp)
        if result.status != DIVERGED and config.tracking.log_model:
            with logging_to(tracking_uri, f"logging the model of run {run_id}"):
                log_model(result.model, config, run_id=run_id, tracking_uri=tracking_uri)
    except BaseException as e:
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:500] if str(e) else type(e).__name__
        _end_failed_run(
            client,
            tracking_uri,
            run_id,
            reason,
            mlflow_status="KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED",
        )
        raise
    with logging_to(tracking_uri, f"logging the end of run {run_id}"):
        if result.status == DIVERGED:
            end_run(client, run_id, result.status, result.reason, mlflow_status="FAILED")
        else:
            end_run(client, run_id, result.status, result.reason, mlflow_status="FINISHED")
    return TrackedTrial(
        run_id=run_id, status=result.status, reason=result.reason, metrics=dict(result.metrics), result=result
    )


def end_run(
    client: MlflowClient, run_id: str, status: str, reason: str | None, *, mlflow_status: str
) -> None:
    """The status tag (and reason), then the run's end: a run whose tags could not be written
    stays RUNNING, so that it is closed later with a reason (``study_runs``) and never ends up
    FAILED or FINISHED with ``freqstudy.status = running``."""
    tags = [RunTag(TAG_STATUS, status)]
    if reason:
        tags.append(RunTag(TAG_FAILURE, reason))
    client.log_batch(run_id, tags=tags)
    client.set_terminated(run_id, status=mlflow_status)


def _end_failed_run(
    client: MlflowClient, tracking_uri: str, run_id: str, reason: str, *, mlflow_status: str
) -> None:
    """Mark the run failed with ``reason`` on the way out of an exception, never raising a second
    one: with the server gone (``/health`` does not answer in a few seconds) nothing is sent, and
    the run is left for the study to close (``study_runs.close_orphaned_trials``)."""
    if tracking_uri.startswith(("http://", "https://")) and health_problem(tracking_uri, 3.0) is not None:
        return
    try:
        end_run(client, run_id, "failed", reason, mlflow_status=mlflow_status)
    except Exception:  # the original exception is what the caller needs to see
        pass
