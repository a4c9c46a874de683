"""Racing replicated configurations in real studies (``replicates: {min, max}``).

Through real Ray Tune, with a trainable that trains nothing but reports runs drawn from
the harness's simulated configurations (``tests.support.SimulatedTrial``), the searcher
makes the in-process harness's decisions, seed for seed, and Optuna holds the same means.
Against a real ``mlflow server`` with real tiny trials (the CIFAR-10 subset), a racing
study's driver SIGKILLed mid-race and resumed leaves every race whole: each
configuration's finished runs are exactly the seeds its race decided, once each, tagged
with how the race ended, and Optuna holds each configuration's mean objectives.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from study import metrics as M
from study.search import harness as H
from study.search.racing import RacePolicy
from study.search.space_parser import load_space, parse_space
from tests.cli_runner import freqstudy_command
from tests.support import (
    TINY_STUDY,
    SimulatedTrial,
    optuna_study,
    race_book,
    run_then_kill,
    set_flags,
    simulated_study,
    trial_runs,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
OBJECTIVES = (M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC)


def _simulated_space(seed: int, k: int, lrs: list[float], policy: RacePolicy):
    """The harness's study as a space: configuration i > 0 is ``train.lr = lrs[i - 1]``,
    drawn by the same seeded grid sampler over the same number of points."""
    text = f"""
objectives:
  - {{metric: val/clean_acc, direction: maximize}}
  - {{metric: val/corruption_acc, direction: maximize}}
sampler: {{name: grid, seed: {seed}}}
num_trials: {k}
replicates: {{min: {policy.min_seeds}, max: {policy.max_seeds}}}
max_concurrent: 1
fixed: {{model.width: 8, device: cpu}}
parameters:
  train.lr: {{type: choice, choices: {lrs}}}
