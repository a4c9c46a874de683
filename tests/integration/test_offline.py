"""``freqstudy train`` on a machine that cannot download anything: an empty
``FREQSTUDY_HOME``, no ``FREQSTUDY_FROST_DIR``, every connection off the loopback
refused (a ``sitecustomize`` in every Python process of the run, spawned
corruption workers included, plus proxies that lead nowhere), and all 19
corruptions at a few images. It finishes, and frost (whose textures ship in the
package) is evaluated beside the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow import MlflowClient

from study import metrics as M
from tests.cli_runner import run_freqstudy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

# Imported by every Python process started with this folder first on PYTHONPATH.
NO_NETWORK = textwrap.dedent("""
    import socket

    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
    LOOPBACK = ("127.0.0.1", "::1", "localhost")


    def _check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise OSError(f"network disabled for this test: {address[0]}")


    def connect(self, address):
        _check(self, address)
        return _connect(self, address)


    def connect_ex(self, address):
        _check(self, address)
        return _connect_ex(self, address)


    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
""")


def test_train_offline_with_an_empty_home_evaluates_frost(mlflow_server, subset_dir, tmp_path):
    guard = tmp_path / "no-network"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NO_NETWORK)
    home = tmp_path / "home"  # empty: no caches, no frost textures, no MLflow store
    nowhere = "http://127.0.0.1:9"  # the discard port: nothing listens
    env = {k: v for k, v in os.environ.items() if k != "FREQSTUDY_FROST_DIR"}
    env.update(
        FREQSTUDY_HOME=str(home),
        PYTHONPATH=os.pathsep.join([str(guard), str(REPO)]),
        http_proxy=nowhere,
        https_proxy=nowhere,
        HTTP_PROXY=nowhere,
        HTTPS_PROXY=nowhere,
        no_proxy="127.0.0.1,localhost",
        NO_PROXY="127.0.0.1,localhost",
    )
    result = tmp_path / "result.json"
    sets = {
        "train.epochs": "1",
        "model.width": "8",
        "data.train_limit": "200",
        "data.download": "false",
        "train.batch_size": "100",
        "eval.corruptions": "[" + ",".join(M.ALL_CORRUPTIONS) + "]",
        "eval.corruption_limit": "2",
        "eval.batch_size": "500",
        "tracking.log_model": "false",
        "tracking.experiment": "offline",
    }
    argv = ["train", "--data-dir", subset_dir, "--tracking-uri", mlflow_server.uri, "--output-json", result]
    argv += [arg for k, v in sets.items() for arg in ("--set", f"{k}={v}")]
    # The guard is in place: a connection off the loopback fails in this environment.
    probe = subprocess.run(
        [sys.executable, "-c", "import socket; socket.create_connection(('192.0.2.1', 80), timeout=5)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode != 0 and "network disabled for this test" in probe.stderr

    proc = run_freqstudy(*argv, env=env, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    doc = json.loads(result.read_text())
    assert doc["status"] == "finished"
    metrics = MlflowClient(mlflow_server.uri).get_run(doc["run_id"]).data.metrics
    assert len(M.ALL_CORRUPTIONS) == 19
    for split in ("val", "test"):
        for name in M.ALL_CORRUPTIONS:
            assert f"{split}/corruption/{name}" in metrics, f"{split}/corruption/{name}"
        assert 0.0 <= metrics[f"{split}/corruption/frost"] <= 100.0
