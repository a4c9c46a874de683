"""The MLflow UI as a new user sees it, in a real browser.

A tiny smoke study runs (``freqstudy run``, real Ray, real trials on the CIFAR-10 subset)
against the session's real ``mlflow server``; the address the study printed is opened in
headless Chromium (``--dump-dom``), and the page must be the runs view of the study (not
MLflow's GenAI overview) listing the trials by their human names, a dataset of theirs and
their logged models. Skips, saying why, where Chromium is not installed (``.ci/run``
installs it).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from study import metrics as M
from tests.cli_runner import finished_study

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
STUDY = "browse-smoke"
TINY = (
    "train.epochs=1",
    "data.train_limit=400",
    "eval.corruption_limit=5",
    "eval.corruptions=[gaussian_noise]",
    "eval.severities=[1]",
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1600,1000",
)
# Long enough for the UI's scripts to load the runs, datasets and models (virtual time: the
# browser fast-forwards idle waits, so this is not how long the test takes).
VIRTUAL_TIME_MS = 30000


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("no Chromium on PATH (.ci/run installs Debian's chromium package)")


def page_text(url: str) -> str:
    """The page's visible text after its scripts ran (``--dump-dom``), tags and styles removed."""
    with tempfile.TemporaryDirectory(prefix="freqstudy-chromium-") as profile:
        out = subprocess.run(
            [
                chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={VIRTUAL_TIME_MS}",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert out.returncode == 0, out.stderr[-2000:]
    dom = re.sub(r"<(style|script)\b.*?</\1>", " ", out.stdout, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


@pytest.fixture(scope="module")
def study(home, mlflow_server, subset_dir, tmp_path_factory):
    """``(stdout of freqstudy run, MlflowClient)`` of a finished two-trial study in the server."""
    chromium()  # skip before spending minutes on the study
    from mlflow import MlflowClient

    argv = ["--space", "smoke", "--study", STUDY, "--num-trials", 2, "--max-concurrent", 2]
    argv += ["--data-dir", subset_dir, "--tracking-uri", mlflow_server.uri]
    for setting in TINY:
        argv += ["--set", setting]
    out = finished_study(*argv, storage=tmp_path_factory.mktemp("browse-studies"))
    return out.stdout, MlflowClient(mlflow_server.uri)


def test_printed_url_opens_the_runs_view_with_names_datasets_and_models(study, mlflow_server):
    stdout, client = study
    found = re.search(r"browse the runs: (\S+)", stdout)
    assert found, stdout[-2000:]
    url = found.group(1)
    exp = client.get_experiment_by_name(STUDY)
    assert url.startswith(f"{mlflow_server.uri}/#/experiments/{exp.experiment_id}/runs?")
    assert "workflowType=machine_learning" in url

    trials = client.search_runs([exp.experiment_id], f"tags.`{M.TAG_ROLE}` = 'trial'")
    names = sorted(r.info.run_name for r in trials)
    assert len(names) == 2 and "baseline" in names, names
    assert not any("_run_trial_in_worker" in n for n in names), names
    models = client.search_logged_models([exp.experiment_id])
    assert sorted(m.source_run_id for m in models) == sorted(r.info.run_id for r in trials)

    text = page_text(url)
    # The runs table, not the GenAI overview (traces, latency, token usage).
    assert "matching runs" in text and "Run Name" in text, text[:3000]
    assert "Token usage" not in text and "Detect issues" not in text, text[:3000]
    for name in names:  # the trials are listed (their parent opened), by the names the console uses
        assert name in text, (name, text[:3000])
    assert "CIFAR-10 validation" in text, text[:3000]  # the Dataset column
    assert any(m.name in text for m in models), ([m.name for m in models], text[:3000])  # the Models column


def test_run_pages_carry_the_study_summary_and_the_trial_numbers(study, mlflow_server):
    from study.tracking.links import run_url
    from study.tracking.notes import NOTE_TAG

    _, client = study
    exp = client.get_experiment_by_name(STUDY)
    parent = client.search_runs([exp.experiment_id], f"tags.`{M.TAG_ROLE}` = 'study'")[0]
    note = parent.data.tags[NOTE_TAG]
    assert f"study {STUDY}: 2 trials" in note and "browse the runs:" in note
    trial = client.search_runs([exp.experiment_id], f"tags.`{M.TAG_ROLE}` = 'trial'")[0]
    trial_note = trial.data.tags[NOTE_TAG]
    assert trial.info.run_name in trial_note and M.VAL_CLEAN_ACC in trial_note
    value = trial.data.metrics[M.VAL_CLEAN_ACC]
    assert f"{value:.4g}" in trial_note

    text = page_text(run_url(mlflow_server.uri, exp.experiment_id, parent.info.run_id))
    assert f"study {STUDY}: 2 trials" in text, text[:3000]  # the description, on the run's page


def test_register_registers_the_logged_models_and_loading_stays_safetensors(study, mlflow_server, capsys):
    from study.cli import main
    from study.tracking import load_registered_model
    from study.tracking.logged_models import MODEL_TYPE

    _, client = study
    assert main(["pareto", "--study", STUDY, "--tracking-uri", mlflow_server.uri, "--register"]) == 0
    assert "browse the runs: " in capsys.readouterr().out
    versions = client.search_model_versions(f"name = '{STUDY}'")
    assert versions
    for mv in versions:
        # The version is the run's logged model: its source is models:/<id> (MLflow 3.17's server
        # leaves the version's model_id field empty, so the source is what says which model).
        assert mv.source.startswith("models:/"), mv.source
        model_id = mv.model_id or mv.source.removeprefix("models:/")
        model = client.get_logged_model(model_id)
        assert model.source_run_id == mv.run_id and model.model_type == MODEL_TYPE
        files = sorted(a.path for a in client.list_logged_model_artifacts(model_id))
        assert files == [
            "config.yaml",
            "freqstudy-model.json",
            "weights.safetensors",
        ]  # no MLmodel, no pickle
    net = load_registered_model(STUDY, "pareto-1", mlflow_server.uri)
    assert net.stem is not None and not net.training
