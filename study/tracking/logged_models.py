"""A trial's model in MLflow 3's model view, without pickle.

The run's ``model/`` folder (safetensors weights, the config, the manifest:
``study.tracking.runs.write_model``) is also logged as an MLflow 3 *logged model* of the
run: created with ``MlflowClient.create_logged_model`` (no flavour, ``model_type``
freqstudy's format), the same three files as its artifacts, finalised READY, its final
metrics linked to it and the run's output pointing at it. The runs table's Models column
and the experiment's Models tab then list it with its metrics; ``freqstudy pareto
--register`` registers it (``models:/<model_id>``). No MLflow flavour is written (no
``MLmodel``, no pickle), and loading stays ``study.tracking.runs.load_logged_model``,
which reads the run's own folder.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from mlflow.entities import LoggedModelOutput, Metric

MODEL_TYPE = "freqstudy.safetensors"  # the logged model's model_type: how to load it (runs.read_model)
RUN_TAG = "freqstudy.run_id"
# Characters MLflow refuses in a logged model's name (mlflow.utils.validation), and what stands
# in for them: "p=0.5" reads as "p=0·5".
_NAME_CHARS = str.maketrans({".": "·", "/": "∕", ":": "꞉", "%": "％", '"': "", "'": ""})


def model_name(run_name: str | None, run_id: str) -> str:
    """The logged model's name: the run's (``fixed p=0·5 σ=0 #1``), else ``model-<run id>``."""
    name = (run_name or "").translate(_NAME_CHARS).strip()
    return name or f"model-{run_id[:8]}"


def log_logged_model(client, run_id: str, folder: Path, *, step: int = 0) -> str:
    """Log ``folder`` (a freqstudy model folder) as a logged model of run ``run_id``; its id.

    The run's latest metrics and its params are linked to the model, so the Models tab can
    sort the models by them; ``step`` is the run output's step (the epochs trained).
    """
    run = client.get_run(run_id)
    params = {k: v for k, v in run.data.params.items()}
    model = client.create_logged_model(
        run.info.experiment_id,
        name=model_name(run.info.run_name, run_id),
        source_run_id=run_id,
        tags={RUN_TAG: run_id},
        params=params,
        model_type=MODEL_TYPE,
    )
    try:
        client.log_model_artifacts(model.model_id, str(folder))
    except BaseException:
        client.finalize_logged_model(model.model_id, "FAILED")
        raise
    client.finalize_logged_model(model.model_id, "READY")
    # The run's latest values, sent again with the model's id and their own timestamp and step:
    # MLflow keeps one entry per (key, value, timestamp, step), so the run's history is unchanged
    # and the values are linked to the model. (RunData keeps the entities only privately.)
    latest = getattr(run.data, "_metric_objs", None) or [
        Metric(k, v, int(time.time() * 1000), step) for k, v in run.data.metrics.items()
    ]
    linked = [Metric(m.key, m.value, m.timestamp, m.step, model_id=model.model_id) for m in latest]
    for i in range(0, len(linked), 1000):  # MLflow's limit per log_batch request
        client.log_batch(run_id, metrics=linked[i : i + 1000])
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
    return model.model_id


def logged_model_of(client, run_id: str, files: Sequence[str]) -> str | None:
    """The id of the freqstudy logged model of run ``run_id`` (the newest READY one holding exactly
    ``files``, a freqstudy model folder's), or None."""
    from mlflow.exceptions import MlflowException

    run = client.get_run(run_id)
    try:
        found = client.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run_id}'",
            order_by=[{"field_name": "creation_time", "ascending": False}],
        )
    except MlflowException:  # a server without logged models
        return None
    for m in found:
        if m.model_type != MODEL_TYPE or not str(m.status).endswith("READY"):
            continue
        # Exactly the three files of a freqstudy model folder (anything else, a pickle included,
        # and the model is not the one freqstudy logged: the run's own folder is used instead).
        if sorted(a.path for a in client.list_logged_model_artifacts(m.model_id)) == sorted(files):
            return m.model_id
    return None
