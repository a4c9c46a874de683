"""What every freqstudy run shares in MLflow: its experiment (one per study),
and the version of the code that wrote it."""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient

from study import metrics as M
from study.provenance import code_version  # noqa: F401  (re-exported: runs tag it)
from study.tracking.links import set_default_view

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
# Opens the UI on the runs table rather than MLflow 3's GenAI overview.
EXPERIMENT_KIND_TRAINING = "custom_model_development"


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name`` (a study), created (marked as model training) if missing.

    Safe against a concurrent creator: a lost race re-reads the winner's id.
    """
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            experiment_id = client.create_experiment(
                name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND_TRAINING, M.TAG_STUDY: name}
            )
            set_default_view(client, experiment_id)  # the runs table's columns (study.tracking.links)
            return experiment_id
        except mlflow.exceptions.MlflowException:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        raise ValueError(
            f"config tracking.experiment: {name!r} exists in the deleted state; "
            "restore it or pick another name"
        )
    if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND_TRAINING:
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND_TRAINING)
    return exp.experiment_id
