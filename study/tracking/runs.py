"""One MLflow run per trial: params, per-epoch and final metrics, tags,
figures, raw filters and the model.

:func:`run_tracked_trial` wraps ``study.engine.trial.run_trial``: it makes sure the
experiment (= study) exists and is marked as model training (so the MLflow UI
opens on its runs table), creates the run (nested under a study's parent run
when given), logs the flattened config as params, sends each epoch's metrics
in one ``log_batch`` request with ``step = epoch``, and at the end the final
metrics (batched), the artifacts and the model with its signature. A diverged
trial ends as a FAILED run with the reason in the ``freqstudy.failure_reason``
tag and in ``metrics.json``; any exception does the same and is re-raised for
the caller. The client talks to a tracking server by URI, so trials on other
nodes log the same way.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.models import infer_signature

from models.spectral import radial_power_profile
from study.analysis.fourier import FOURIER_HEATMAP_NPY, FOURIER_HEATMAP_PNG
from study.analysis.outcomes import OUTCOMES_ARTIFACT
from study.analysis.outcomes import encode as encode_outcomes
from study.config import TrialConfig
from study.engine.trial import DIVERGED, TrialResult, build_model, run_trial
from study.files import write_bytes_atomic, write_text_atomic
from study.metrics import (
    EPOCHS_COMPLETED,
    MODEL_ARTIFACT,
    TAG_CODE_VERSION,
    TAG_DATA,
    TAG_FAILURE,
    TAG_MODE,
    TAG_NODE,
    TAG_ROLE,
    TAG_STATUS,
    TAG_STUDY,
)
from study.reporting import figures_trial as figures
from study.reporting.fourier_figures import heatmap_png
from study.tracking.experiments import code_version, ensure_experiment

PARENT_RUN_TAG = "mlflow.parentRunId"
MAX_BATCH_METRICS = 1000  # MLflow's limit per log_batch request
MAX_BATCH_PARAMS = 100

ARTIFACTS = (
    "filters.png",
    "spectra.png",
    "radial_profile.png",
    "corruption_heatmap.png",
    "proportion_history.png",
    "filters.npy",
    "config.yaml",
    "metrics.json",
)
# ...and, for every trial that was evaluated (not diverged):
OUTCOMES_ARTIFACTS = (OUTCOMES_ARTIFACT,)
# ...and, when the config asks for the Fourier heat map (eval.fourier_images > 0) and it was measured:
FOURIER_ARTIFACTS = (FOURIER_HEATMAP_NPY, FOURIER_HEATMAP_PNG)


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
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return "null" if v is None else str(v)


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
        TAG_NODE: socket.gethostname(),
        TAG_CODE_VERSION: code_version(),
    }
    if parent_run_id:
        run_tags[PARENT_RUN_TAG] = parent_run_id
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
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    run_id = start_trial_run(client, config, parent_run_id=parent_run_id, tags=tags)

    def report(row: dict[str, float]) -> None:
        step = int(row["epoch"])
        log_metrics(client, run_id, {k: v for k, v in row.items() if k != "epoch"}, step)
        if on_epoch is not None:
            on_epoch(row)

    try:
        result = run_trial(
            config,
            report=report,
            should_stop=should_stop,
            data=data,
            resume_from=resume_from,
            checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir) / run_id,
        )
        client.set_tag(run_id, TAG_DATA, result.fingerprint)
        step = int(result.metrics.get(EPOCHS_COMPLETED, 0))
        # A final value the last epoch already logged at this step (val/clean_acc) is not sent twice.
        last = result.history[-1] if result.history else {}
        log_metrics(client, run_id, {k: v for k, v in result.metrics.items() if last.get(k) != v}, step)
        with tempfile.TemporaryDirectory(prefix="freqstudy-artifacts-") as tmp:
            write_artifacts(Path(tmp), config, result)
            client.log_artifacts(run_id, tmp)
        if result.status != DIVERGED and config.tracking.log_model:
            log_model(result.model, run_id=run_id, tracking_uri=tracking_uri)
    except BaseException as e:
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:500] if str(e) else type(e).__name__
        _end_run(
            client,
            run_id,
            "failed",
            reason,
            mlflow_status="KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED",
        )
        raise
    if result.status == DIVERGED:
        _end_run(client, run_id, result.status, result.reason, mlflow_status="FAILED")
    else:
        _end_run(client, run_id, result.status, result.reason, mlflow_status="FINISHED")
    return TrackedTrial(
        run_id=run_id, status=result.status, reason=result.reason, metrics=dict(result.metrics), result=result
    )


def _end_run(
    client: MlflowClient, run_id: str, status: str, reason: str | None, *, mlflow_status: str
) -> None:
    tags = [RunTag(TAG_STATUS, status)]
    if reason:
        tags.append(RunTag(TAG_FAILURE, reason))
    try:
        client.log_batch(run_id, tags=tags)
    finally:
        client.set_terminated(run_id, status=mlflow_status)


def metrics_document(config: TrialConfig, result: TrialResult) -> dict[str, Any]:
    """The ``metrics.json`` object: status, reason, final metrics and per-epoch history."""

    def clean(v: Any) -> Any:
        return v if not isinstance(v, float) or math.isfinite(v) else None

    return {
        "status": result.status,
        "reason": result.reason,
        "epochs": config.train.epochs,
        "data_fingerprint": result.fingerprint,
        "metrics": {k: clean(v) for k, v in sorted(result.metrics.items())},
        "history": [{k: clean(v) for k, v in row.items()} for row in result.history],
        # (E, O): each filter's alpha after each epoch, learned mode only.
        "alpha_history": None if result.alpha_history is None else np.asarray(result.alpha_history).tolist(),
    }


def write_artifacts(out: Path, config: TrialConfig, result: TrialResult) -> list[Path]:
    """Write the trial's artifacts into ``out``; returns the paths written.

    ``config.yaml`` and ``metrics.json`` always; ``outcomes.npz`` when the trial was
    evaluated; the filter figures, ``filters.npy``
    and the history figure when the weights are finite (not after divergence);
    the heatmap when corruptions were evaluated; the Fourier heat map (``.npy``, float64
    (32, 32) percent error in fftshift layout, and its figure) when it was measured.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = [
        write_text_atomic(out / "config.yaml", config.to_yaml()),
        write_text_atomic(out / "metrics.json", json.dumps(metrics_document(config, result), indent=2)),
    ]
    if result.outcomes is not None:
        # Which image each evaluation got right: what paired intervals and tests are computed from.
        written.append(write_bytes_atomic(out / OUTCOMES_ARTIFACT, encode_outcomes(result.outcomes)))
    stats = result.filters
    if stats and np.isfinite(stats["weights"]).all():
        f = config.frequency
        np.save(out / "filters.npy", stats["weights"])
        written.append(out / "filters.npy")
        written.append(
            figures.save_figure(
                figures.plot_filters(stats["weights"], stats["classes"], stats["alpha"]), out / "filters.png"
            )
        )
        written.append(
            figures.save_figure(
                figures.plot_spectra(stats["weights"], stats["classes"], f.cutoff), out / "spectra.png"
            )
        )
        radii, profile = radial_power_profile(torch.from_numpy(stats["weights"]))
        written.append(
            figures.save_figure(
                figures.plot_radial_profile(
                    radii.numpy(), np.nan_to_num(profile.numpy()), stats["classes"], f.cutoff
                ),
                out / "radial_profile.png",
            )
        )
    if result.history:
        target = config.frequency.proportion if config.frequency.mode != "free" else None
        written.append(
            figures.save_figure(
                figures.plot_proportion_history(result.history, result.alpha_history, target),
                out / "proportion_history.png",
            )
        )
    acc = result.corruption_accuracy.get("test") or result.corruption_accuracy.get("val")
    if acc:
        split = "test" if result.corruption_accuracy.get("test") else "val"
        written.append(
            figures.save_figure(
                figures.plot_corruption_heatmap(acc, title=f"{split} accuracy (%)"),
                out / "corruption_heatmap.png",
            )
        )
    if result.fourier is not None:
        fourier = np.asarray(result.fourier, dtype=np.float64)
        np.save(out / FOURIER_HEATMAP_NPY, fourier, allow_pickle=False)
        written.append(out / FOURIER_HEATMAP_NPY)
        title = f"error (%) under a Fourier-basis perturbation, ε = {config.eval.fourier_eps:g}"
        written.append(write_bytes_atomic(out / FOURIER_HEATMAP_PNG, heatmap_png(fourier, title)))
    return written


