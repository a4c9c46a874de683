"""The embedded MLflow server starts lean: no GenAI job runner or huey consumers, one web worker.

MLflow 3 starts ``python -m mlflow.server.jobs._job_runner``, which starts seven
``huey.bin.huey_consumer mlflow.server.jobs...`` processes (~0.23 GB each);
``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (``server_env``) keeps them out. The
server's process tree is read from /proc, so no psutil is needed. A positive
control starts the same command without the setting and sees the job runner,
so the marker below is the one MLflow really uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from study.tracking.server import (
    LEAN_SERVER_ENV,
    free_port,
    is_healthy,
    local_tracking_uri,
    server_command,
    server_env,
)

pytestmark = pytest.mark.integration

JOB_MARKER = "mlflow.server.jobs"  # module of the job runner and of every huey consumer's instance
SETTLE_S = 3.0  # MLflow launches the job runner right after uvicorn, before /health answers


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Field 4 of /proc/PID/stat, after the parenthesised command name (which may hold spaces).
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # exited while being read
    return found


def process_tree(pid: int) -> dict[int, str]:
    """``{pid: command line}`` of ``pid`` and all its descendants."""
    tree, todo = {}, [pid]
    while todo:
        current = todo.pop()
        try:
            tree[current] = Path(f"/proc/{current}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        todo.extend(_children(current))
    return tree


def job_processes(tree: dict[int, str]) -> list[str]:
    return [cmd for cmd in tree.values() if JOB_MARKER in cmd or "huey" in cmd]


def test_embedded_server_has_no_job_consumers_and_one_worker(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FREQSTUDY_HOME", str(tmp_path / "home"))
    # The caller's own setting must not bring the consumers back.
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "true")
    with local_tracking_uri(None) as uri:
        assert is_healthy(uri)
        pid = json.loads((tmp_path / "home" / "mlflow" / "server.json").read_text())["pid"]
        time.sleep(SETTLE_S)
        tree = process_tree(pid)
        assert any("mlflow server" in cmd for cmd in tree.values()), tree
        assert job_processes(tree) == [], tree
        # uvicorn with --workers 1 serves in its own process; more workers are multiprocessing children.
        assert not [cmd for cmd in tree.values() if "multiprocessing" in cmd], tree
        assert is_healthy(uri)


def test_server_env_overrides_and_keeps_the_rest():
    env = server_env({"PATH": "/bin", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})
    assert env == {"PATH": "/bin", **LEAN_SERVER_ENV}
    assert server_env()["PATH"] == os.environ["PATH"]


def test_control_without_the_setting_starts_the_job_runner(tmp_path: Path):
    # Same command, MLflow's default environment: the marker must show up, or the test above proves nothing.
    env = {k: v for k, v in os.environ.items() if k not in LEAN_SERVER_ENV}
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen(
            server_command(host="127.0.0.1", port=port, root=tmp_path),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 120
        while not is_healthy(uri):
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server not healthy in 120 s"
            time.sleep(0.5)
        time.sleep(SETTLE_S)
        assert job_processes(process_tree(proc.pid)), process_tree(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
