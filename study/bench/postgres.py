"""A throwaway PostgreSQL server for the tracking bench and the tests: a fresh
cluster (``initdb``) in a temporary folder, ``postgres`` listening on a free
loopback port only (no Unix socket), a password-protected role and one
database, reached by the ``postgresql://USER:PASSWORD@HOST:PORT/DB`` form that
``cluster.yaml``'s head gets from its secret; stopped by its PID and removed
at the end.

PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` OS user (which Debian's ``postgresql`` package creates), in a
folder that user owns; otherwise as the current user. The binaries are found
on ``PATH`` or under Debian's ``/usr/lib/postgresql/<version>/bin``. Server
settings are PostgreSQL's defaults (durable commits, 100 connections), as a
managed database would run them; only the cluster's creation skips its fsync.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60.0  # initdb and a first start on a busy 2-core machine take a few seconds
USER = "mlflow"
DATABASE = "mlflow"


class PostgresMissing(RuntimeError):
    """No PostgreSQL binaries here (the message says what was looked for and how to install it)."""


def postgres_bin_dir() -> Path:
    """The folder holding ``initdb``, ``postgres`` and ``pg_isready``.

    Raises:
        PostgresMissing: none on ``PATH`` nor under ``/usr/lib/postgresql/*/bin``.
    """
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # Debian links /usr/local/bin/initdb into the versioned folder
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else -1,
    )
    if versions:
        return versions[-1].parent
    raise PostgresMissing(
        "PostgreSQL not found (no initdb on PATH or under /usr/lib/postgresql/*/bin); "
        "install it, e.g. apt-get install postgresql"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalPostgres:
    """A running throwaway server. ``uri`` is what ``mlflow server --backend-store-uri`` takes."""

    root: Path
    port: int
    password: str
    proc: subprocess.Popen
    log_path: Path

    @property
    def uri(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def stop(self) -> None:
        """Fast shutdown by the postmaster's PID (it ends its own backends), then remove the folder."""
        for sig, wait_s in ((signal.SIGINT, 30.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait_s)
        shutil.rmtree(self.root, ignore_errors=True)


def _run_as() -> dict:
    """``Popen`` keywords that run a PostgreSQL binary as a user it accepts."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresMissing(
            "PostgreSQL will not run as root and there is no 'postgres' OS user to run it as; "
            "install Debian's postgresql package (it creates one) or run as another user"
        ) from None
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def start_postgres(parent: str | Path | None = None) -> LocalPostgres:
    """Create and start a fresh cluster; returns once it accepts connections.

    Args:
        parent: where its temporary folder goes (default: the system's temp folder).

    Raises:
        PostgresMissing: no PostgreSQL here, or root without a ``postgres`` user.
        RuntimeError: ``initdb`` failed or the server did not accept connections in
            ``START_TIMEOUT_S`` (the message ends with its log's tail).
    """
    bin_dir = postgres_bin_dir()
    as_user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="freqstudy-pg-", dir=parent))
    if as_user:
        os.chmod(root, 0o700)
        os.chown(root, as_user["user"], as_user["group"])
    data, log_path = root / "data", root / "postgres.log"
    password = secrets.token_hex(12)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "HOME": str(root)}
    try:
        if as_user:
            os.chown(pwfile, as_user["user"], as_user["group"])
        done = subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",  # the password in the URI is checked, as on a managed database
                "--encoding",
                "UTF8",
                "--no-sync",  # the cluster's creation only; the server itself keeps fsync on
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            **as_user,
        )
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {(done.stderr or done.stdout)[-1500:]}")
        port = _free_port()
        log = open(log_path, "w")
        if as_user:
            os.chown(log_path, as_user["user"], as_user["group"])
        proc = subprocess.Popen(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                "",  # no Unix socket: loopback TCP only, nothing left in /var/run
            ],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C at the terminal reaches the test, which stops it in order
            **as_user,
        )
        log.close()
        server = LocalPostgres(root=root, port=port, password=password, proc=proc, log_path=log_path)
        _wait_ready(server, bin_dir, env)
        _create_database(server, bin_dir, env)
    except BaseException:
        if "server" in locals():
            server.stop()
        else:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return server


def _wait_ready(server: LocalPostgres, bin_dir: Path, env: dict) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"postgres exited ({server.proc.returncode}): {_tail(server.log_path)}")
        ready = subprocess.run(
            [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(server.port), "-t", "2"],
            env=env,
            capture_output=True,
        )
        if ready.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"postgres not ready after {START_TIMEOUT_S:.0f} s: {_tail(server.log_path)}")


def _create_database(server: LocalPostgres, bin_dir: Path, env: dict) -> None:
    done = subprocess.run(
        [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(server.port), "-U", USER, DATABASE],
        env={**env, "PGPASSWORD": server.password},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"createdb {DATABASE} failed: {done.stderr.strip()[-500:]}")


@contextlib.contextmanager
def local_postgres(parent: str | Path | None = None) -> Iterator[LocalPostgres]:
    """:func:`start_postgres` for the block; stopped and removed after it."""
    server = start_postgres(parent)
    try:
        yield server
    finally:
        server.stop()


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip().replace("\n", " | ")
    except OSError:
        return "(no log)"
