"""Studies on a Ray cluster of several nodes, as a cluster user runs them: one
``ray.cluster_utils.Cluster`` for the module (a head that runs no trials, ``num_cpus=0``, with
the dashboard that takes Ray jobs, on loopback, and two 1-CPU worker nodes), a real
``mlflow server`` (SQLite-backed, ``tests/conftest.py``), the CIFAR-10 subset.

- A study submitted with ``ray job submit --working-dir <repo>`` runs to the end (the first
  job on the fresh cluster: the test that reproduces defect 7, so it runs first).
- ``ray job stop`` ends a submitted study with one line of its own and no RUNNING run; a
  second job with ``--resume`` finishes it.
- ``freqstudy run --address``: trials only on worker nodes (by Ray node id); a worker node
  removed while its trial is mid-way (held after epoch 1 of 2), the trial retried from that
  checkpoint on a node added back; nothing lost or duplicated; no run left RUNNING.

Trials that must be caught mid-way wait at a gate the test opens
(``tests.cluster_support``), so no step depends on how fast the machine is.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from study import metrics as M
from study.tracking.study_runs import find_study_run
from tests.cli_runner import freqstudy_command
from tests.cluster_support import held_trials
from tests.support import TINY_STUDY, count_study_runs, trial_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
# Two epochs, a checkpoint after each (the first is where a held trial waits), one corruption.
TINY = {
    **TINY_STUDY,
    "train.epochs": 2,
    "train.checkpoint_min_seconds": 0,
    "eval.corruptions": ["gaussian_noise"],
    "eval.severities": [1],
}
SETS = [a for k, v in TINY.items() for a in ("--set", f"{k}={json.dumps(v, separators=(',', ':'))}")]
# A lost node is declared dead after 3 missed 1-second health checks (Ray's default is 15 s).
FAST_HEALTH = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
STOP_LINE = (
    "freqstudy run: stopped (SIGTERM); study {study}'s running trials are closed as KILLED; "
    "continue it with --resume"
)


class LocalCluster:
    """The module's cluster: the Ray ``Cluster``, its worker nodes and the dashboard's address."""

    def __init__(self, storage: Path):
        from ray.cluster_utils import Cluster

        from study.tracking.server import free_port

        self.storage = storage
        self.dashboard = f"http://{LOOPBACK}:{free_port()}"
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "include_dashboard": True,
                "dashboard_host": LOOPBACK,
                "dashboard_port": int(self.dashboard.rsplit(":", 1)[1]),
                "_system_config": FAST_HEALTH,
            },
        )
        for _ in range(2):
            self.add_node()
        self.cluster.wait_for_nodes()

    def add_node(self):
        return self.cluster.add_node(num_cpus=1)

    @property
    def head_id(self) -> str:
        return self.cluster.head_node.node_id

    def worker_ids(self) -> set[str]:
        return {n.node_id for n in self.cluster.worker_nodes}

    def ray(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """The ``ray`` command line (``ray job submit`` ...), against this cluster's dashboard."""
        cmd = [sys.executable, "-m", "ray.scripts.scripts", *args]
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)

    def submit(self, job: str, entrypoint: list[str], *, wait: bool, env: dict | None = None):
        """``ray job submit --working-dir <repo>``: the checkout shipped as the job's package."""
        args = [
            "job",
            "submit",
            "--address",
            self.dashboard,
            "--submission-id",
            job,
            "--working-dir",
            str(REPO),
        ]
        if env:
            args += ["--runtime-env-json", json.dumps({"env_vars": env})]
        return self.ray(*args, *([] if wait else ["--no-wait"]), "--", *entrypoint)

    def jobs(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if importlib.util.find_spec("aiohttp_cors") is None:
        pytest.skip("Ray's dashboard (Ray jobs) needs ray[default]: pip install -e '.[test]'")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")  # the dashboard would report to Ray's servers
        c = LocalCluster(tmp_path_factory.mktemp("cluster") / "studies")
        try:
            yield c
        finally:
            c.cluster.shutdown()  # the processes this module started, by their PIDs


def _study_flags(cluster: LocalCluster, study: str, uri: str, subset_dir: Path) -> list[str]:
    return [
        "--study",
        study,
        "--tracking-uri",
        uri,
        "--storage",
        str(cluster.storage),
        "--data-dir",
        str(subset_dir),
    ]


def _job_logs(cluster: LocalCluster, job: str, submitted: subprocess.CompletedProcess) -> str:
    """The job's output (the driver's console), after ``ray job submit`` said it was submitted."""
    assert f"Job '{job}' submitted successfully" in submitted.stdout + submitted.stderr, (
        submitted.stdout[-3000:] + submitted.stderr[-3000:]
    )
    return cluster.jobs().get_job_logs(job)


def _trials(uri: str, study: str) -> list[dict]:
    parent = find_study_run(uri, study)
    assert parent is not None, f"no parent run for study {study}"
    return trial_runs(uri, parent)


def _one_finished_run_per_trial(runs: list[dict], trials: int) -> None:
    """Nothing lost or duplicated: ``trials`` trials, each with exactly one FINISHED run; none RUNNING."""
    finished = [r["tags"][M.TAG_TRIAL_ID] for r in runs if r["status"] == "FINISHED"]
    assert len(finished) == len(set(finished)) == trials, [(r["tags"], r["status"]) for r in runs]
    assert set(finished) == {r["tags"][M.TAG_TRIAL_ID] for r in runs}
    assert not [r for r in runs if r["status"] == "RUNNING"]


def _wait_held(gate: Path, done, what: str, *, count: int = 1, limit_s: float = 600) -> list[tuple[str, str]]:
    """Wait until ``count`` trials wait at the gate; ``done()`` says the study ended first (a failure)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        held = held_trials(gate)
        if len(held) >= count:
            return held
        ended = done()
        assert not ended, f"{what} ended before {count} trial(s) reached the gate: {ended}"
        time.sleep(0.5)
    raise AssertionError(f"{what}: no trial reached the gate in {limit_s:.0f} s")


def test_a_study_submitted_as_a_ray_job_runs_to_the_end(cluster, mlflow_server, subset_dir):
    """The first job on a fresh cluster. Before the fix (defect 7) every trial finished and
    then the driver failed with ``freqstudy run: error: [Errno 2] No such file or directory``,
    the parent run left RUNNING: each worker node's runtime-env agent deletes and unpacks the
    job's package again when it starts the job's first worker, and nodes on one disk share
    that folder, the driver's current folder, which Tune then needs as ``fit`` ends."""
    study, job = "job-run", "freqstudy-job-run"
    version = "v-job-test"  # provenance without .git: Ray does not ship .git
    entry = freqstudy_command("run", "--space", "smoke")
    entry += _study_flags(cluster, study, mlflow_server.uri, subset_dir)
    entry += ["--num-trials", "3", "--max-concurrent", "2", "--cpus-per-trial", "1", *SETS]
    done = cluster.submit(job, entry, wait=True, env={"FREQSTUDY_CODE_VERSION": version})
    logs = _job_logs(cluster, job, done)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:] + logs[-3000:]
    assert cluster.jobs().get_job_status(job).value == "SUCCEEDED"
    assert f"study {study}: 3 trials in " in logs and "3 finished" in logs, logs[-3000:]
    assert "Traceback" not in logs and "error:" not in logs, logs[-3000:]

    client = MlflowClient(mlflow_server.uri)
    parent = client.get_run(find_study_run(mlflow_server.uri, study))
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[M.TAG_CODE_VERSION] == version
    runs = _trials(mlflow_server.uri, study)
    _one_finished_run_per_trial(runs, 3)
    assert {r["tags"][M.TAG_CODE_VERSION] for r in runs} == {version}
    nodes = {r["tags"][M.TAG_NODE] for r in runs}
    assert nodes <= cluster.worker_ids() and cluster.head_id not in nodes


