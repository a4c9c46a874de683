"""Hostile input through a real ``mlflow server``: a run without a model ends in one line
saying so, whatever else the run lacks."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from study.cli import main

pytestmark = pytest.mark.integration


def new_run(client: MlflowClient, name: str, params: dict[str, str] | None = None) -> str:
    exp = client.get_experiment_by_name(name) or None
    exp_id = exp.experiment_id if exp else client.create_experiment(name)
    run = client.create_run(exp_id)
    for k, v in (params or {}).items():
        client.log_param(run.info.run_id, k, v)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@pytest.mark.parametrize("params", [{}, {"data.dir": "/nonexistent/cifar"}], ids=["no-params", "data-dir"])
def test_fourier_on_a_run_without_a_model_says_so(mlflow_server, capsys, params):
    """It said ``--data-dir: the run logged no data.dir`` (or named the data folder)."""
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    run_id = new_run(client, "hostile-fourier", params)
    assert main(["fourier", run_id, "--tracking-uri", mlflow_server.uri]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"freqstudy fourier: error: run {run_id}: no freqstudy model "
        "(model/freqstudy-model.json missing; was tracking.log_model off?)\n"
    )
