"""A study on a Ray cluster of several nodes, as a cluster user runs it: a head that runs
no trials (``num_cpus=0``) and two 1-CPU worker nodes from ``ray.cluster_utils.Cluster``,
the driver started by ``freqstudy run --address``. Trials run only on worker nodes (by
their node ids); a worker node removed while a trial trains there, the trial is retried
from its checkpoint on the other node; a node added back is used; nothing is lost or
duplicated and no run is left RUNNING. The console stays compact: Ray's raylet dumps of
the lost node do not reach it.

Smoke-size (width 8, 3 epochs on 1000 images) so it fits in a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from study import metrics as M
from study.tracking.study_runs import find_study_run
from tests.support import trial_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SMOKE = {
    "train.epochs": 3,
    "data.train_limit": 1000,
    "train.batch_size": 128,
    "model.width": 8,
    "eval.corruption_limit": 5,
    "eval.corruptions": ["gaussian_noise", "contrast"],
    "eval.severities": [1, 3],
    "eval.test": False,
}
# A lost node is declared dead after 3 missed 1-second health checks (Ray's default is 15 s).
FAST_HEALTH = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": FAST_HEALTH},
    )
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    try:
        yield c, workers
    finally:
        c.shutdown()


def _running_on(uri: str, study: str, node_id: str) -> dict | None:
    """A RUNNING trial run on ``node_id`` that has logged at least one epoch (so a checkpoint)."""
    parent = find_study_run(uri, study)
    if parent is None:
        return None
    for r in trial_runs(uri, parent):
        if r["status"] == "RUNNING" and r["tags"].get(M.TAG_NODE) == node_id and M.TRAIN_LOSS in r["metrics"]:
            return r
    return None


def test_worker_lost_mid_trial_retries_from_checkpoint_and_a_new_node_is_used(
    cluster, subset_dir, mlflow_server, tmp_path
):
    c, workers = cluster
    head_id = c.head_node.unique_id
    study = "cluster"
    sets = [a for k, v in SMOKE.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    cmd = [sys.executable, "-m", "study.cli", "run", "--space", "smoke", "--study", study]
    cmd += [
        "--address",
        c.address,
        "--tracking-uri",
        mlflow_server.uri,
        "--storage",
        str(tmp_path / "studies"),
    ]
    cmd += [
        "--data-dir",
        str(subset_dir),
        "--num-trials",
        "4",
        "--max-concurrent",
        "2",
        "--cpus-per-trial",
        "1",
    ]
    out = open(tmp_path / "console.txt", "w")
    driver = subprocess.Popen(
        cmd + sets, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    removed = added = None
    try:
        deadline = time.time() + 600
        while time.time() < deadline and driver.poll() is None and removed is None:
            for node in workers:
                victim = _running_on(mlflow_server.uri, study, node.unique_id)
                if victim is not None:
                    removed = (node.unique_id, victim)
                    c.remove_node(node)
                    added = c.add_node(num_cpus=1)  # a node back, for the retried and later trials
                    break
            time.sleep(0.5)
        assert removed is not None, (tmp_path / "console.txt").read_text()[-3000:]
        driver.wait(timeout=900)
    finally:
        if driver.poll() is None:
            driver.kill()
        out.close()
    console = (tmp_path / "console.txt").read_text()
    assert driver.returncode == 0, console[-3000:]

    parent = find_study_run(mlflow_server.uri, study)
    runs = trial_runs(mlflow_server.uri, parent)
    nodes = {r["tags"][M.TAG_NODE] for r in runs}
    assert head_id not in nodes, "a trial ran on the head (num_cpus=0)"
    assert nodes <= {w.unique_id for w in workers} | {added.unique_id}
    assert added.unique_id in nodes, "the node added back ran no trial"
    # Nothing lost or duplicated: four trials, one FINISHED run each, none RUNNING.
    finished = [r for r in runs if r["status"] == "FINISHED"]
    assert sorted(r["tags"][M.TAG_TRIAL_ID] for r in finished) == sorted(
        {r["tags"][M.TAG_TRIAL_ID] for r in runs}
    )
    assert len(finished) == 4
    assert not [r for r in runs if r["status"] == "RUNNING"]
    # The trial on the lost node: its first run closed, then retried elsewhere from its checkpoint.
    lost_node, victim = removed
    attempts = [r for r in runs if r["tags"][M.TAG_TRIAL_ID] == victim["tags"][M.TAG_TRIAL_ID]]
    retry = [r for r in attempts if r["status"] == "FINISHED"][0]
    assert retry["run_id"] != victim["run_id"] and retry["tags"][M.TAG_NODE] != lost_node
    steps = [
        m.step for m in MlflowClient(mlflow_server.uri).get_metric_history(retry["run_id"], M.TRAIN_LOSS)
    ]
    first_steps = [
        m.step for m in MlflowClient(mlflow_server.uri).get_metric_history(victim["run_id"], M.TRAIN_LOSS)
    ]
    assert min(steps) > min(first_steps), (steps, first_steps)  # it went on from a later epoch
    # Every trial tags the driver's code version (nodes need no .git).
    assert len({r["tags"][M.TAG_CODE_VERSION] for r in runs}) == 1
    # The compact console: no raylet state dump of the lost node, no Ray traceback.
    for noise in ("raylet", "Traceback", "NodeDiedError", "╭"):
        assert noise not in console, (noise, console)
    assert f"study {study}: 4 trials in " in console and "4 finished" in console, console
    assert "freqstudy ui" not in console  # another server than the local store's