def test_ray_job_stop_ends_the_study_in_one_line_and_a_resumed_job_finishes_it(
    cluster, mlflow_server, subset_dir, tmp_path
):
    """`ray job stop` while both trials wait mid-way (defect 8: Ray's SIGTERM stack dump, no
    line of the driver's own, runs left RUNNING until a later resume); then `--resume`,
    submitted as a job, finishes the study in its parent run."""
    study, job = "job-stop", "freqstudy-job-stop"
    gate = tmp_path / "gate"
    gate.mkdir()
    flags = _study_flags(cluster, study, mlflow_server.uri, subset_dir)
    entry = [sys.executable, "-m", "tests.cluster_support", str(gate), "run", "--space", "smoke", *flags]
    entry += ["--num-trials", "2", "--max-concurrent", "2", "--cpus-per-trial", "1", *SETS]
    submitted = cluster.submit(job, entry, wait=False)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    jobs = cluster.jobs()

    def ended():
        status = jobs.get_job_status(job)
        return status.is_terminal() and f"{status.value}: {jobs.get_job_logs(job)[-3000:]}"

    _wait_held(gate, ended, f"job {job}", count=2)
    stop = cluster.ray("job", "stop", "--address", cluster.dashboard, job, timeout=120)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert jobs.get_job_status(job).value == "STOPPED"
    logs = jobs.get_job_logs(job)
    # The driver's own line, last, and nothing of Ray's SIGTERM handling.
    assert logs.strip().splitlines()[-1] == STOP_LINE.format(study=study), logs[-3000:]
    assert "Traceback" not in logs and "SIGTERM handler" not in logs, logs[-3000:]
    client = MlflowClient(mlflow_server.uri)
    assert client.get_run(find_study_run(mlflow_server.uri, study)).info.status == "KILLED"
    stopped = _trials(mlflow_server.uri, study)
    assert len(stopped) == 2 and {r["status"] for r in stopped} == {"KILLED"}, stopped

    resume = freqstudy_command("run", *flags, "--resume")
    done = cluster.submit(job + "-resumed", resume, wait=True)
    logs = _job_logs(cluster, job + "-resumed", done)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:] + logs[-3000:]
    assert f"study {study}: resumed, 2 trials" in logs and "2 finished" in logs, logs[-3000:]
    assert count_study_runs(mlflow_server.uri, study) == 1
    assert client.get_run(find_study_run(mlflow_server.uri, study)).info.status == "FINISHED"
    runs = _trials(mlflow_server.uri, study)
    finished = [r for r in runs if r["status"] == "FINISHED"]
    assert {r["tags"][M.TAG_TRIAL_ID] for r in finished} == {r["tags"][M.TAG_TRIAL_ID] for r in stopped}
    _one_finished_run_per_trial(runs, 2)


