"""Loading a logged model runs no code from the store: a run whose model is a pickle-format file
whose unpickling would create a marker file (an MLflow pytorch-flavour folder in the run's
artifacts, the same as an MLflow 3 logged model, or a ``torch.save`` file disguised under the
safetensors name) is refused with one line naming the file by ``freqstudy inspect``,
``freqstudy fourier``, the registry's loader and registering, and the marker never appears.
The payload is real: ``torch.load(weights_only=False)`` of the same file creates its marker."""

from __future__ import annotations

import hashlib
import json
import pathlib
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from study.cli import main
from study.engine.model_folder import MODEL_FORMAT
from study.tracking import load_logged_model, load_registered_model
from study.tracking.registry import Registration, register_models

pytestmark = pytest.mark.integration

PYTORCH_MLMODEL = """artifact_path: model
flavors:
  python_function:
    data: data
    loader_module: mlflow.pytorch
    pickle_module_name: mlflow.pytorch.pickle_module
  pytorch:
    model_data: data
    pytorch_version: 2.13.0
    pickle_module_name: mlflow.pytorch.pickle_module
"""


class Payload:
    """Unpickling it touches ``marker``: a stand-in for ``os.system``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def pickle_model_folder(folder: Path, marker: Path) -> Path:
    """An MLflow pytorch-flavour model folder whose ``data/model.pth`` touches ``marker`` when loaded."""
    (folder / "data").mkdir(parents=True)
    torch.save(Payload(marker), folder / "data" / "model.pth")
    (folder / "MLmodel").write_text(PYTORCH_MLMODEL)
    return folder


def test_the_payload_is_real(tmp_path):
    marker = tmp_path / "control-marker"
    folder = pickle_model_folder(tmp_path / "model", marker)
    torch.load(folder / "data" / "model.pth", weights_only=False)
    assert marker.exists()


@pytest.fixture(scope="module")
def crafted(mlflow_server, tmp_path_factory):
    """Three runs with pickle-format models and the marker each would create: ``{case: run_id}``."""
    tmp = tmp_path_factory.mktemp("crafted")
    marker = tmp / "marker"
    client = MlflowClient(mlflow_server.uri)
    experiment = client.create_experiment("crafted-models")
    runs = {}
    # 1. An MLflow pytorch-flavour folder as the run's model/ artifacts.
    run = client.create_run(experiment).info.run_id
    client.log_artifacts(run, str(pickle_model_folder(tmp / "flavour", marker)), "model")
    runs["flavour"] = run
    # 2. The same as an MLflow 3 logged model (its files live outside the run's artifacts).
    run = client.create_run(experiment).info.run_id
    logged = client.create_logged_model(experiment, name="model", source_run_id=run)
    client.log_model_artifacts(logged.model_id, str(pickle_model_folder(tmp / "logged", marker)))
    runs["logged"] = run
    # 3. A torch.save file under the safetensors name, with a manifest that fits it.
    run = client.create_run(experiment).info.run_id
    disguised = tmp / "disguised"
    disguised.mkdir()
    torch.save(Payload(marker), disguised / "weights.safetensors")
    digest = hashlib.sha256((disguised / "weights.safetensors").read_bytes()).hexdigest()
    manifest = {"format": MODEL_FORMAT, "weights_sha256": digest}
    (disguised / "freqstudy-model.json").write_text(json.dumps(manifest))
    (disguised / "config.yaml").write_text("model:\n  width: 8\n")
    client.log_artifacts(run, str(disguised), "model")
    runs["disguised"] = run
    return runs, marker


NAMED = {
    "flavour": "model/data/model.pth is a pickle-format model",
    "logged": "/data/model.pth is a pickle-format model",
    "disguised": "weights.safetensors",
}


@pytest.mark.parametrize("case", sorted(NAMED))
def test_inspect_refuses_a_pickle_model_in_one_line(crafted, case, mlflow_server, capsys):
    runs, marker = crafted
    code = main(["inspect", runs[case], "--tracking-uri", mlflow_server.uri])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and runs[case] in err and NAMED[case] in err, err
    if case != "disguised":
        assert "freqstudy loads only safetensors models" in err
    if case == "logged":
        assert "models:/m-" in err
    assert not marker.exists()


@pytest.mark.parametrize("case", ["flavour", "logged"])
def test_fourier_refuses_a_pickle_model_in_one_line(crafted, case, mlflow_server, subset_dir, capsys):
    runs, marker = crafted
    argv = ["fourier", runs[case], "--images", "2", "--tracking-uri", mlflow_server.uri]
    code = main([*argv, "--data-dir", str(subset_dir), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and runs[case] in err and NAMED[case] in err, err
    assert not marker.exists()


def test_registry_refuses_to_register_or_load_a_pickle_model(crafted, mlflow_server):
    runs, marker = crafted
    uri = mlflow_server.uri
    with pytest.raises(ValueError, match=r"model/data/model\.pth is a pickle-format model"):
        register_models("crafted", [Registration(runs["flavour"], ("champion",))], uri)
    # A version made behind freqstudy's back (MLflow's own client) does not load either.
    client = MlflowClient(uri)
    for case in ("flavour", "logged"):
        name = f"crafted-{case}"
        client.create_registered_model(name)
        mv = client.create_model_version(name, f"runs:/{runs[case]}/model", run_id=runs[case])
        client.set_registered_model_alias(name, "champion", mv.version)
        with pytest.raises(ValueError, match=NAMED[case].replace(".", r"\.")) as refused:
            load_registered_model(name, "champion", uri)
        assert "\n" not in str(refused.value) and runs[case] in str(refused.value)
    for run in runs.values():
        with pytest.raises(ValueError):
            load_logged_model(run, uri)
    assert not marker.exists()