"""
    return parse_space(text, source=f"simulated-{seed}.yaml")


@pytest.mark.slow
def test_ray_studies_make_the_harness_decisions(tmp_path, monkeypatch):
    import ray

    from study.search.tune import _init_ray, run_study

    monkeypatch.setenv("FREQSTUDY_HOME", str(tmp_path / "home"))
    k, policy = 6, RacePolicy(2, 5)
    lrs = [round(0.01 * (i + 1), 4) for i in range(k - 1)]
    assert _init_ray(None)  # one Ray for the studies (each would start and stop its own)
    try:
        for seed in (0, 1):
            _, runs, ys = simulated_study(seed, configurations=k, seeds=policy.max_seeds)
            want = H.run_study(runs, policy, sampler_seed=seed, max_concurrent=1)
            summary = run_study(
                _simulated_space(seed, k, lrs, policy),
                study=f"simulated-{seed}",
                storage=str(tmp_path / "studies"),
                tracking=False,
                console=False,
                trial_fn=SimulatedTrial(ys, lrs),
                cpus_per_trial=1,
            )
            book = race_book(summary.experiment_path)
            index = {
                r.config_id: 0 if r.baseline else 1 + lrs.index(r.config["train.lr"]) for r in book.races
            }
            got = [(index[e["config"]], e["action"], e["reason"]) for e in book.events]
            assert got == list(want.events)
            seeds = {index[r.config_id]: r.started for r in book.races}
            assert [seeds[c] for c in range(k)] == want.seeds.tolist()
            assert len(summary.trials) == sum(seeds.values()) and {t["status"] for t in summary.trials} == {
                "finished"
            }
            told = {}
            for t in optuna_study(summary.experiment_path).trials:
                assert t.state.name == "COMPLETE"
                config = 0 if t.number == 0 else 1 + lrs.index(t.params["train.lr"])
                told[config] = t.values
            assert sorted(told) == list(range(k))
            for c, values in told.items():
                np.testing.assert_allclose(values, want.values[c], rtol=0, atol=1e-9)
    finally:
        ray.shutdown()


def _racing_space(tmp_path: Path) -> Path:
    text = (REPO / "search_spaces" / "smoke.yaml").read_text().replace("num_trials: 6", "num_trials: 3")
    path = tmp_path / "racing.yaml"
    # 8 trainings for 3 configurations of 2-3 seeds: the budget ends a race that tiny, noisy
    # trials keep open, and the configurations' seeds then differ whatever the scores.
    path.write_text(text + "replicates: {min: 2, max: 3}\nmax_seeds: 8\n")
    return path


@pytest.mark.slow
def test_racing_study_survives_a_killed_driver(tmp_path, subset_dir, mlflow_server, capsys, monkeypatch):
    from study.search.tune import run_study

    monkeypatch.setenv("FREQSTUDY_HOME", str(tmp_path / "home"))
    space_file = _racing_space(tmp_path)
    storage, study = tmp_path / "studies", "racing"
    path = str(storage / study)
    tiny = {**TINY_STUDY, "tracking.log_model": False}  # the models are not what this test reads
    sets = set_flags(tiny)
    cmd = freqstudy_command("run", "--space", space_file, "--study", study)
    cmd += ["--data-dir", str(subset_dir), "--tracking-uri", mlflow_server.uri, "--storage", str(storage)]
    cmd += ["--max-concurrent", "1", "--cpus-per-trial", "1", *sets]
    # The baseline's two seeds and the first seed of the next configuration: mid-race.
    run_then_kill(cmd, path, tmp_path, terminated=3)
    before = race_book(path)
    assert any(r.open for r in before.races), "killed after every race ended"
    time.sleep(3)  # Ray's reaper takes down the killed driver's local cluster

    summary = run_study(
        load_space(space_file).with_fixed(tiny),
        study=study,
        data_dir=str(subset_dir),
        tracking_uri=mlflow_server.uri,
        storage=str(storage),
        resume=True,
    )
    console = capsys.readouterr().out
    book = race_book(path)
    assert len(book.races) == 3 and not any(r.open for r in book.races)
    assert book.untagged == []

    # No race restarted: every seed the killed driver had started keeps its trial and index.
    for old in before.races:
        new = book.race(old.config_id)
        assert new is not None and all(new.seeds[t] == i for t, i in old.seeds.items())
    for r in book.races:  # seeds were granted one at a time, from min up (the last maybe withdrawn)
        counts = [e["seeds"] for e in book.events if e["config"] == r.config_id and e["action"] == "seed"]
        assert counts == list(range(3, 3 + len(counts)))
        assert r.started in (2 + len(counts), 1 + len(counts))
        assert 2 <= r.started <= 3 and r.reason in ("dominated", "settled", "max seeds", "budget")

    # MLflow: each configuration's finished runs are exactly its race's seeds, once each.
    runs = [r for r in trial_runs(mlflow_server.uri, summary.parent_run_id) if r["status"] == "FINISHED"]
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r["tags"][M.TAG_CONFIG_ID], []).append(r)
    assert set(groups) == {r.config_id for r in book.races}  # none duplicated, none lost
    for race in book.races:
        members = groups[race.config_id]
        assert sorted(int(r["tags"][M.TAG_REPLICATE]) for r in members) == list(range(race.started))
        assert sorted(int(r["params"]["seed"]) for r in members) == list(range(race.started))
        for r in members:
            assert r["tags"][M.TAG_RACE_REASON] == race.reason
            assert r["tags"][M.TAG_RACE_SEEDS] == str(race.started)
            assert r["tags"].get(M.TAG_RACE_OTHER) == race.other
    assert sum(r.started for r in book.races) <= 8
    assert len({r.started for r in book.races}) > 1, "the race gave every configuration the same seeds"

    # Optuna holds each configuration's mean objectives, told once.
    ot = optuna_study(path)
    complete = [t for t in ot.trials if t.state.name == "COMPLETE"]
    assert len(complete) == len(ot.trials) == 3
    means = sorted(
        tuple(round(float(np.mean([r["metrics"][k] for r in g])), 6) for k in OBJECTIVES)
        for g in groups.values()
    )
    assert sorted(tuple(round(v, 6) for v in t.values) for t in complete) == means

    # The resumed driver's console says why seeds were added and races ended.
    assert f"study {study}: resumed, 3 configurations racing 2-3 seeds each" in console
    assert "ended after" in console


def test_a_seed_run_again_under_a_new_trial_id_reuses_its_finished_run_and_races_tag_all_runs(
    mlflow_server,
):
    """A seed Tune starts again after a killed driver (its checkpoint predating the seed) finds
    the seed's finished run by configuration and seed index, not only by trial id; a race's
    end tags every run of the configuration, crashed attempts too, and no other."""
    from mlflow import MlflowClient

    from study.tracking.runs import finished_run_of
    from study.tracking.study_runs import tag_configuration

    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("race-lookups")

    def run(config_id, replicate, trial_id, status, mlflow_status):
        tags = {
            M.TAG_ROLE: "trial",
            M.TAG_CONFIG_ID: config_id,
            M.TAG_REPLICATE: replicate,
            M.TAG_TRIAL_ID: trial_id,
            M.TAG_STATUS: status,
        }
        r = client.create_run(exp, tags=tags)
        client.log_metric(r.info.run_id, M.VAL_CLEAN_ACC, 42.0)
        client.set_terminated(r.info.run_id, status=mlflow_status)
        return r.info.run_id

    done = run("c1", "1", "t2", "finished", "FINISHED")
    crashed = run("c1", "2", "t3", "failed", "FAILED")
    other = run("c2", "1", "t9", "finished", "FINISHED")
    uri = mlflow_server.uri
    assert finished_run_of(uri, "race-lookups", "t2") == (done, {M.VAL_CLEAN_ACC: 42.0})
    assert finished_run_of(uri, "race-lookups", "new", config_id="c1", replicate="1")[0] == done
    assert finished_run_of(uri, "race-lookups", "new", config_id="c1", replicate="2") is None  # crashed
    assert finished_run_of(uri, "race-lookups", "new") is None
    tags = {M.TAG_RACE_REASON: "dominated", M.TAG_RACE_SEEDS: "3", M.TAG_RACE_OTHER: "c2"}
    assert tag_configuration(uri, "race-lookups", "c1", tags) == 2
    for run_id in (done, crashed):
        got = client.get_run(run_id).data.tags
        assert {k: got[k] for k in tags} == tags
    assert M.TAG_RACE_REASON not in client.get_run(other).data.tags
