"""Cluster defects, each pinned: the workers' PYTHONPATH, provenance without ``.git``, the
end-of-study hint, one run per retried trial, ids as pareto prints them, cluster.yaml's
database driver and its restart of MLflow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from study import metrics as M
from study.search.space_parser import load_space
from study.search.summary import StudySummary, format_summary

REPO = Path(__file__).resolve().parents[2]


def test_workers_get_the_folder_holding_the_package_not_the_package_itself():
    from study.provenance import CODE_VERSION_ENV, code_version
    from study.search.tune import worker_env

    env = worker_env({"X": "1"})
    first = Path(env["PYTHONPATH"].split(os.pathsep)[0])
    assert (first / "study" / "__init__.py").is_file()
    assert not (first / "metrics.py").exists()  # study/metrics.py would shadow `import metrics`
    assert env[CODE_VERSION_ENV] == code_version() and env["X"] == "1"


def test_provenance_without_git_comes_from_the_version_file(tmp_path):
    """A checkout shipped without .git (ray job submit, cluster.yaml's rsync) still names its code."""
    shutil.copytree(
        REPO / "study", tmp_path / "study", ignore=shutil.ignore_patterns("__pycache__", "CODE_VERSION")
    )
    env = {k: v for k, v in os.environ.items() if k != "FREQSTUDY_CODE_VERSION"}
    env["PYTHONPATH"] = str(tmp_path)
    # What a trial's run is tagged with (study.tracking.runs takes it from here).
    probe = [
        sys.executable,
        "-c",
        "from study.tracking.experiments import code_version; print(code_version())",
    ]
    bare = subprocess.run(
        probe, cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert bare.endswith("+nogit"), bare  # never mistaken for a commit
    (tmp_path / "study" / "CODE_VERSION").write_text("abc1234-dirty\n")
    shipped = subprocess.run(probe, cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert shipped.stdout.strip() == "abc1234-dirty"
    # The driver's version, passed in the environment, wins (every trial tags the driver's).
    env["FREQSTUDY_CODE_VERSION"] = "driver-v9"
    given = subprocess.run(probe, cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert given.stdout.strip() == "driver-v9"


def test_ui_hint_only_for_the_local_store():
    space = load_space("smoke")
    kw = dict(study="s", experiment_path="/x", parent_run_id="p", tracking_uri="http://10.0.0.1:5000")
    assert "freqstudy ui" not in format_summary(StudySummary(**kw), space)
    assert "freqstudy ui" in format_summary(StudySummary(**kw, local_store=True), space)


def _run(run_id, trial, status, start):
    return {"run_id": run_id, "status": status, "start_time": start, "tags": {M.TAG_TRIAL_ID: trial}}


def test_a_retried_trial_counts_once_by_its_finished_run():
    from study.tracking.queries import one_run_per_trial

    runs = [
        _run("a", "t1", "KILLED", 1),  # node lost: retried from its checkpoint
        _run("b", "t2", "FINISHED", 2),
        _run("c", "t1", "FINISHED", 3),
        _run("d", "t3", "FAILED", 4),
        _run("e", "t3", "FAILED", 5),
        {"run_id": "f", "status": "FINISHED", "start_time": 6, "tags": {}},  # freqstudy train
    ]
    assert [r["run_id"] for r in one_run_per_trial(runs)] == ["b", "c", "e", "f"]


def test_cluster_yaml_installs_the_driver_sqlalchemy_loads_for_postgresql():
    from sqlalchemy.dialects import registry

    driver = registry.load("postgresql")().driver  # what `postgresql://` means to this SQLAlchemy
    package = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary"}[driver]
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    assert any(f'"{package}"' in c for c in config["head_setup_commands"]), (driver, package)


def test_cluster_yaml_restarts_mlflow_without_killing_its_own_shell(tmp_path):
    """The head's MLflow command, run twice in bash with harmless stand-ins for aws and python3:
    the second run stops the first server by its PID file and starts its own (the old
    `pkill -f "mlflow server"` matched the shell running it and killed it: exit 143)."""
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    command = next(c for c in config["head_start_ray_commands"] if "mlflow server" in c)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "aws").write_text("#!/bin/sh\necho secret\n")
    # python3 stands in for the server: sleeps, so there is a process to stop.
    (bin_ / "python3").write_text("#!/bin/sh\nexec sleep 300\n")
    # A pkill or pgrep in the command reaches only its own session (each run below has one), never
    # the processes of whoever else shares this machine: enough to see it match its own shell.
    for tool in ("pkill", "pgrep"):
        real = shutil.which(tool)
        if real:
            (bin_ / tool).write_text(f'#!/bin/sh\nexec {real} --session 0 "$@"\n')
    for f in bin_.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{bin_}:{os.environ['PATH']}"}
    pids = []
    try:
        for _ in range(2):
            done = subprocess.run(
                ["bash", "-c", command],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                start_new_session=True,
            )
            assert done.returncode == 0, (done.returncode, done.stderr)
            pids.append(int((tmp_path / "mlflow-server.pid").read_text()))
        assert pids[0] != pids[1]
        import time

        time.sleep(0.5)
        assert (
            not Path(f"/proc/{pids[0]}").exists()
            or "Z" in Path(f"/proc/{pids[0]}/stat").read_text().split()[2]
        )
        assert Path(f"/proc/{pids[1]}").exists()
    finally:
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def test_a_stop_raised_inside_rays_compiled_code_is_still_found():
    """SIGTERM's handler raises Stopped wherever the signal lands; inside ray.wait's Cython code
    it surfaces as the cause of a SystemError, which must still end the study as a stop."""
    from study.errors import Stopped
    from study.search.phases import stopped_in

    stop = Stopped(15)
    try:
        try:
            raise stop
        except Stopped as e:
            raise SystemError("returned a result with an exception set") from e
    except SystemError as wrapped:
        assert stopped_in(wrapped) is stop
    assert stopped_in(stop) is stop
    assert stopped_in(RuntimeError("a trial failed")) is None
