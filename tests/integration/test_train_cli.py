"""``freqstudy train``, ``inspect`` and ``ui`` as a user runs them: config
errors stop before any data or server is touched, a diverged run exits
non-zero with a one-line reason, a real run prints its epochs and run id and
writes its JSON, ``inspect`` reads the logged model back, and the local store
is served by a loopback server that is started and stopped for the command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from models.stem import initial_alpha
from study import metrics as M
from study.cli import main
from study.tracking.server import free_port, is_healthy, local_tracking_uri
from tests.cli_runner import freqstudy_command, no_traceback, run_freqstudy
from tests.support import QUICK_TRAIN, set_flags

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def freqstudy(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, FREQSTUDY_HOME=str(home), PYTHONPATH=str(REPO))
    return run_freqstudy(*args, env=env, timeout=timeout)


def train(subset_dir: Path, uri: str, out: Path, home: Path, settings: dict) -> subprocess.CompletedProcess:
    """``freqstudy train`` of a width-8 network for 1 epoch on the quick data, with ``settings``,
    its result written to ``out``."""
    sets = set_flags({**QUICK_TRAIN, "train.epochs": 1, "model.width": 8, **settings})
    argv = ["train", "--data-dir", subset_dir, "--tracking-uri", uri, *sets, "--output-json", out]
    return freqstudy(*argv, home=home)


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epochz=3", "train.epochz"),
        ("train.epochs=three", "train.epochs"),
        ("frequency.proportion=1.5", "frequency.proportion"),
        ("frequency.mode=adaptive", "frequency.mode"),
    ],
)
def test_config_errors_exit_before_touching_data(override, key, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FREQSTUDY_HOME", str(tmp_path / "home"))
    missing = tmp_path / "no-data-here"
    rc = main(["train", "--data-dir", str(missing), "--set", override])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and key in err and err.startswith("freqstudy train: error: config")
    assert not (tmp_path / "home").exists()  # no server started, no cache written
    assert not missing.exists()


def test_diverged_train_exits_nonzero_with_one_line_reason(mlflow_server, subset_dir, home, tmp_path):
    out = tmp_path / "result.json"
    proc = train(
        subset_dir, mlflow_server.uri, out, home, {"train.lr": 1e6, "tracking.experiment": "cli-diverged"}
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if "diverged" in ln]
    assert len(lines) == 1 and lines[0] == proc.stderr.strip().splitlines()[-1]
    assert lines[0].startswith("freqstudy train: diverged: training loss became non-finite")
    result = json.loads(out.read_text())
    assert result["status"] == "diverged" and result["reason"] in lines[0]
    run = MlflowClient(mlflow_server.uri).get_run(result["run_id"])
    assert run.info.status == "FAILED" and run.data.tags[M.TAG_FAILURE] == result["reason"]


def test_train_then_inspect(mlflow_server, subset_dir, home, tmp_path, capfd):
    out = tmp_path / "result.json"
    proc = train(
        subset_dir,
        mlflow_server.uri,
        out,
        home,
        {"frequency.mode": "learned", "tracking.experiment": "cli-train"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    run_id = result["run_id"]
    assert result["status"] == "finished" and result["tracking_uri"] == mlflow_server.uri
    assert 0 <= result["metrics"][M.TEST_CLEAN_ACC] <= 100 and result["metrics"][M.EPOCHS_COMPLETED] == 1
    assert "epoch   1/1  loss " in proc.stdout and f"run {run_id} finished" in proc.stdout
    assert f"{M.TEST_CORRUPTION_ACC}" in proc.stdout

    assert main(["inspect", run_id, "--tracking-uri", mlflow_server.uri, "--json"]) == 0
    info = json.loads(capfd.readouterr().out)  # the whole stdout, file descriptor 1 included, is one document
    filters = info["filters"]
    assert [f["index"] for f in filters] == list(range(8))
    assert all(set(f) == {"index", "ratio", "class", "alpha"} for f in filters)
    # Learned mode's contract, read back from the logged model: each filter's low-band energy
    # share IS its alpha, so the class follows alpha (and alpha moved off its evenly spread start).
    assert all(abs(f["ratio"] - f["alpha"]) <= 1e-4 for f in filters), [
        (f["ratio"], f["alpha"]) for f in filters
    ]
    assert all((f["ratio"] >= 0.5) == (f["class"] == "low") for f in filters)  # threshold 0.5
    start = initial_alpha(8).tolist()
    assert max(abs(f["alpha"] - a) for f, a in zip(filters, start, strict=True)) > 1e-3
    assert info["proportion"] == sum(f["class"] == "low" for f in filters) / 8
    # The last epoch's logged proportion is the one the reloaded model measures.
    logged = MlflowClient(mlflow_server.uri).get_metric_history(run_id, M.FILTER_PROPORTION)
    assert logged[-1].value == info["proportion"]

    assert main(["inspect", run_id, "--tracking-uri", mlflow_server.uri]) == 0
    text = capfd.readouterr().out
    assert "layer proportion p̂ =" in text and "index  class" in text


def test_inspect_unknown_run_is_a_one_line_error(mlflow_server, capsys):
    assert main(["inspect", "0" * 32, "--tracking-uri", mlflow_server.uri]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "0" * 32 in err


def test_local_store_server_starts_and_stops(home, tmp_path, monkeypatch):
    monkeypatch.setenv("FREQSTUDY_HOME", str(tmp_path / "own-home"))
    with local_tracking_uri(None) as uri:
        assert uri.startswith("http://127.0.0.1:") and is_healthy(uri)
        with local_tracking_uri(None) as again:  # a second command reuses the running server
            assert again == uri
        assert is_healthy(uri)
        MlflowClient(uri).create_experiment("local-store")
    assert not is_healthy(uri)
    # The command that started the server leaves first: the server stays up for
    # the one still using it, and stops when that one leaves too.
    first = local_tracking_uri(None)
    uri = first.__enter__()
    second = local_tracking_uri(None)
    assert second.__enter__() == uri
    first.__exit__(None, None, None)
    assert is_healthy(uri)
    assert MlflowClient(uri).get_experiment_by_name("local-store") is not None
    second.__exit__(None, None, None)
    assert not is_healthy(uri)
    assert (tmp_path / "own-home" / "mlflow" / "mlflow.db").is_file()
    # A given server is checked before it is yielded: one that does not answer is one line.
    with pytest.raises(ValueError, match="tracking server http://example.invalid:5000 does not answer"):
        with local_tracking_uri("http://example.invalid:5000"):
            pass
    # `freqstudy ui` serves the same store.
    port = free_port()
    env = dict(os.environ, FREQSTUDY_HOME=str(tmp_path / "own-home"), PYTHONPATH=str(REPO))
    ui = subprocess.Popen(
        freqstudy_command("ui", "--port", port),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while not is_healthy(url) and time.monotonic() < deadline and ui.poll() is None:
            time.sleep(0.5)
        assert is_healthy(url), ui.stdout.read().decode()[-2000:] if ui.poll() is not None else "not healthy"
        assert MlflowClient(url).get_experiment_by_name("local-store") is not None
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)
    no_traceback(ui.stdout.read().decode(errors="replace"), ["ui"], env)