def test_worker_lost_mid_trial_retries_from_checkpoint_and_a_node_added_back_is_used(
    cluster, mlflow_server, subset_dir, tmp_path
):
    study = "cluster"
    gate = tmp_path / "gate"
    gate.mkdir()
    cmd = [sys.executable, "-m", "tests.cluster_support", str(gate), "run", "--space", "smoke"]
    cmd += [
        "--address",
        cluster.cluster.address,
        *_study_flags(cluster, study, mlflow_server.uri, subset_dir),
    ]
    cmd += ["--num-trials", "4", "--max-concurrent", "2", "--cpus-per-trial", "1", *SETS]
    workers_before = cluster.worker_ids()
    console_path = tmp_path / "console.txt"
    with open(console_path, "w") as out:
        driver = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:

            def ended():
                return driver.poll() is not None and console_path.read_text()[-3000:]

            # Both first trials wait after their first epoch's checkpoint, one on each worker.
            held = _wait_held(gate, ended, "the study", count=2)
            victim, lost = held[0]
            assert {node for _, node in held} == workers_before, (held, workers_before)
            cluster.cluster.remove_node(next(n for n in cluster.cluster.worker_nodes if n.node_id == lost))
            added = cluster.add_node()
            # The retried trial waits again, after its next epoch: on the added node, the only
            # free CPU while the other trial waits.
            retried = _wait_held(gate, ended, "the study", count=3)
            assert (victim, added.node_id) in retried, (retried, added.node_id)
            (gate / "open").touch()
            driver.wait(timeout=600)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    console = console_path.read_text()
    assert driver.returncode == 0, console[-3000:]

    runs = _trials(mlflow_server.uri, study)
    nodes = {r["tags"][M.TAG_NODE] for r in runs}
    assert cluster.head_id not in nodes, "a trial ran on the head (num_cpus=0)"
    assert nodes <= workers_before | {added.node_id}
    _one_finished_run_per_trial(runs, 4)
    # The trial on the lost node: its first run closed as KILLED, retried on the added node
    # from its checkpoint (its metrics start at the second epoch).
    attempts = [r for r in runs if r["tags"][M.TAG_TRIAL_ID] == victim]
    first = [r for r in attempts if r["tags"][M.TAG_NODE] == lost]
    retry = [r for r in attempts if r["status"] == "FINISHED"]
    assert len(first) == 1 and first[0]["status"] == "KILLED", attempts
    assert len(retry) == 1 and retry[0]["tags"][M.TAG_NODE] == added.node_id, attempts
    client = MlflowClient(mlflow_server.uri)
    steps = [m.step for m in client.get_metric_history(retry[0]["run_id"], M.TRAIN_LOSS)]
    first_steps = [m.step for m in client.get_metric_history(first[0]["run_id"], M.TRAIN_LOSS)]
    assert first_steps and steps and min(steps) > max(first_steps), (steps, first_steps)
    # Every trial carries the driver's code version (nodes need no .git).
    assert len({r["tags"][M.TAG_CODE_VERSION] for r in runs}) == 1
    # The compact console: no raylet state dump of the lost node, no Ray traceback.
    for noise in ("raylet", "Traceback", "NodeDiedError", "╭"):
        assert noise not in console, (noise, console[-3000:])
    assert f"study {study}: 4 trials in " in console and "4 finished" in console, console[-3000:]
    assert "freqstudy ui" not in console  # another server than the local store's
