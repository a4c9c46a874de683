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
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from study.config import default_home
from study.files import pid_alive, write_text_atomic

STARTUP_TIMEOUT_S = 180.0  # a cold `mlflow server` on a busy 2-core machine takes tens of seconds
# MLflow 3 otherwise starts a job runner and seven huey consumers (module mlflow.server.jobs), each
# a ~0.23 GB Python process, for GenAI jobs (scorers, prompt optimisation) freqstudy never submits:
# ~2.3 GB RSS for the server tree instead of ~0.5 GB.
LEAN_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
CHECK_TIMEOUT_S = 5.0  # every command given a tracking server: it must answer /health within this
# MLflow's own HTTP settings, bounded (read by MLflow on every request). MLflow's defaults (120 s
# timeout, 7 retries, backoff factor 2: sleeps 0, 4, 8, ... 64 s, then 120 s) keep one call on a
# dead server going for ~250 s, and a trial makes several. Here a request waits at most 20 s for
# an answer and is retried 3 times, sleeping 0, 2 and 4 s (+ up to 1 s jitter each) in between:
# a stopped server (connection refused) fails a call in ~6-9 s, one that accepts but never
# answers in at most 4 x 20 + 9 = 89 s. Set any of them in the environment to override.
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "1.0",
}


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
    # One uvicorn process (MLflow's default is 4, ~0.25 GB each): it serves one machine's
    # trials and one browser, and SQLite serialises the writes anyway.
    return _mlflow_server(backend_store_uri(root), str(artifacts_dir(root)), host, port, workers=1)


def _mlflow_server(backend: str, artifacts: str, host: str, port: int, *, workers: int) -> list[str]:
    """``python -m mlflow server`` with a backend, proxied artifacts, an address and workers."""
    return [
        *(sys.executable, "-m", "mlflow", "server"),
        *("--backend-store-uri", backend, "--artifacts-destination", artifacts),
        *("--host", host, "--port", str(port), "--workers", str(workers)),
    ]


HEAD_SERVER_WORKERS = 4  # cluster.yaml's head: up to 16 trials on 8 nodes log through it at once


def head_server_command(
    *, backend_store_uri: str, artifacts_destination: str, host: str, port: int, allowed_hosts: str
) -> list[str]:
    """The ``mlflow server`` command line of ``cluster.yaml``'s head (run it with :func:`server_env`).

    Flag for flag what the head runs (``tests/integration/test_postgres_server.py`` compares the two):
    a ``postgresql://USER:PASSWORD@HOST:PORT/DB`` backend (SQLAlchemy 2 loads psycopg 3 for it: the
    ``cluster`` extra), artifacts proxied to ``artifacts_destination`` (``s3://BUCKET/mlflow`` there),
    ``HEAD_SERVER_WORKERS`` web workers and the hosts it answers for.
    """
    return [
        *_mlflow_server(backend_store_uri, artifacts_destination, host, port, workers=HEAD_SERVER_WORKERS),
        *("--allowed-hosts", allowed_hosts),
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


def port_problem(host: str, port: int) -> str | None:
    """None when a server could listen on ``host:port`` (bound as uvicorn binds, with
    SO_REUSEADDR, so a closed connection's TIME_WAIT does not count); else why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        return (e.strerror or str(e)).lower()
    return None


def registered_server() -> str | None:
    """The URI of a healthy server another freqstudy command registered for the local store."""
    return _running_server(store_dir())


def health_problem(uri: str, timeout_s: float = 2.0) -> str | None:
    """None when ``<uri>/health`` answers 200; else what went wrong, in a few words
    (``connection refused``, ``no answer in 5 s``, ``HTTP 503``...)."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as r:
            return None if r.status == 200 else f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"
    except (OSError, ValueError) as e:  # URLError is an OSError; ValueError: not a URL
        return _os_error_words(getattr(e, "reason", e), timeout_s)


def _os_error_words(e: object, timeout_s: float) -> str:
    if isinstance(e, TimeoutError | socket.timeout):
        return f"no answer in {timeout_s:g} s"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, socket.gaierror):
        return "host not found"
    text = str(getattr(e, "strerror", None) or e).strip()
    return (text or type(e).__name__).splitlines()[0][:120].lower()


def is_healthy(uri: str, timeout_s: float = 2.0) -> bool:
    """True when ``<uri>/health`` answers 200."""
    return health_problem(uri, timeout_s) is None


def check_server(uri: str | None, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """Before a command starts work: a given ``http(s)://`` tracking server must answer ``/health``.

    None (the local store) and other schemes are left to MLflow.

    Raises:
        ValueError: one line naming the URI and what went wrong (the CLI's exit 2).
    """
    if not uri or not uri.startswith(("http://", "https://")):
        return
    problem = health_problem(uri, timeout_s)
    if problem is not None:
        raise ValueError(
            f"tracking server {uri} does not answer (GET /health: {problem}); "
            "start it or leave --tracking-uri out for the local store"
        )


def http_bounds_env() -> dict[str, str]:
    """MLflow's HTTP settings as freqstudy runs them: ``HTTP_BOUNDS``, each unless the
    environment sets it (a user's own value wins). For a process's workers (Ray's runtime_env)."""
    return {k: os.environ.get(k, v) for k, v in HTTP_BOUNDS.items()}


def mlflow_client(tracking_uri: str | None):
    """The one way freqstudy builds an ``MlflowClient``: HTTP calls bounded (:func:`bound_http`),
    tracking and registry on the same URI."""
    from mlflow import MlflowClient

    bound_http()
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def bound_http() -> None:
    """Bound every MLflow HTTP call of this process (``HTTP_BOUNDS``); MLflow reads them per call.

    urllib3's "Retrying (...)" warning per retry is dropped: a server that stays away is one
    line from freqstudy (:func:`logging_to`), not a line per attempt before it.
    """
    os.environ.update(http_bounds_env())
    pool_log = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _NoRetryWarnings) for f in pool_log.filters):
        pool_log.addFilter(_NoRetryWarnings())


