"""A trial run's model in MLflow: logging the model folder, and loading it back.

The folder's format is :mod:`study.engine.model_folder`. :func:`load_logged_model`, the
one loader every command and the registry use, refuses a model folder holding a
pickle-format file (``torch.save``, an MLflow flavour's ``MLmodel`` and ``data/``) before
reading any.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow import MlflowClient

from study.config import TrialConfig
from study.engine.model_folder import (
    MLFLOW_MODEL_FILE,
    MODEL_FILES,
    MODEL_MANIFEST,
    MODEL_WEIGHTS,
    pickle_format,
    read_model,
    write_model,
)
from study.metrics import MODEL_ARTIFACT
from study.tracking.logged_models import log_logged_model
from study.tracking.server import mlflow_client


def log_model(model: torch.nn.Module, config: TrialConfig, *, run_id: str, tracking_uri: str) -> None:
    """Log ``model`` as the run's ``model/`` folder (:func:`write_model`): safetensors weights
    and the config to rebuild the network from, no pickle and no MLflow flavour.

    Input: normalised float32 ``(B, 3, 32, 32)`` (CIFAR-10 mean/std, as in ``study.data``);
    output: ``(B, classes)`` logits; both are stated in the manifest.
    """
    client = mlflow_client(tracking_uri)
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
    if found := pickle_format(files):
        raise _refuse(run_id, found)
    if not files:
        # An MLflow 3 logged model (mlflow.<flavour>.log_model) keeps its files outside the run's.
        try:
            logged = client.search_logged_models(
                experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
            )
        except mlflow.exceptions.MlflowException:  # a server without logged models
            logged = []  # type: ignore[assignment]
        for lm in logged:
            list_dir = lambda p, m=lm.model_id: client.list_logged_model_artifacts(m, p)  # noqa: E731
            if found := pickle_format(_artifact_files(list_dir)):
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
    client = client or mlflow_client(tracking_uri)
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
        # The run's params vouch for the config the network is rebuilt from.
        return read_model(local.parent, source=f"run {run_id} {MODEL_ARTIFACT}/", params=run.data.params)
