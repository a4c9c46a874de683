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

The model is the run's ``model/`` folder: ``weights.safetensors`` (the state dict),
``config.yaml`` (the network is rebuilt from it) and ``freqstudy-model.json`` (format,
digest, input and output). No pickle is written, and :func:`load_logged_model`, the one
loader every command and the registry use, refuses a model folder holding a pickle-format
file (``torch.save``, an MLflow flavour's ``MLmodel`` and ``data/``) before reading any.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.spectral import radial_power_profile
from models.stem import LEARNED_FORM, initial_alpha
from study.analysis.fourier import FOURIER_HEATMAP_NPY, FOURIER_HEATMAP_PNG
from study.analysis.outcomes import OUTCOMES_ARTIFACT
from study.analysis.outcomes import encode as encode_outcomes
from study.config import TrialConfig
from study.engine.prepare import prepare_data
from study.engine.trial import DIVERGED, TrialResult, build_model, run_trial
from study.files import write_bytes_atomic, write_text_atomic
from study.metrics import (
    EPOCHS_COMPLETED,
    MODEL_ARTIFACT,
    TAG_CODE_VERSION,
    TAG_DATA,
    TAG_FAILURE,
    TAG_LEARNED_FORM,
    TAG_MODE,
    TAG_NODE,
    TAG_ROLE,
    TAG_STATUS,
    TAG_STUDY,
    TAG_TRIAL_ID,
)
from study.reporting import figures_trial as figures
from study.reporting.fourier_figures import heatmap_png
from study.tracking.datasets import log_trial_datasets
from study.tracking.experiments import code_version, ensure_experiment
from study.tracking.links import EXPANDS_PARENT
from study.tracking.logged_models import log_logged_model
from study.tracking.notes import set_trial_note
from study.tracking.server import bound_http, health_problem, logging_to

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


def finished_run_of(tracking_uri: str, experiment: str, trial_id: str) -> tuple[str, dict[str, float]] | None:
    """``(run_id, metrics)`` of a finished run of Tune trial ``trial_id`` in ``experiment``, if any.

    A driver killed after a trial's run finished but before Tune recorded the trial
    as terminated would, on ``--resume``, run that trial again; the trial asks here
    first and reports the finished run instead, so no replicate is duplicated.
    """
    bound_http()
    client = MlflowClient(tracking_uri=tracking_uri)
    with logging_to(tracking_uri, f"looking up the finished runs of trial {trial_id}"):
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=(
                f"tags.`{TAG_TRIAL_ID}` = '{trial_id}' and tags.`{TAG_STATUS}` = 'finished' "
                "and attributes.status = 'FINISHED'"
            ),
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
    if not runs:
        return None
    return runs[0].info.run_id, {k: float(v) for k, v in runs[0].data.metrics.items()}


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
    client = MlflowClient(tracking_uri=tracking_uri)
    with logging_to(tracking_uri, f"creating the run of {config.tracking.run_name or 'the trial'}"):
        run_id = start_trial_run(client, config, parent_run_id=parent_run_id, tags=tags)

    def report(row: dict[str, float]) -> None:
        step = int(row["epoch"])
        with logging_to(tracking_uri, f"logging epoch {step} metrics of run {run_id}"):
            log_metrics(client, run_id, {k: v for k, v in row.items() if k != "epoch"}, step)
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
        # A final value the last epoch already logged at this step (val/clean_acc) is not sent twice.
        last = result.history[-1] if result.history else {}
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
            _end_run(client, run_id, result.status, result.reason, mlflow_status="FAILED")
        else:
            _end_run(client, run_id, result.status, result.reason, mlflow_status="FINISHED")
    return TrackedTrial(
        run_id=run_id, status=result.status, reason=result.reason, metrics=dict(result.metrics), result=result
    )


def _end_run(
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
        _end_run(client, run_id, "failed", reason, mlflow_status=mlflow_status)
    except Exception:  # the original exception is what the caller needs to see
        pass


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
        f = config.frequency
        pulled = f.mode == "fixed" or (f.mode == "learned" and f.proportion_weight > 0)
        learned = result.alpha_history is not None
        written.append(
            figures.save_figure(
                figures.plot_proportion_history(
                    result.history,
                    result.alpha_history,
                    f.proportion if pulled else None,
                    alpha_start=initial_alpha(result.alpha_history.shape[1]).numpy() if learned else None,
                    threshold=f.threshold if learned else None,
                ),
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


# The model a trial logs: the run's ``model/`` folder, three files no loader runs code from.
MODEL_FORMAT = "freqstudy.safetensors/1"
MODEL_MANIFEST = "freqstudy-model.json"
MODEL_WEIGHTS = "weights.safetensors"
MODEL_CONFIG = "config.yaml"
MODEL_FILES = (MODEL_MANIFEST, MODEL_WEIGHTS, MODEL_CONFIG)
# Files that other tools load by unpickling (torch.save, MLflow's pytorch and pyfunc flavours,
# joblib, cloudpickle...), and MLflow's model descriptor that sends a loader to them.
PICKLE_SUFFIXES = (
    ".pt",
    ".pth",
    ".pt2",
    ".pkl",
    ".pickle",
    ".bin",
    ".ckpt",
    ".joblib",
    ".dill",
    ".cloudpickle",
)
MLFLOW_MODEL_FILE = "MLmodel"
MODEL_INPUT = "float32 (B, 3, 32, 32), normalised with the CIFAR-10 mean and std (study.data)"
MODEL_OUTPUT = "float32 (B, classes) logits"


def model_manifest(weights_sha256: str) -> dict[str, Any]:
    """The ``freqstudy-model.json`` document of a model folder."""
    return {
        "format": MODEL_FORMAT,
        "weights": MODEL_WEIGHTS,
        "config": MODEL_CONFIG,
        "weights_sha256": weights_sha256,
        "torch": torch.__version__,
        "input": MODEL_INPUT,
        "output": MODEL_OUTPUT,
    }


def write_model(out: Path, model: torch.nn.Module, config: TrialConfig) -> list[Path]:
    """Write ``model`` as a freqstudy model folder: ``weights.safetensors`` (the state dict,
    CPU copies), ``config.yaml`` (the trial config it is rebuilt from) and ``freqstudy-model.json``.
    """
    out.mkdir(parents=True, exist_ok=True)
    # Copies: safetensors wants contiguous tensors that share no storage.
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    weights = out / MODEL_WEIGHTS
    save_file(state, str(weights), metadata={"format": MODEL_FORMAT})
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    return [
        weights,
        write_text_atomic(out / MODEL_CONFIG, config.to_yaml()),
        write_text_atomic(out / MODEL_MANIFEST, json.dumps(model_manifest(digest), indent=2)),
    ]


def read_model(folder: Path, *, source: str) -> torch.nn.Module:
    """The network of a model folder written by :func:`write_model`, on the CPU in eval mode.

    Only JSON, YAML (safe loader) and safetensors are read: nothing in the folder can run code.

    Raises:
        ValueError: one line naming ``source`` and what is wrong.
    """
    try:
        manifest = json.loads((folder / MODEL_MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{source}: {MODEL_MANIFEST} unreadable ({e})".splitlines()[0]) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MODEL_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ValueError(f"{source}: {MODEL_MANIFEST} declares format {found!r}; expected {MODEL_FORMAT!r}")
    weights = folder / MODEL_WEIGHTS
    try:
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    except OSError as e:
        raise ValueError(f"{source}: {MODEL_WEIGHTS} unreadable ({e})".splitlines()[0]) from None
    if manifest.get("weights_sha256") != digest:
        raise ValueError(f"{source}: {MODEL_WEIGHTS} does not match the sha256 in {MODEL_MANIFEST}")
    try:
        config = TrialConfig.from_yaml(folder / MODEL_CONFIG)
    except ValueError as e:
        raise ValueError(f"{source}: {MODEL_CONFIG}: {e}".splitlines()[0]) from None
    try:
        state = load_file(str(weights), device="cpu")
        model = build_model(config)
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError, SafetensorError) as e:  # shapes, names, a bad file
        raise ValueError(
            f"{source}: {MODEL_WEIGHTS} does not fit {MODEL_CONFIG} ({e})".splitlines()[0]
        ) from None
    return model.eval()


def log_model(model: torch.nn.Module, config: TrialConfig, *, run_id: str, tracking_uri: str) -> None:
    """Log ``model`` as the run's ``model/`` folder (:func:`write_model`): safetensors weights
    and the config to rebuild the network from, no pickle and no MLflow flavour.

    Input: normalised float32 ``(B, 3, 32, 32)`` (CIFAR-10 mean/std, as in ``study.data``);
    output: ``(B, classes)`` logits; both are stated in the manifest.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory(prefix="freqstudy-model-") as tmp:
        write_model(Path(tmp), model, config)
        client.log_artifacts(run_id, tmp, MODEL_ARTIFACT)
        log_logged_model(client, run_id, Path(tmp))  # the same files, listed in MLflow's model view


def _artifact_files(list_dir: Callable[[str | None], list], path: str | None = None) -> list[str]:
    """Every file below ``path`` of an artifact tree, recursively (``list_dir(path)`` lists one level)."""
    files: list[str] = []
    for info in list_dir(path):
        files.extend(_artifact_files(list_dir, info.path) if info.is_dir else [info.path])
    return sorted(files)


def _pickle_format(files: list[str]) -> str | None:
    """The first pickle-format file of ``files`` (a pickle before an ``MLmodel``), or None."""
    names = [(path, path.rsplit("/", 1)[-1]) for path in files]
    pickles = [path for path, name in names if name.lower().endswith(PICKLE_SUFFIXES)]
    descriptors = [path for path, name in names if name == MLFLOW_MODEL_FILE]
    return (pickles + descriptors or [None])[0]


def _refuse(run_id: str, path: str) -> ValueError:
    kind = "an MLflow model descriptor" if path.endswith(MLFLOW_MODEL_FILE) else "a pickle-format model"
    return ValueError(
        f"run {run_id}: {path} is {kind}; freqstudy loads only safetensors models "
        f"({MODEL_ARTIFACT}/{MODEL_WEIGHTS} with {MODEL_ARTIFACT}/{MODEL_MANIFEST}) and never unpickles"
    )


def _run_artifacts(client: MlflowClient, run) -> Any:
    """The artifact repository of the run's own folder.

    Not ``runs:/<id>/model``, which MLflow 3 resolves to a logged model named ``model`` when
    the run has one (looking it up in the default tracking store, not the client's).
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(run.info.artifact_uri, tracking_uri=client.tracking_uri)


def model_files(client: MlflowClient, run_id: str) -> list[str]:
    """The run's ``model/`` files, checked to be a freqstudy safetensors model before any is read.

    Raises:
        ValueError: one line naming the run: the model folder holds a pickle-format file (named;
            a model logged with an MLflow flavour, or by a freqstudy before safetensors, included),
            or no model was logged.
    """
    run = client.get_run(run_id)
    files = _artifact_files(_run_artifacts(client, run).list_artifacts, MODEL_ARTIFACT)
    if found := _pickle_format(files):
        raise _refuse(run_id, found)
    if not files:
        # An MLflow 3 logged model (mlflow.<flavour>.log_model) keeps its files outside the run's.
        try:
            logged = client.search_logged_models(
                experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
            )
        except mlflow.exceptions.MlflowException:  # a server without logged models
            logged = []
        for lm in logged:
            list_dir = lambda p, m=lm.model_id: client.list_logged_model_artifacts(m, p)  # noqa: E731
            if found := _pickle_format(_artifact_files(list_dir)):
                raise _refuse(run_id, f"models:/{lm.model_id}/{found}")
    missing = [f for f in MODEL_FILES if f"{MODEL_ARTIFACT}/{f}" not in files]
    if missing:
        raise ValueError(
            f"run {run_id}: no freqstudy model ({MODEL_ARTIFACT}/{missing[0]} missing; "
            "was tracking.log_model off?)"
        )
    return files


def load_logged_model(
    run_id: str, tracking_uri: str | None = None, *, client: MlflowClient | None = None
) -> torch.nn.Module:
    """The run's logged model as a freqstudy ResNet-18, on the CPU in eval mode.

    The network is rebuilt from the run's ``model/config.yaml`` and given the weights of
    ``model/weights.safetensors``, so the stem's analysis methods (``effective_weight``,
    ``alpha``...) work. Nothing is unpickled: a model folder holding a pickle-format file
    is refused before anything is downloaded (:func:`model_files`).

    Raises:
        ValueError: the run does not exist, has no freqstudy model, or holds a pickle-format one.
    """
    client = client or MlflowClient(tracking_uri=tracking_uri)
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise ValueError(f"run {run_id}: not found at {client.tracking_uri}") from None
    model_files(client, run_id)
    # Three small files: a progress bar each would bury a command's one-line messages.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    repo = _run_artifacts(client, run)
    with tempfile.TemporaryDirectory(prefix="freqstudy-model-") as tmp:
        try:
            for name in MODEL_FILES:
                local = Path(repo.download_artifacts(f"{MODEL_ARTIFACT}/{name}", tmp))
        except (mlflow.exceptions.MlflowException, OSError) as e:
            raise ValueError(f"run {run_id}: model download failed ({e})".splitlines()[0]) from None
        return read_model(local.parent, source=f"run {run_id} {MODEL_ARTIFACT}/")