class _NoRetryWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Retrying")


class TrackingServerLost(RuntimeError):
    """The tracking server stopped answering while a trial logged to it (one line)."""


def unreachable(e: BaseException) -> str | None:
    """Why ``e`` means the tracking server is away, in a word or two; None when it is
    something else (a bad request, a missing run...).

    MLflow raises ``MlflowException("API request to ... failed with exception ...")`` with the
    ``requests`` error as its context: a refused or dropped connection, a timeout, or
    retries spent on 5xx answers.
    """
    import requests

    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, requests.exceptions.Timeout | TimeoutError):
            return "Timeout"
        if isinstance(current, requests.exceptions.RetryError):
            return "RetryError"
        if isinstance(current, requests.exceptions.ConnectionError | ConnectionError):
            return "ConnectionError"
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def logging_to(uri: str, doing: str) -> Iterator[None]:
    """Turn the server going away inside the block into one :class:`TrackingServerLost` line:
    ``tracking server <uri>: lost while <doing> (ConnectionError)``, ``doing`` e.g.
    ``logging epoch 3 metrics of run <id>``."""
    try:
        yield
    except TrackingServerLost:
        raise
    except Exception as e:
        cause = unreachable(e)
        if cause is None:
            raise
        raise TrackingServerLost(f"tracking server {uri}: lost while {doing} ({cause})") from e


@contextlib.contextmanager
def local_tracking_uri(
    uri: str | None = None, *, host: str = "127.0.0.1", port: int | None = None
) -> Iterator[str]:
    """Yield a tracking URI: ``uri`` itself, or a local server's while the block runs.

    Args:
        uri: an MLflow tracking URI (``http://host:port`` of an ``mlflow server``);
            None = the local store behind a loopback server started here.
        host, port: where a server started here listens (``freqstudy ui``); port None = a
            free one. A server already registered for the store is shared wherever it listens.

    Raises:
        ValueError: a given ``http(s)://`` server does not answer ``/health`` (:func:`check_server`).
        RuntimeError: the local server exited or did not become healthy in time
            (the message ends with the tail of its log).
    """
    if uri:
        check_server(uri)  # every command that reads or writes a given server: one line when it is away
        yield uri
        return
    root = store_dir()
    (root / "leases").mkdir(parents=True, exist_ok=True)
    lease = root / "leases" / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with _store_lock(root):
        shared = _running_server(root)
        if shared is None:
            shared = _start_server(root, host=host, port=port)
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


def client_host(host: str) -> str:
    """The address a client on this machine reaches a server listening on ``host`` at."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _start_server(root: Path, *, host: str = "127.0.0.1", port: int | None = None) -> str:
    port = port or free_port(host)
    uri = f"http://{client_host(host)}:{port}"
    log_path = root / "server.log"
    with open(log_path, "ab") as log:
        # Its own session: a Ctrl-C meant for this command must not kill a server
        # that other commands may be sharing; the last lease holder stops it.
        proc = subprocess.Popen(
            server_command(host=host, port=port, root=root),
            env=server_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # also: its group is the server and its uvicorn worker
        )
    try:
        _wait_healthy(proc, uri, log_path)
    except BaseException:  # not healthy in time, or interrupted: never leave it running unregistered
        stop_group(proc)
        raise
    write_text_atomic(root / "server.json", json.dumps({"uri": uri, "pid": proc.pid}))
    return uri


def _live_leases(root: Path) -> list[Path]:
    """Lease files of running commands; those of dead ones (killed) are removed."""
    live = []
    for lease in (root / "leases").glob("*"):
        try:
            pid = int(lease.name.split("-")[0])
        except ValueError:
            continue
        if pid_alive(pid):
            live.append(lease)
        else:
            lease.unlink(missing_ok=True)
    return live


def _stop_advertised(root: Path) -> None:
    """Stop the server named in ``server.json`` and forget it: SIGTERM, then SIGKILL, to its
    whole process group (the server was started in its own session: ``mlflow server`` and the
    uvicorn worker it spawns), until none of the group is left."""
    path = root / "server.json"
    try:
        pid = int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    path.unlink(missing_ok=True)
    if not group_members(pid):
        return
    for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:  # not a group leader we may signal: the process alone
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # our child: reap it
            if not group_members(pid):
                return
            time.sleep(0.2)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, read from /proc (without /proc:
    ``[pgid]`` while the group can be signalled)."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # /proc/PID/stat: after the parenthesised name, field 3 is the state, field 5 the group.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while being read
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


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
    raise RuntimeError(
        f"mlflow server at {uri} not healthy after {STARTUP_TIMEOUT_S:.0f} s: {_tail(log_path)}"
    )


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a server this process started in its own session: its whole group (SIGTERM, so
    uvicorn's parent stops its workers; then SIGKILL)."""
    for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()
            if not group_members(proc.pid):
                return
            time.sleep(0.2)
    proc.poll()


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip().replace("\n", " | ")
    except OSError:
        return "(no log)"
