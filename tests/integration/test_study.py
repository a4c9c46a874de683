"""Studies end to end with real Ray, a real ``mlflow server`` and the real
CIFAR-10 subset: the smoke study's runs and the searcher's recorded objectives;
trials on two Ray nodes logging to one server, with a crashing trial recorded
as failed while the rest finish; and a driver killed mid-study that
``--resume`` completes without re-running finished trials.

Trials are tiny (width 8, 1 epoch on 500 images, 5 corrupted images per
corruption and severity, 2 corruptions) so the three studies fit in a few
minutes on 2 cores.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from study import metrics as M
from study.search.space_parser import load_space
from study.tracking.study_runs import find_study_run
from tests.cli_runner import freqstudy_command
from tests.support import (
    TINY_STUDY,
    count_study_runs,
    optuna_study,
    run_then_kill,
    set_flags,
    trial_runs,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TINY = TINY_STUDY
OBJECTIVES = (M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC)


def _space():
    return load_space("smoke").with_fixed(TINY)


@pytest.mark.slow
def test_smoke_study_end_to_end(home, subset_dir, mlflow_server, tmp_path):
    from study.search.tune import run_study

    summary = run_study(
        _space(),
        study="smoke-e2e",
        data_dir=str(subset_dir),
        tracking_uri=mlflow_server.uri,
        storage=str(tmp_path / "studies"),
        num_trials=6,
        max_concurrent=2,
        cpus_per_trial=1,
        verbose=0,
    )
    assert [t["status"] for t in summary.trials] == ["finished"] * 6
    assert sum(t["baseline"] for t in summary.trials) == 1

    # MLflow: one parent run, six nested trial runs with their artifacts.
    assert count_study_runs(mlflow_server.uri, "smoke-e2e") == 1
    parent = find_study_run(mlflow_server.uri, "smoke-e2e")
    assert parent == summary.parent_run_id
    runs = trial_runs(mlflow_server.uri, parent, with_artifacts=True)
    assert len(runs) == 6
    # One checkout, one code version: the parent run and every trial run say the same.
    from mlflow import MlflowClient

    from study.tracking.experiments import code_version

    parent_version = MlflowClient(mlflow_server.uri).get_run(parent).data.tags[M.TAG_CODE_VERSION]
    assert parent_version == code_version() and parent_version not in ("", "unknown")
    assert {r["tags"][M.TAG_CODE_VERSION] for r in runs} == {parent_version}
    for r in runs:
        assert r["status"] == "FINISHED"
        assert r["tags"][M.TAG_STUDY] == "smoke-e2e" and r["tags"][M.TAG_ROLE] == "trial"
        assert {"metrics.json", "config.yaml", "filters.npy", "filters.png"} <= set(r["artifacts"])
        assert all(k in r["metrics"] for k in OBJECTIVES)
    baselines = [r for r in runs if r["tags"].get(M.TAG_BASELINE) == "true"]
    assert len(baselines) == 1
    assert baselines[0]["params"]["frequency.mode"] == "free"
    assert float(baselines[0]["params"]["frequency.perturbation"]) == 0.0

    # The searcher got both objectives of every trial, equal to what MLflow holds.
    ot = optuna_study(summary.experiment_path)
    assert len(ot.directions) == 2
    complete = [t for t in ot.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 6
    assert all(len(t.values) == 2 for t in complete)
    told = sorted(tuple(round(v, 6) for v in t.values) for t in complete)
    logged = sorted(tuple(round(r["metrics"][k], 6) for k in OBJECTIVES) for r in runs)
    assert told == logged
    # Searched parameters reached the trials (a searched trial's mode is what Optuna chose).
    by_run = {r["tags"][M.TAG_TRIAL_ID]: r for r in runs}
    for t in summary.trials:
        if not t["baseline"]:
            run = by_run[t["metrics"]["trial_id"]]
            assert run["params"]["frequency.mode"] == t["config"]["frequency.mode"]


@pytest.mark.slow
def test_smoke_study_console_is_compact_and_carries_each_trials_objectives(smoke_study):
    """``freqstudy run`` of the smoke space as a user runs it, without ``--verbose`` (the
    session's smoke study): stdout and stderr together are at most 10 lines a trial, free of
    Ray's boxes and MLflow's links, and each trial's end line carries its objectives as
    MLflow holds them."""
    study, uri, trials = smoke_study.study, smoke_study.uri, smoke_study.trials
    console = smoke_study.stdout + smoke_study.stderr
    assert console.count("\n") <= 10 * trials, console
    for noise in (
        "View run",
        "View experiment",
        "Trial status",
        "╭",
        "Configuration for experiment",
        "tensorboard",
    ):
        assert noise not in console, noise
    assert "_run_trial_in_worker pid=" not in console  # no worker output forwarded
    end = re.compile(
        r"^trial (?P<trial>\w+) finished .*"
        r"val/clean_acc (?P<clean>[\d.]+)  val/corruption_acc (?P<corr>[\d.]+)",
        re.M,
    )
    ends = {m["trial"]: m for m in end.finditer(console)}
    runs = trial_runs(uri, find_study_run(uri, study))
    assert len(runs) == trials and len(ends) == trials, console
    for r in runs:
        line = ends[r["tags"][M.TAG_TRIAL_ID]]
        assert line["clean"] == f"{r['metrics'][M.VAL_CLEAN_ACC]:.2f}"
        assert line["corr"] == f"{r['metrics'][M.VAL_CORRUPTION_ACC]:.2f}"
    assert f"study {study}: {trials} trials in " in console  # the end summary, as before
    assert "best val/corruption_acc (maximize):" in console


@pytest.mark.slow
def test_two_nodes_one_server_and_a_failing_trial(home, subset_dir, mlflow_server, tmp_path, monkeypatch):
    """Trials spread over a head and a worker node, all logging to one MLflow server;
    trials that crash (every learned-mode trial here) are retried, then recorded as
    failed, while the rest finish."""
    from ray.cluster_utils import Cluster

    from study.search.tune import run_study
    from tests.support import fail_learned_mode

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        summary = run_study(
            _space(),
            study="two-nodes",
            data_dir=str(subset_dir),
            tracking_uri=mlflow_server.uri,
            storage=str(tmp_path / "studies"),
            address=cluster.address,
            num_trials=4,
            max_concurrent=2,
            cpus_per_trial=1,
            max_failures=1,
            verbose=0,
            trial_fn=fail_learned_mode,
        )
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()

    learned = [t for t in summary.trials if t["config"].get("frequency.mode") == "learned"]
    others = [t for t in summary.trials if t["config"].get("frequency.mode") != "learned"]
    assert learned and others, (
        "the seeded sampler should pick learned mode at least once in 3 searched trials"
    )
    assert all(t["status"] == "failed" and "injected failure" in t["error"] for t in learned)
    assert all(t["status"] == "finished" for t in others)

    runs = trial_runs(mlflow_server.uri, summary.parent_run_id)
    finished = [r for r in runs if r["status"] == "FINISHED"]
    failed = [r for r in runs if r["status"] == "FAILED"]
    assert len(finished) == len(others)
    # Each failing trial ran twice (max_failures=1), each attempt a FAILED run with its reason.
    assert len(failed) == 2 * len(learned)
    assert all("injected failure" in r["tags"].get(M.TAG_FAILURE, "") for r in failed)
    # Both nodes ran trials, and every run reached the one server.
    nodes = {r["tags"][M.TAG_NODE] for r in runs}
    assert len(nodes) == 2, nodes
    # The searcher recorded the crashes as failures and the rest with both objectives.
    states = sorted(t.state.name for t in optuna_study(summary.experiment_path).trials)
    assert states.count("FAIL") == len(learned) and states.count("COMPLETE") == len(others)


def test_diverged_or_incomplete_trials_tell_the_searcher_worst_values():
    from study.objectives import Objective
    from study.search.trials import final_report

    objectives = (Objective(M.VAL_CLEAN_ACC, "maximize", 0.0), Objective("val/error", "minimize", 100.0))
    ok = final_report(
        {M.VAL_CLEAN_ACC: 55.0, "val/error": 45.0, M.EPOCHS_COMPLETED: 3},
        objectives,
        status="finished",
        run_id="r",
        epochs=3,
    )
    assert ok[M.VAL_CLEAN_ACC] == 55.0 and ok["val/error"] == 45.0 and ok["full_budget"] is True
    bad = final_report(
        {M.VAL_CLEAN_ACC: float("nan"), M.EPOCHS_COMPLETED: 1},
        objectives,
        status="diverged",
        run_id="r",
        epochs=3,
    )
    assert bad[M.VAL_CLEAN_ACC] == 0.0 and bad["val/error"] == 100.0 and bad["full_budget"] is False
    stopped = final_report(
        {M.VAL_CLEAN_ACC: 40.0, "val/error": 60.0, M.EPOCHS_COMPLETED: 1},
        objectives,
        status="stopped",
        run_id="r",
        epochs=3,
    )
    assert stopped["full_budget"] is False


def test_run_with_a_bad_space_fails_before_ray_starts(tmp_path, capsys):
    import ray

    from study.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (REPO / "search_spaces" / "smoke.yaml")
        .read_text()
        .replace("frequency.perturbation:", "frequency.perturb:")
    )
    assert main(["run", "--space", str(bad), "--study", "bad", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(f"freqstudy run: error: space {bad} line ") and "parameters[frequency.perturb]" in err
    )
    assert not ray.is_initialized()
    assert (
        main(
            ["run", "--space", "smoke", "--study", "x", "--storage", str(tmp_path), "--set", "model.width=0"]
        )
        == 2
    )
    assert "model.width" in capsys.readouterr().err


def test_trials_without_a_reserved_gpu_never_pick_one(tmp_path, capsys):
    """Ray leaves CUDA_VISIBLE_DEVICES alone for zero-GPU trials, so `auto` would
    put them all on GPU 0: with no GPU reserved a trial runs on the CPU, and a
    fixed `cuda` is refused before Ray starts, naming the way out."""
    import ray

    from study.cli import main
    from study.search.trials import device_for_resources

    assert device_for_resources("auto", 0.0) == "cpu"
    assert device_for_resources("auto", 0.25) == "auto"
    assert device_for_resources("cuda:1", 1.0) == "cuda:1"
    assert device_for_resources("cpu", 1.0) == "cpu"
    with pytest.raises(ValueError, match=r"'cuda' with 0 GPUs per trial.*--gpus-per-trial"):
        device_for_resources("cuda", 0.0)
    code = main(
        [
            "run",
            "--space",
            "smoke",
            "--study",
            "gpu0",
            "--storage",
            str(tmp_path),
            "--set",
            "device=cuda",
            "--gpus-per-trial",
            "0",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'cuda' with 0 GPUs per trial" in err[0]
    assert not ray.is_initialized()


@pytest.mark.slow
def test_replicated_configurations_survive_a_killed_driver(home, subset_dir, mlflow_server, tmp_path, capsys):
    """`replicates: 2`: every configuration runs at seeds 0 and 1 under one configuration id;
    Optuna holds the mean of the two replicates' objectives; a driver killed mid-study and
    resumed leaves every group with exactly its two replicates; `pareto` reports configurations."""
    from study.cli import main
    from study.search.tune import run_study

    space_file = tmp_path / "replicated.yaml"
    text = (REPO / "search_spaces" / "smoke.yaml").read_text().replace("num_trials: 6", "num_trials: 3")
    space_file.write_text(text + "replicates: 2\n")
    storage, study = tmp_path / "studies", "replicated"
    path = str(storage / study)
    sets = set_flags(TINY)
    cmd = [
        *freqstudy_command("run"),
        "--space",
        str(space_file),
        "--study",
        study,
        "--data-dir",
        str(subset_dir),
        "--tracking-uri",
        mlflow_server.uri,
        "--storage",
        str(storage),
        "--max-concurrent",
        "1",
        "--cpus-per-trial",
        "1",
        *sets,
    ]
    run_then_kill(cmd, path, tmp_path, terminated=3)  # mid-way through the second configuration
    time.sleep(3)
    space = load_space(space_file).with_fixed(TINY)
    summary = run_study(
        space,
        study=study,
        data_dir=str(subset_dir),
        tracking_uri=mlflow_server.uri,
        storage=str(storage),
        resume=True,
        verbose=0,
    )
    assert [t["status"] for t in summary.trials] == ["finished"] * 6

    runs = [r for r in trial_runs(mlflow_server.uri, summary.parent_run_id) if r["status"] == "FINISHED"]
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r["tags"][M.TAG_CONFIG_ID], []).append(r)
    assert len(groups) == 3, {k: len(v) for k, v in groups.items()}
    for members in groups.values():
        assert sorted(r["tags"][M.TAG_REPLICATE] for r in members) == ["0", "1"]  # none lost, none twice
        assert sorted(int(r["params"]["seed"]) for r in members) == [0, 1]
        searched = {k: members[0]["params"][k] for k in ("frequency.mode", "frequency.perturbation")}
        assert all({k: r["params"][k] for k in searched} == searched for r in members)
    # Optuna was told each configuration once, the mean of its replicates' objectives.
    ot = optuna_study(summary.experiment_path)
    complete = [t for t in ot.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3
    means = sorted(
        tuple(round(sum(r["metrics"][k] for r in g) / len(g), 6) for k in OBJECTIVES) for g in groups.values()
    )
    assert sorted(tuple(round(v, 6) for v in t.values) for t in complete) == means

    capsys.readouterr()  # the resumed study's console so far
    code = main(["pareto", "--study", study, "--tracking-uri", mlflow_server.uri, "--json"])
    out = capsys.readouterr().out
    assert code == 0
    rows = json.loads(out)
    assert rows and all(r["replicates"] == 2 and len(r["runs"]) == 2 for r in rows)
    for r in rows:
        assert isinstance(r["val_robustness_gain_ci"], list)  # the TINY trials evaluate no test split
        g = groups[next(k for k, v in groups.items() if r["run_id"] in {m["run_id"] for m in v})]
        for k in OBJECTIVES:
            assert r[k] == pytest.approx(sum(m["metrics"][k] for m in g) / 2)

    # Two seeds of one configuration are compared run against run, not the configuration with itself.
    def compare(run_a: str, run_b: str) -> tuple[int, dict]:
        argv = ["compare", run_a, run_b, "--study", study, "--tracking-uri", mlflow_server.uri]
        code = main([*argv, "--split", "val", "--json"])
        return code, json.loads(capsys.readouterr().out)

    first = next(iter(groups.values()))
    code, doc = compare(first[0]["run_id"], first[1]["run_id"])
    assert code == 0 and doc["replicates"] == [1, 1]
    other = next(g for g in groups.values() if g is not first)
    code, doc = compare(first[0]["run_id"], other[0]["run_id"])
    assert code == 0 and doc["replicates"] == [2, 2]  # configuration against configuration
