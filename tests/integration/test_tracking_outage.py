"""A tracking server that stops answering: every MLflow call is bounded, ``train`` and
``run`` refuse a given server that does not answer before any work (one line, exit 2), a
server lost mid-trial is one line naming the URI and what was being logged, a study goes
on and records the trials it cost as failed with that reason, and no trial run is left
``running`` once its trial has ended.

Servers that get killed here are private (the session's ``mlflow_server`` is shared), and
started in their own process group so that killing the group takes the uvicorn worker too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from study import metrics as M
from study.cli import main
from study.tracking.server import (
    HTTP_BOUNDS,
    free_port,
    group_members,
    http_bounds_env,
    is_healthy,
    server_command,
    server_env,
)
from tests.cli_runner import run_freqstudy
from tests.support import TINY_STUDY, set_flags

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TINY = TINY_STUDY


class PrivateServer:
    """A real ``mlflow server`` on a free loopback port, in its own session, to be killed."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "server.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                server_command(host="127.0.0.1", port=self.port, root=root),
                env=server_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while not is_healthy(self.uri):
            assert self.proc.poll() is None, self.log_path.read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server not healthy in 180 s"
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL to the whole group (mlflow and its uvicorn worker), as a crash would."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while group_members(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not is_healthy(self.uri)


@pytest.fixture
def private_server(tmp_path):
    server = PrivateServer(tmp_path / "mlflow")
    yield server
    server.kill()


def closed_port_uri() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there once free_port returns


