"""Studies logged by hand into a real ``mlflow server``, as freqstudy logs them, then read
by the commands: a trial retried after its node was lost (issue 24: counted once by
``pareto``; ``compare`` takes the ids ``pareto`` prints) and replicates evaluated on other
images than their own configuration's (issue 25: ``compare`` names the runs that differ,
never relabels another refusal as "not evaluated on the same images")."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow import MlflowClient

from study import metrics as M
from study.analysis.outcomes import OUTCOMES_ARTIFACT, Outcomes, encode
from study.cli import main

pytestmark = pytest.mark.integration

N = 40  # source images
CORRUPTIONS = ("gaussian_noise", "contrast")


def outcomes(seed: int, accuracy: float, *, corruption_limit: int = 20, source: str = "crafted") -> Outcomes:
    """Per-image outcomes of one run on the test split (``corruption_limit`` images per corruption)."""
    rng = np.random.default_rng(seed)
    arrays = {"test/clean": rng.random(N) < accuracy}
    for name in CORRUPTIONS:
        for severity in (1, 3):
            arrays[f"test/{name}/{severity}"] = rng.random(corruption_limit) < accuracy - 0.2
    fingerprint = {"source": source, "n": N, "corruption_limit": corruption_limit}
    return Outcomes(arrays, {"test": fingerprint})


def log_trial(
    client, exp_id, tmp_path, *, trial, accuracy, seed, status="FINISHED", tags=None, mode="fixed", **kw
):
    """A trial run as a study's worker logs it: tags, params, metrics, ``outcomes.npz``."""
    tags = {M.TAG_ROLE: "trial", M.TAG_TRIAL_ID: trial, M.TAG_MODE: mode, **(tags or {})}
    if status == "FINISHED":
        tags[M.TAG_STATUS] = "finished"
    run_id = client.create_run(exp_id, tags=tags).info.run_id
    params = {"train.epochs": "2", "frequency.mode": mode, "model.width": "8", "seed": str(seed)}
    params.update({"frequency.perturbation": "0.0"} if mode == "free" else {})
    for key, value in params.items():
        client.log_param(run_id, key, value)
    if status == "FINISHED":
        for key, value in {
            M.VAL_CLEAN_ACC: accuracy,
            M.VAL_CORRUPTION_ACC: accuracy - 0.2,
            M.TEST_CLEAN_ACC: accuracy,
            M.TEST_CORRUPTION_ACC: accuracy - 0.2,
            M.EPOCHS_COMPLETED: 2.0,
        }.items():
            client.log_metric(run_id, key, value)
        path = tmp_path / run_id / OUTCOMES_ARTIFACT
        path.parent.mkdir()
        path.write_bytes(encode(outcomes(seed, accuracy, **kw)))
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, status)
    return run_id


@pytest.fixture(scope="module")
def retried(mlflow_server, tmp_path_factory):
    """Five trials, one of them (t2) retried after its node was lost: its first attempt is a
    KILLED run, its second the FINISHED one. ``(uri, study, {trial id: finished run id})``."""
    tmp = tmp_path_factory.mktemp("retried")
    client = MlflowClient(mlflow_server.uri)
    study = "retried-trial"
    exp_id = client.create_experiment(study)
    runs = {}
    for i in range(5):
        trial = f"t{i}"
        if trial == "t2":  # the lost node's attempt: no metrics, closed as KILLED
            log_trial(client, exp_id, tmp, trial=trial, accuracy=0.6, seed=i, status="KILLED")
        baseline = {M.TAG_BASELINE: "true"} if i == 0 else {}
        mode = "free" if i == 0 else "fixed"
        runs[trial] = log_trial(
            client, exp_id, tmp, trial=trial, accuracy=0.5 + 0.05 * i, seed=i, tags=baseline, mode=mode
        )
    return mlflow_server.uri, study, runs


def test_pareto_counts_a_retried_trial_once(retried, capsys):
    """It said `6 trials, 5 chosen from ... none excluded` for five trials: the KILLED run of
    the retried trial was counted as a trial of its own."""
    uri, study, runs = retried
    assert main(["pareto", "--study", study, "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert f"study {study}: 5 trials, 5 chosen from, " in out and "none excluded" in out, out
    assert main(["pareto", "--study", study, "--tracking-uri", uri, "--json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert front and {r["run_id"] for r in front} <= set(runs.values()), front  # never the KILLED run


def test_compare_takes_the_trial_ids_and_8_character_ids_pareto_prints(retried, capsys):
    """It refused the ids pareto prints (`no such run`)."""
    uri, study, runs = retried
    short = runs["t3"][:8]
    argv = ["compare", "t0", short, "--study", study, "--tracking-uri", uri, "--json"]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    assert (doc["run_a"], doc["run_b"]) == (runs["t0"], runs["t3"])
    # A prefix that is not a run of the study is still one line naming it.
    assert main(["compare", "t0", "ffffffff", "--study", study, "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RUN_B" in err and "ffffffff" in err, err


@pytest.fixture(scope="module")
def replicated(mlflow_server, tmp_path_factory):
    """Two configurations of two replicates each; A's second replicate read another copy of the
    data (same params, another source digest: a node whose data folder differs).
    ``(uri, study, {name: run id})``."""
    tmp = tmp_path_factory.mktemp("replicated")
    client = MlflowClient(mlflow_server.uri)
    study = "replicates-on-other-images"
    exp_id = client.create_experiment(study)
    runs = {}
    for config, base, accuracy in (("cA", 100, 0.6), ("cB", 200, 0.7)):
        for k in (0, 1):
            source = "other-copy" if (config, k) == ("cA", 1) else "crafted"
            tags = {M.TAG_CONFIG_ID: config, M.TAG_REPLICATE: str(k)}
            runs[f"{config[1]}{k}"] = log_trial(
                client,
                exp_id,
                tmp,
                trial=f"{config}-{k}",
                accuracy=accuracy,
                seed=base + k,
                tags=tags,
                source=source,
            )
    return mlflow_server.uri, study, runs


def test_compare_names_the_replicate_that_differs_not_a_and_b(replicated, capsys):
    """A's own replicates were on different images, and compare said that A and B `were not
    evaluated on the same images` (A0 and B0 were): the refusal names the runs that differ."""
    uri, study, runs = replicated
    code = main(["compare", runs["A0"], runs["B0"], "--study", study, "--tracking-uri", uri])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert runs["A1"] in err and "source 'crafted' vs 'other-copy'" in err, err
    assert f"{runs['A0']} and {runs['B0']} were not evaluated" not in err, err
    assert "--single-runs" in err, err  # what still compares the two runs
    # The two runs alone were evaluated on the same images: compared.
    argv = ["compare", runs["A0"], runs["B0"], "--study", study, "--tracking-uri", uri, "--single-runs"]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    # Runs on other images, compared alone: both named, with the field that differs.
    argv = ["compare", runs["A1"], runs["B0"], "--study", study, "--tracking-uri", uri, "--single-runs"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and runs["A1"] in err and runs["B0"] in err and "source" in err, err