def example_input(batch: int = 4) -> np.ndarray:
    """A normalised ``(batch, 3, 32, 32)`` float32 input for the model signature."""
    return np.random.default_rng(0).standard_normal((batch, 3, 32, 32)).astype(np.float32)


def log_model(model: torch.nn.Module, *, run_id: str, tracking_uri: str) -> None:
    """Log ``model`` (on the CPU) as the run's MLflow model ``model`` with a signature.

    Input: normalised float32 ``(B, 3, 32, 32)`` (CIFAR-10 mean/std, as in
    ``study.data``); output: ``(B, classes)`` logits. Requirements are given,
    not inferred, which would reload the model in a subprocess.
    """
    x = example_input()
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    signature = infer_signature(x, y)
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]
    with _tracking_uri(tracking_uri), mlflow.start_run(run_id=run_id, log_system_metrics=False):
        mlflow.pytorch.log_model(
            model,
            name=MODEL_ARTIFACT,
            signature=signature,
            pip_requirements=requirements,
            serialization_format="pt2",
            input_example=x,
        )


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """Point the fluent MLflow API at ``uri`` for a block, then back."""
    before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)  # None = unset again


def load_logged_model(run_id: str, tracking_uri: str) -> torch.nn.Module:
    """The run's logged model as a freqstudy ResNet-18, on the CPU in eval mode.

    The MLflow model is an exported program (``pt2``: loading runs no pickle);
    its weights are put into the network rebuilt from the run's ``config.yaml``,
    so the stem's analysis methods (``effective_weight``, ``alpha``...) work.

    Raises:
        ValueError: the run does not exist or has no logged model or config.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise ValueError(f"run {run_id}: not found at {tracking_uri}") from None
    with tempfile.TemporaryDirectory(prefix="freqstudy-model-") as tmp, _tracking_uri(tracking_uri):
        try:
            config = TrialConfig.from_yaml(client.download_artifacts(run_id, "config.yaml", tmp))
            exported = mlflow.pytorch.load_model(f"runs:/{run_id}/{MODEL_ARTIFACT}", dst_path=tmp)
        except (mlflow.exceptions.MlflowException, OSError) as e:
            raise ValueError(f"run {run_id}: no loadable model and config ({e})".splitlines()[0]) from None
    model = build_model(config)
    model.load_state_dict(exported.state_dict(), strict=True)
    return model.eval()
