"""The UI addresses, run descriptions, dataset inputs and logged-model names freqstudy writes:
pure functions checked against what MLflow 3.17 accepts and the UI reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from study import metrics as M
from study.config import TrialConfig
from study.data.cifar10 import fingerprint
from study.tracking import links, notes
from study.tracking.datasets import trial_datasets
from study.tracking.logged_models import model_name


def test_every_address_is_the_runs_view_of_its_experiment():
    url = links.experiment_url("http://head:5000/", "7")
    assert (
        url
        == "http://head:5000/#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=freqstudy"
    )
    assert links.experiment_url("http://h:1", "7", view=False).endswith("/runs?workflowType=machine_learning")
    assert (
        links.run_url("https://h", "7", "abc")
        == "https://h/#/experiments/7/runs/abc?workflowType=machine_learning"
    )
    for store in (None, "", "sqlite:///x.db", "file:///tmp/mlruns"):  # no UI address of its own
        assert links.experiment_url(store, "7") is None and links.run_url(store, "7", "r") is None


def test_default_view_columns_are_the_ui_column_ids():
    state = links.default_view_state(["val/clean_acc"])
    cols = state["selectedColumns"]
    assert "attributes.`Dataset`" in cols and "attributes.`Models`" in cols
    assert "params.`frequency.mode`" in cols and "params.`frequency.proportion`" in cols
    assert cols.index("metrics.`val/clean_acc`") > cols.index("params.`frequency.perturbation`")
    assert "metrics.`gain/test/robustness_ci_low`" in links.default_view_state()["selectedColumns"]
    assert state["columnOrder"][1:] == cols  # the table keeps this order (params before metrics)
    assert len(json.dumps(state)) < 5000  # an experiment tag


def test_trial_note_names_the_configuration_and_its_numbers():
    text = notes.trial_note(
        "fixed p=0.5 σ=0 #1",
        "finished",
        None,
        {"frequency.mode": "fixed", "frequency.proportion": 0.5, "train.lr": 0.1},
        {M.VAL_CLEAN_ACC: 61.234, M.FILTER_PROPORTION: 0.5, "val/corruption/fog/1": 3.0},
        {
            "gain/test/robustness": 1.5,
            "gain/test/robustness_ci_low": -0.25,
            "gain/test/robustness_ci_high": 3.0,
        },
    )
    assert text.startswith("**fixed p=0.5 σ=0 #1** — finished")
    assert "| `frequency.proportion` | 0.5 |" in text and "| `val/clean_acc` | 61.23 |" in text
    assert "val/corruption/fog/1" not in text  # headline numbers only
    assert "| `gain/test/robustness` | 1.5 | [-0.25, 3] |" in text


def test_parent_note_keeps_summary_and_report_apart():
    first = notes.with_summary("", "study s: 2 trials")
    reported = notes.with_report(first, "# s: configurations\n\n| a | b |")
    assert "study s: 2 trials" in reported and "| a | b |" in reported
    again = notes.with_report(reported, "# s\n\n| c |")  # a second report replaces the first
    assert "| a | b |" not in again and "| c |" in again and "study s: 2 trials" in again
    resumed = notes.with_summary(again, "study s: 4 trials")  # a resumed study keeps the report
    assert "4 trials" in resumed and "2 trials" not in resumed and "| c |" in resumed


def test_long_text_is_cut_at_a_line_saying_where_the_rest_is():
    text = "\n".join(f"line {i}" for i in range(3000))
    cut = notes.fit(text, where="in report.html")
    assert len(cut) <= notes.NOTE_LIMIT and cut.endswith("in report.html.") and "line 0\n" in cut
    assert notes.fit("short") == "short"


@pytest.mark.parametrize(
    "run_name,expected",
    [
        ("fixed p=0.5 σ=0 #1", "fixed p=0·5 σ=0 #1"),
        ("a/b:c%'d\"", "a∕b꞉c％d"),
        ("", "model-abcdef12"),
        (None, "model-abcdef12"),
    ],
)
def test_logged_model_names_avoid_what_mlflow_refuses(run_name, expected):
    from mlflow.utils.validation import _validate_logged_model_name

    name = model_name(run_name, "abcdef1234")
    assert name == expected
    _validate_logged_model_name(name)  # raises on a refused character


def test_dataset_digests_are_the_outcome_fingerprints(tmp_path):
    config = TrialConfig.from_flat(
        {
            "eval.corruptions": ["fog"],
            "eval.severities": [1, 3],
            "eval.corruption_limit": 4,
            "data.dir": str(tmp_path),
        }
    )
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 10)
    fp = {
        "val": {
            "source": "aaaa",
            "n": 6,
            "corruption_limit": 4,
            "corrupted_copy": "generated-v1",
            "corruption_seed": 0,
        },
        "test": {
            "source": "bbbb",
            "n": 5,
            "corruption_limit": 4,
            "corrupted_copy": "none",
            "corruption_seed": -1,
        },
    }
    inputs = trial_datasets(config, fp, (images, labels))
    by_name = {i.dataset.name: i for i in inputs}
    assert set(by_name) == {"CIFAR-10 train", "CIFAR-10 validation", "CIFAR-10-C validation", "CIFAR-10 test"}
    assert by_name["CIFAR-10 train"].dataset.digest == fingerprint(images, labels)
    assert by_name["CIFAR-10 validation"].dataset.digest == "aaaa"
    assert json.loads(by_name["CIFAR-10-C validation"].dataset.profile) == {"num_rows": 4 * 1 * 2}
    assert {t.key: t.value for t in by_name["CIFAR-10 test"].tags} == {"mlflow.data.context": "testing"}
    other = trial_datasets(config, {**fp, "val": {**fp["val"], "corruption_seed": 1}}, None)
    digests = {i.dataset.name: i.dataset.digest for i in other}
    assert digests["CIFAR-10-C validation"] != by_name["CIFAR-10-C validation"].dataset.digest
    assert all(len(i.dataset.digest) <= 36 for i in inputs)  # MLflow's longest digest