def test_mlflow_http_calls_are_bounded_and_a_users_setting_wins(monkeypatch):
    import study.tracking  # noqa: F401  (its import bounds the process's MLflow calls)

    assert {k: os.environ[k] for k in HTTP_BOUNDS} == http_bounds_env()  # set here unless the user set it
    assert int(HTTP_BOUNDS["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 30
    assert int(HTTP_BOUNDS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 3
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    assert http_bounds_env()["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    # A refused connection fails one MLflow call within seconds, as one line naming the URI.
    from study.tracking.server import TrackingServerLost, logging_to

    uri = closed_port_uri()
    started = time.monotonic()
    with pytest.raises(TrackingServerLost) as lost, logging_to(uri, "logging epoch 3 metrics of run r1"):
        MlflowClient(uri).get_experiment_by_name("anything")
    assert time.monotonic() - started < 30
    assert (
        str(lost.value)
        == f"tracking server {uri}: lost while logging epoch 3 metrics of run r1 (ConnectionError)"
    )
    # Anything else (a bad request, a missing run) passes through unchanged.
    with pytest.raises(KeyError), logging_to(uri, "anything"):
        raise KeyError("not the server")


def test_train_refuses_a_tracking_server_that_does_not_answer(tmp_path, monkeypatch, capsys):
    uri = closed_port_uri()
    monkeypatch.setenv("FREQSTUDY_HOME", str(tmp_path / "home"))
    started = time.monotonic()
    assert main(["train", "--tracking-uri", uri, "--set", "data.download=false"]) == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err.strip()
    assert err == (
        f"freqstudy train: error: tracking server {uri} does not answer (GET /health: connection refused); "
        "start it or leave --tracking-uri out for the local store"
    )
    assert not (tmp_path / "home").exists()  # no data, no checkpoint, no local server touched
    # The same as a user runs it: a fresh process, one stderr line, exit 2 (most of the time
    # is Python importing torch and MLflow on a busy machine, not waiting on the server).
    env = dict(os.environ, FREQSTUDY_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO))
    started = time.monotonic()
    proc = run_freqstudy("train", "--tracking-uri", uri, env=env, timeout=180)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [err]
    assert time.monotonic() - started < 120


def test_run_refuses_a_tracking_server_that_does_not_answer_before_ray(tmp_path, monkeypatch, capsys):
    import ray

    import study.search.tune  # noqa: F401  (imported before the clock starts: Ray's import is slow)

    uri = closed_port_uri()
    monkeypatch.setenv("FREQSTUDY_HOME", str(tmp_path / "home"))
    argv = ["run", "--space", "smoke", "--study", "unreachable", "--tracking-uri", uri]
    started = time.monotonic()
    assert main([*argv, "--storage", str(tmp_path / "studies")]) == 2
    assert time.monotonic() - started < 15
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"tracking server {uri} does not answer" in err[0], err
    assert not (tmp_path / "studies").exists()
    assert not ray.is_initialized()


@pytest.mark.slow
def test_train_losing_the_server_mid_trial_is_one_line_and_exit_1(
    subset_dir, private_server, tmp_path, monkeypatch, capsys, caplog
):
    """The server dies after epoch 1 of 2: epoch 2's metrics cannot be logged; ``train`` ends
    within MLflow's bounded retries with one line naming the URI, what was being logged and the run."""
    import study.cli.train as train_cli

    monkeypatch.setenv("FREQSTUDY_HOME", str(tmp_path / "home"))
    killed_at: list[float] = []
    shown = train_cli.format_epoch

    def kill_after_first_epoch(row, epochs):
        if int(row["epoch"]) == 1:
            private_server.kill()
            killed_at.append(time.monotonic())
        return shown(row, epochs)

    monkeypatch.setattr(train_cli, "format_epoch", kill_after_first_epoch)
    sets = {**TINY, "train.epochs": 2, "data.download": False, "tracking.log_model": False}
    argv = ["train", "--data-dir", str(subset_dir), "--tracking-uri", private_server.uri]
    argv += set_flags(sets)
    assert main(argv) == 1
    assert killed_at and time.monotonic() - killed_at[0] < 60
    # (A fresh home: the corrupted validation copy is made first, and says so.)
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("CIFAR-10-C")]
    assert len(err) == 1, err
    assert "Retrying" not in caplog.text  # urllib3's line per retry is not shown
    assert err[0].startswith(
        f"freqstudy train: tracking server {private_server.uri}: lost while logging epoch 2 "
    )
    assert err[0].endswith("(ConnectionError)") and "of run " in err[0]


def test_trial_runs_never_stay_running_once_their_trials_ended(mlflow_server):
    """What a lost server leaves behind, closed by the study (at its end, or on --resume):
    a run still RUNNING, and a run that ended without its status tag."""
    from study.tracking.study_runs import close_orphaned_trials

    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment(f"orphans-{time.time_ns()}")
    parent = client.create_run(exp, tags={M.TAG_ROLE: "study"}).info.run_id

    def trial(**tags):
        return client.create_run(
            exp, tags={"mlflow.parentRunId": parent, M.TAG_ROLE: "trial", **tags}
        ).info.run_id

    still_running = trial(**{M.TAG_STATUS: "running"})
    ended_untagged = trial(**{M.TAG_STATUS: "running"})
    client.set_terminated(ended_untagged, status="FAILED")
    finished = trial(**{M.TAG_STATUS: "finished"})
    client.set_terminated(finished, status="FINISHED")

    assert close_orphaned_trials(client, parent, reason="killed: the test says so") == 2
    run = client.get_run(still_running)
    assert run.info.status == "KILLED"
    assert (
        run.data.tags[M.TAG_STATUS] == "failed" and run.data.tags[M.TAG_FAILURE] == "killed: the test says so"
    )
    run = client.get_run(ended_untagged)
    assert run.info.status == "FAILED" and run.data.tags[M.TAG_STATUS] == "failed"
    assert "tracking server was unreachable" in run.data.tags[M.TAG_FAILURE]
    run = client.get_run(finished)
    assert run.info.status == "FINISHED" and run.data.tags[M.TAG_STATUS] == "finished"
    assert M.TAG_FAILURE not in run.data.tags
    assert close_orphaned_trials(client, parent, reason="again") == 0


DRIVER = """
import json, sys
from study.search.space_parser import load_space
from study.cli import library_notes
from study.search.tune import run_study

fixed, data_dir, uri, storage, out = json.loads(sys.argv[1]), *sys.argv[2:]
with library_notes("run"):  # the library's notes reach stderr as `freqstudy run` shows them
  summary = run_study(
      load_space("smoke").with_fixed(fixed),
      study="server-killed",
      data_dir=data_dir,
      tracking_uri=uri,
      storage=storage,
      num_trials=3,
      max_concurrent=1,
      cpus_per_trial=1,
      max_failures=0,
      verbose=0,
  )
trials = [{"status": t["status"], "error": t["error"]} for t in summary.trials]
with open(out, "w") as f:
    json.dump({"trials": trials, "gains_logged": summary.gains_logged}, f)
"""


@pytest.mark.slow
def test_a_server_killed_mid_study_fails_the_remaining_trials_with_a_reason_and_the_study_ends(
    subset_dir, private_server, tmp_path
):
    out = tmp_path / "summary.json"
    log_path = tmp_path / "driver.log"
    env = dict(os.environ, FREQSTUDY_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-c", DRIVER, json.dumps(TINY), str(subset_dir), private_server.uri]
    cmd += [str(tmp_path / "studies"), str(out)]
    with open(log_path, "w") as log:
        driver = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        client = MlflowClient(private_server.uri)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and driver.poll() is None:
            exp = client.get_experiment_by_name("server-killed")
            if exp is not None and client.search_runs(
                [exp.experiment_id],
                filter_string=f"tags.`{M.TAG_ROLE}` = 'trial' and attributes.status = 'FINISHED'",
            ):
                break
            time.sleep(1)
        assert driver.poll() is None, log_path.read_text()[-3000:]
        private_server.kill()
        killed_at = time.monotonic()
        driver.wait(timeout=300)
        ended_after = time.monotonic() - killed_at
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    text = log_path.read_text()
    assert driver.returncode == 0, text[-3000:]
    assert ended_after < 180, f"{ended_after:.0f} s after the kill: {text[-3000:]}"
    summary = json.loads(out.read_text())
    statuses = sorted(t["status"] for t in summary["trials"])
    assert len(statuses) == 3 and "finished" in statuses and "failed" in statuses, summary
    assert set(statuses) == {"finished", "failed"}, summary
    for t in summary["trials"]:
        if t["status"] == "failed":
            assert f"tracking server {private_server.uri}: lost while " in t["error"], t
    assert summary["gains_logged"] == "the tracking server was unreachable"
    closing = [line for line in text.splitlines() if "lost while closing study server-killed" in line]
    warning = "freqstudy run: warning: tracking server "
    assert len(closing) == 1 and closing[0].startswith(warning), text[-3000:]
    assert "Traceback" not in text, text[-3000:]
