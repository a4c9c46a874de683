"""Shared fixtures: paths to the real data beside the repository, a real ``mlflow server``
process on a free loopback port, the integration modules' ``FREQSTUDY_HOME``, and one
finished smoke study that several modules read."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

# Tiny FFTs and convolutions on a busy 2-core machine are far slower with two
# intra-op threads fighting each other (a 1000-call stem loop: 20.5 s vs 0.17 s).
torch.set_num_threads(1)

# Tests never touch the user's ~/.freqstudy (caches, MLflow store, studies): the
# session gets its own home, which subprocesses and Ray workers inherit. Tests
# that need a private one set FREQSTUDY_HOME themselves.
_TEST_HOME = tempfile.mkdtemp(prefix="freqstudy-test-home-")
os.environ["FREQSTUDY_HOME"] = _TEST_HOME

# No freqstudy command in the suite prints a traceback without --debug: every in-process
# `main([...])` is checked (tests/cli_runner.py), installed before a test module imports it.
from tests.cli_runner import install as _check_cli_tracebacks  # noqa: E402

_check_cli_tracebacks()


def pytest_unconfigure(config):
    shutil.rmtree(_TEST_HOME, ignore_errors=True)


_INTEGRATION = Path(__file__).resolve().parent / "integration"


def pytest_collection_modifyitems(config, items):
    """Everything under tests/integration/ is marked ``integration``, so the fast loop
    (``-m "not slow and not integration"``) leaves it out without a mark in each file."""
    for item in items:
        if _INTEGRATION in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FREQSTUDY_SHARED", REPO.parent / "shared"))
SUBSET = SHARED / "data" / "cifar10-subset"
FROST = SHARED / "data" / "cifar10c-frost"
REFERENCE = SHARED / "data" / "cifar10c-reference"


def require(path: Path) -> Path:
    """The path, or a skip that says which data is missing and why."""
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set FREQSTUDY_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def subset_dir() -> Path:
    return require(SUBSET / "cifar-10-batches-py").parent


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """``FREQSTUDY_HOME`` for a module's tests, the subprocesses and Ray workers they start
    included (they inherit the environment): one folder for the whole session, so the
    corrupted copies the integration trials read are made once, not once per module. Set
    for the module, the session's own home restored after. Studies never land in it (the
    tests give ``--storage``); a test that needs an empty home sets its own."""
    path = _shared_home(tmp_path_factory)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FREQSTUDY_HOME", str(path))
        yield path


def _shared_home(tmp_path_factory) -> Path:
    path = tmp_path_factory.getbasetemp() / "freqstudy-home"
    path.mkdir(exist_ok=True)
    return path


# The session's smoke study: the smoke space's settings, its trial 0 the baseline, then these
# two points (every parameter the space makes active) and one trial its sampler draws.
SMOKE_POINTS = """
points:
  - {frequency.mode: learned, frequency.proportion: 0.5, frequency.perturbation: 0.2, train.lr: 0.05}
  - {frequency.mode: fixed, frequency.proportion: 0.25, frequency.perturbation: 0.0, train.lr: 0.1}
"""


@pytest.fixture(scope="session")
def smoke_study(mlflow_server, subset_dir, tmp_path_factory) -> SimpleNamespace:
    """A finished smoke study in the session's server, run once for the tests that read one
    (``pareto``, ``report``, ``compare``, ``export``, the console): ``freqstudy run`` as a user
    runs it, without ``--verbose``, 4 trials (3 searched give a front worth checking), models
    logged (registering needs them). ``uri``, ``study``, ``trials`` and what it printed
    (``stdout``, ``stderr``). Its readers may add to it (registered models, report
    artifacts, gains) but change no trial's objectives."""
    from tests.cli_runner import finished_study

    tmp = tmp_path_factory.mktemp("smoke-study")
    space = tmp / "smoke-with-points.yaml"
    space.write_text((REPO / "search_spaces" / "smoke.yaml").read_text() + SMOKE_POINTS)
    study, trials = "pareto-smoke", 4
    argv = ["--space", space, "--study", study, "--num-trials", trials, "--max-concurrent", 2]
    argv += ["--data-dir", subset_dir, "--tracking-uri", mlflow_server.uri]
    argv += ["--set", "tracking.log_model=true"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FREQSTUDY_HOME", str(_shared_home(tmp_path_factory)))
        out = finished_study(*argv, storage=tmp / "studies")
    return SimpleNamespace(
        uri=mlflow_server.uri, study=study, trials=trials, stdout=out.stdout, stderr=out.stderr
    )


@pytest.fixture(scope="session")
def frost_dir() -> Path:
    return require(FROST)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return require(REFERENCE)


class MlflowServer:
    """A real ``mlflow server`` (SQLite backend, local artifact root) on loopback,
    started with the same command line the project's own local store uses."""

    def __init__(self, root: Path):
        from study.tracking.server import free_port, is_healthy, server_command, server_env

        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = open(root / "server.log", "w")
        self.proc = subprocess.Popen(
            server_command(host="127.0.0.1", port=self.port, root=root),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=server_env(),
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
            if is_healthy(self.uri):
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("mlflow server did not become healthy in 120 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> MlflowServer:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_mlflow_server(tmp_path_factory):
    """``mlflow server`` as ``cluster.yaml``'s head starts it (``study.bench.head_server``) on a
    fresh PostgreSQL (``study.bench.postgres``: initdb in a temporary folder, loopback port,
    run as the ``postgres`` OS user under root), both stopped by PID at the end. Skips, saying
    why, where PostgreSQL or psycopg is missing (``.ci/run`` installs both)."""
    from study.bench.head_server import head_tracking_server
    from study.bench.postgres import PostgresMissing, postgres_bin_dir

    try:
        postgres_bin_dir()
        import psycopg  # noqa: F401  (the driver SQLAlchemy loads for postgresql://: the cluster extra)
    except (PostgresMissing, ImportError) as e:
        pytest.skip(f"no PostgreSQL-backed server here: {e}")
    with head_tracking_server(tmp_path_factory.mktemp("head")) as server:
        yield server
