"""A logged model's config.yaml edited in the store (``mode: fixed`` -> ``mode: free``) is refused
in one line by ``freqstudy inspect`` and the registry's loader, naming the file and the mismatch:
the manifest's sha256 covers the config, and the run's own params are checked against it."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from mlflow import MlflowClient

from study.cli import main
from study.config import TrialConfig
from study.engine.trial import build_model
from study.tracking import load_logged_model
from study.tracking.models import log_model
from study.tracking.runs import start_trial_run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def logged(mlflow_server, tmp_path_factory):
    """A fixed-mode run with its model logged: ``(run_id, local copy of its model folder)``."""
    config = TrialConfig.from_flat(
        {"model.width": 4, "frequency.mode": "fixed", "device": "cpu", "tracking.experiment": "edits"}
    )
    client = MlflowClient(mlflow_server.uri)
    run_id = start_trial_run(client, config, parent_run_id=None, tags=None)
    torch.manual_seed(0)
    log_model(build_model(config).eval(), config, run_id=run_id, tracking_uri=mlflow_server.uri)
    client.set_terminated(run_id)
    local = tmp_path_factory.mktemp("download")
    folder = client.download_artifacts(run_id, "model", str(local))
    return run_id, folder


def relog(mlflow_server, run_id, folder, *, rehash: bool) -> None:
    """The run's model/config.yaml replaced by a free-mode one (and the manifest's digest with it)."""
    from pathlib import Path

    folder = Path(folder)
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("mode: fixed", "mode: free"))
    client = MlflowClient(mlflow_server.uri)
    client.log_artifact(run_id, str(config), "model")
    if rehash:
        manifest = json.loads((folder / "freqstudy-model.json").read_text())
        manifest["config_sha256"] = hashlib.sha256(config.read_bytes()).hexdigest()
        (folder / "freqstudy-model.json").write_text(json.dumps(manifest))
        client.log_artifact(run_id, str(folder / "freqstudy-model.json"), "model")


def test_inspect_refuses_a_model_whose_mode_was_edited(logged, mlflow_server, capsys):
    run_id, folder = logged
    assert main(["inspect", run_id, "--tracking-uri", mlflow_server.uri]) == 0
    capsys.readouterr()
    relog(mlflow_server, run_id, folder, rehash=False)
    code = main(["inspect", run_id, "--tracking-uri", mlflow_server.uri])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert run_id in err and "config.yaml does not match the sha256" in err, err
    # The digest rewritten to fit: the run's own params still say fixed.
    relog(mlflow_server, run_id, folder, rehash=True)
    code = main(["inspect", run_id, "--tracking-uri", mlflow_server.uri])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "config.yaml says frequency.mode=free but the run's params say frequency.mode=fixed" in err, err
    with pytest.raises(ValueError, match="frequency.mode=fixed"):
        load_logged_model(run_id, mlflow_server.uri)
