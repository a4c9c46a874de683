"""``freqstudy ui`` as a process: a taken port is one line and a non-zero exit before anything
starts; ``ui`` registers its server as the store's shared one (a command meanwhile uses it,
no second ``mlflow server`` opens the SQLite file); SIGTERM to ``ui`` alone ends its server,
uvicorn worker included. Processes are read from /proc."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from study.tracking.server import free_port, group_members, is_healthy, local_tracking_uri
from tests.cli_runner import freqstudy_command, no_traceback

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def ui_process(home: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, FREQSTUDY_HOME=str(home), PYTHONPATH=str(REPO))
    return subprocess.Popen(
        freqstudy_command("ui", "--port", port),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # SIGTERM below goes to ui's pid alone, as `kill PID` does
    )


def servers_of(store: Path) -> list[int]:
    """Pids of ``mlflow server`` / uvicorn processes whose command line names ``store``'s database
    or serves it (uvicorn's worker names no store: it is counted through its group)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "mlflow server" in cmd and str(store / "mlflow.db") in cmd:
            found.append(int(entry.name))
    return found


def test_ui_on_a_taken_port_exits_non_zero_naming_the_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ui = ui_process(tmp_path / "home", port)
        out, err = ui.communicate(timeout=180)
    assert ui.returncode == 2, (out, err)
    no_traceback(err, ["ui"])
    assert out == ""  # never "serving ... at" a port it does not hold
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"--port {port}: taken" in lines[0] and "choose another" in lines[0], err
    assert not servers_of(tmp_path / "home" / "mlflow")


@pytest.mark.slow
def test_ui_shares_the_local_server_and_sigterm_ends_it(tmp_path, monkeypatch):
    home = tmp_path / "home"
    store = home / "mlflow"
    port = free_port()
    ui = ui_process(home, port)
    try:
        line = ui.stdout.readline()
        if line.startswith("starting"):
            line = ui.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        assert line.startswith("serving ") and f" at {url} " in line, (
            line,
            ui.stderr.read() if ui.poll() else "",
        )
        assert is_healthy(url)  # printed only once it answers
        registered = json.loads((store / "server.json").read_text())
        assert registered["uri"] == url
        pgid = registered["pid"]
        # A command meanwhile (train, run, report...) joins ui's server instead of starting another.
        monkeypatch.setenv("FREQSTUDY_HOME", str(home))
        with local_tracking_uri(None) as uri:
            assert uri == url
            assert servers_of(store) == [pgid]
        assert is_healthy(url)  # that command leaving does not stop ui's server
        members = group_members(pgid)
        assert pgid in members and len(members) >= 2, members  # mlflow server + its uvicorn worker

        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=60) == 0, ui.stderr.read()
        no_traceback(ui.stderr.read(), ["ui"])
        deadline = time.monotonic() + 10
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert group_members(pgid) == [], [
            Path(f"/proc/{p}/cmdline").read_bytes() for p in group_members(pgid)
        ]
        assert not servers_of(store) and not is_healthy(url)
        assert not (store / "server.json").exists()
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)
        for pid in servers_of(store):
            os.killpg(pid, signal.SIGKILL)
