"""``mlflow server`` as ``cluster.yaml``'s head runs it, on this machine: a PostgreSQL
backend reached by a ``postgresql://USER:PASSWORD@HOST:PORT/DB`` URI (psycopg 3, the
``cluster`` extra), artifacts proxied by the server to a destination folder (S3 on the head),
``--workers 4`` and job execution off (:func:`study.tracking.server.head_server_command` and
``server_env``). For the tracking load bench and the PostgreSQL-backed tests; the server is
started in its own session and stopped by its process group's id, PostgreSQL by its PID.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from study.bench.postgres import LocalPostgres, local_postgres
from study.tracking.server import (
    STARTUP_TIMEOUT_S,
    free_port,
    head_server_command,
    is_healthy,
    server_env,
    stop_group,
)


@dataclass
class HeadServer:
    """A running head-style tracking server. ``uri`` is its ``http://`` tracking URI."""

    uri: str
    postgres: LocalPostgres
    artifacts: Path  # where the server writes artifacts (``--artifacts-destination``)
    log_path: Path
    proc: subprocess.Popen
    command: list[str]


@contextlib.contextmanager
def head_tracking_server(root: str | Path | None = None) -> Iterator[HeadServer]:
    """A fresh PostgreSQL and the head's ``mlflow server`` on it, for the block.

    Args:
        root: folder for the artifacts and the server log (default: a temporary one, removed after).

    Raises:
        study.bench.postgres.PostgresMissing: no PostgreSQL on this machine.
        RuntimeError: the server exited or was not healthy in ``STARTUP_TIMEOUT_S`` (with its log's tail).
    """
    with contextlib.ExitStack() as stack:
        if root is None:
            root = stack.enter_context(tempfile.TemporaryDirectory(prefix="freqstudy-head-"))
        root = Path(root)
        postgres = stack.enter_context(local_postgres())
        port = free_port()
        artifacts = root / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        command = head_server_command(
            backend_store_uri=postgres.uri,
            artifacts_destination=str(artifacts),
            host="127.0.0.1",
            port=port,
            allowed_hosts=f"localhost:{port},127.0.0.1:{port}",
        )
        log_path = root / "mlflow-server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                command,
                env=server_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its group: the server and its four uvicorn workers
            )
        stack.callback(stop_group, proc)
        uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not is_healthy(uri):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-1500:].replace("\n", " | ")
                raise RuntimeError(
                    f"mlflow server on PostgreSQL not healthy (exit {proc.returncode}): {tail}"
                )
            time.sleep(0.5)
        yield HeadServer(
            uri=uri, postgres=postgres, artifacts=artifacts, log_path=log_path, proc=proc, command=command
        )
