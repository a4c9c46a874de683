"""The local MLflow store and the loopback server in front of it.

With no tracking URI configured, freqstudy keeps runs in a SQLite store under
``default_home()/mlflow`` (artifacts beside it). Writers never open that file
themselves: :func:`local_tracking_uri` starts ``mlflow server`` on a free
loopback port, waits for ``/health``, yields its ``http://`` URI and stops it
on exit, so concurrent trials only ever talk HTTP and never meet a locked
SQLite file. A server that another freqstudy command already started for the
same store is found through ``server.json`` and shared: every command holds a
lease file while it uses the server, and whichever command leaves last (not
necessarily the one that started it) stops it, so closing ``freqstudy ui``
never pulls the server from under a running study. With a URI given, it is
yielded unchanged: everything goes to that server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from study.config import default_home
from study.files import write_text_atomic

STARTUP_TIMEOUT_S = 180.0  # a cold `mlflow server` on a busy 2-core machine takes tens of seconds
# MLflow 3 otherwise starts a job runner and seven huey consumers (module mlflow.server.jobs), each
# a ~0.23 GB Python process, for GenAI jobs (scorers, prompt optimisation) freqstudy never submits:
# ~2.3 GB RSS for the server tree instead of ~0.5 GB.
LEAN_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def store_dir() -> Path:
    """``<FREQSTUDY_HOME>/mlflow``: the SQLite file, the artifacts and the server log."""
    return default_home() / "mlflow"


def backend_store_uri(root: Path | None = None) -> str:
    return f"sqlite:///{(root or store_dir()) / 'mlflow.db'}"


def artifacts_dir(root: Path | None = None) -> Path:
    return (root or store_dir()) / "artifacts"


def server_command(*, host: str, port: int, root: Path | None = None) -> list[str]:
    """The ``mlflow server`` command line serving the local store; run it with :func:`server_env`."""
    root = root or store_dir()
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri(root),
        "--artifacts-destination",
        str(artifacts_dir(root)),
        # One uvicorn process (MLflow's default is 4, ~0.25 GB each): it serves one machine's
        # trials and one browser, and SQLite serialises the writes anyway.
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for :func:`server_command`: ``base`` (default ``os.environ``) made lean.

    The lean settings win over the caller's: the server only ever serves freqstudy.
    """
    return {**(os.environ if base is None else base), **LEAN_SERVER_ENV}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def is_healthy(uri: str, timeout_s: float = 2.0) -> bool:
    """True when ``<uri>/health`` answers 200."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def local_tracking_uri(uri: str | None = None) -> Iterator[str]:
    """Yield a tracking URI: ``uri`` itself, or a local server's while the block runs.

    Args:
        uri: an MLflow tracking URI (``http://host:port`` of an ``mlflow server``);
            None = the local store behind a loopback server started here.

    Raises:
        RuntimeError: the local server exited or did not become healthy in time
            (the message ends with the tail of its log).
    """
    if uri:
        yield uri
        return
    root = store_dir()
    (root / "leases").mkdir(parents=True, exist_ok=True)
    lease = root / "leases" / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with _store_lock(root):
        shared = _running_server(root)
        if shared is None:
            shared = _start_server(root)
        lease.touch()
    try:
        yield shared
    finally:
        with _store_lock(root):
            lease.unlink(missing_ok=True)
            if not _live_leases(root):
                _stop_advertised(root)


@contextlib.contextmanager
def _store_lock(root: Path) -> Iterator[None]:
    """Serialise starting, joining and leaving the store's server across processes."""
    with open(root / "server.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _start_server(root: Path) -> str:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log_path = root / "server.log"
    with open(log_path, "ab") as log:
        # Its own session: a Ctrl-C meant for this command must not kill a server
        # that other commands may be sharing; the last lease holder stops it.
        proc = subprocess.Popen(
            server_command(host="127.0.0.1", port=port, root=root),
            env=server_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _wait_healthy(proc, uri, log_path)
    write_text_atomic(root / "server.json", json.dumps({"uri": uri, "pid": proc.pid}))
    return uri


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live_leases(root: Path) -> list[Path]:
    """Lease files of running commands; those of dead ones (killed) are removed."""
    live = []
    for lease in (root / "leases").glob("*"):
        try:
            pid = int(lease.name.split("-")[0])
        except ValueError:
            continue
        if _pid_alive(pid):
            live.append(lease)
        else:
            lease.unlink(missing_ok=True)
    return live


def _stop_advertised(root: Path) -> None:
    """Stop the server named in ``server.json`` (SIGTERM, then SIGKILL) and forget it."""
    path = root / "server.json"
    try:
        pid = int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    path.unlink(missing_ok=True)
    for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child: reap it
                    return
            if not _pid_alive(pid):
                return
            time.sleep(0.2)


def _running_server(root: Path) -> str | None:
    """The URI of a healthy server another command started for this store."""
    try:
        info = json.loads((root / "server.json").read_text())
    except (OSError, ValueError):
        return None
    uri = info.get("uri") if isinstance(info, dict) else None
    return uri if uri and is_healthy(uri) else None


def _wait_healthy(proc: subprocess.Popen, uri: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with status {proc.returncode}: {_tail(log_path)}")
        if is_healthy(uri):
            return
        time.sleep(0.5)
    _stop(proc)
    raise RuntimeError(
        f"mlflow server at {uri} not healthy after {STARTUP_TIMEOUT_S:.0f} s: {_tail(log_path)}"
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip().replace("\n", " | ")
    except OSError:
        return "(no log)"
