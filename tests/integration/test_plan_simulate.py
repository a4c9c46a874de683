"""``freqstudy plan`` and ``freqstudy simulate`` against a real ``mlflow server``.

The studies are logged into the session's server the way trials log themselves (trial
runs tagged with the study, configuration id and replicate; ``outcomes.npz`` artifacts;
a parent run), their per-image outcomes drawn from the inference simulator
(study.analysis.simulate) with a known regime, so no network is trained: a replicated
study (6 configurations x 3 seeds), one with a single seed per configuration, and one
whose runs have no outcomes. The commands read them back through MLflow; what they print
is checked against the same computation on the simulated scores, and their errors are
one line naming the flag.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from study import metrics as M
from study.analysis import planning, simulate
from study.analysis.components import measure
from study.analysis.outcomes import OUTCOMES_ARTIFACT, encode
from study.cli import main
from tests.cli_runner import finished_study
from tests.support import set_flags
from tests.unit.test_components import study_records

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REGIME = simulate.Regime("test", 1.5, 0.8, 0.3, 0.13, 0.1, 0.5, n_clean=300, n_corrupted=40)
CONFIGS, SEEDS = 6, 3


def log_study(uri: str, name: str, sim: simulate.Simulated, *, seeds=None, outcomes: bool = True) -> None:
    """Study 0 of ``sim`` as an MLflow experiment: a parent run and one trial run per seed."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(name)
    parent = client.create_run(exp, tags={M.TAG_ROLE: "study", M.TAG_STUDY: name})
    client.set_terminated(parent.info.run_id)
    runs, outs = study_records(sim, 0, seeds=seeds)
    with tempfile.TemporaryDirectory() as tmp:
        for t, o in zip(runs["trials"], outs.values()):
            tags = {
                **t["tags"],
                M.TAG_ROLE: "trial",
                M.TAG_STUDY: name,
                "mlflow.parentRunId": parent.info.run_id,
            }
            run = client.create_run(exp, tags=tags)
            rid = run.info.run_id
            metrics = {
                **t["metrics"],
                M.VAL_CLEAN_ACC: 100.0 * float(o.arrays["val/clean"].mean()),
                M.VAL_CORRUPTION_ACC: 100.0
                * float(np.mean([a.mean() for k, a in o.arrays.items() if k != "val/clean"])),
            }
            client.log_batch(  # one request a run, as a trial logs its final metrics
                rid,
                metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in metrics.items()],
                params=[Param(k, v) for k, v in t["params"].items()],
            )
            if outcomes:
                path = Path(tmp) / rid / OUTCOMES_ARTIFACT
                path.parent.mkdir()
                path.write_bytes(encode(o))
                client.log_artifact(rid, str(path))
            client.set_terminated(rid)


@pytest.fixture(scope="module")
def studies(mlflow_server):
    """``(uri, simulated scores of the replicated study)``; studies ``plan-replicated``,
    ``plan-one-seed`` and ``plan-no-outcomes`` in the server."""
    uri = mlflow_server.uri
    sim = simulate.simulate(np.random.default_rng(17), REGIME, np.zeros(CONFIGS), SEEDS)
    log_study(uri, "plan-replicated", sim)
    log_study(uri, "plan-one-seed", sim, seeds=[1] * CONFIGS)
    log_study(uri, "plan-no-outcomes", sim, outcomes=False)
    return uri, simulate.scores(sim)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_plan_reads_the_studys_components_and_plans_with_them(studies, capsys):
    uri, scores = studies
    code, out, err = run_cli(
        capsys, "plan", "--study", "plan-replicated", "--effect", "3", "--tracking-uri", uri, "--json"
    )
    assert code == 0, err
    doc = json.loads(out)  # one document on stdout
    assert doc["configurations"] == CONFIGS and doc["seeds"] == {"min": SEEDS, "max": SEEDS, "used": SEEDS}
    assert doc["level"] == pytest.approx(0.05 / (2 * (CONFIGS - 1)))
    assert [r["objective"] for r in doc["objectives"]] == [M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC]
    for row, stat in zip(doc["objectives"], ("clean_acc", "corruption_acc")):
        # The same numbers from the simulated scores directly: MLflow, the grouping into
        # configurations and the statistic table lose nothing.
        want = measure(list(scores[stat][0]), stat)
        assert row["run_var"] == pytest.approx(want.components.run_var, rel=1e-9)
        assert row["image_var"] == pytest.approx(want.components.image_var, rel=1e-9, abs=1e-12)
        assert row["residual_var"] == pytest.approx(want.residual_var, rel=1e-9)
        p = planning.plan(stat, want.components, 3.0, configurations=CONFIGS, used=SEEDS)
        assert (row["recommended"], row["seeds_used"]) == (p.recommended, SEEDS)
        assert row["power_at_used"] == pytest.approx(p.power_at_used)
        assert row["detectable_at_used"] == pytest.approx(p.detectable_at_used)
        r, level = row["recommended"], doc["level"]
        if r is None:  # the image term alone is too large: no number of seeds reaches 80%
            assert planning.power(want.components, 3.0, planning.MAX_PLANNED_SEEDS, level) < 0.8
            continue
        assert planning.power(want.components, 3.0, r, level) >= 0.8
        assert r == 2 or planning.power(want.components, 3.0, r - 1, level) < 0.8
    code, out, err = run_cli(
        capsys, "plan", "--study", "plan-replicated", "--effect", "3", "--tracking-uri", uri
    )
    assert code == 0, err
    assert "R for 80% power" in out and M.VAL_CORRUPTION_ACC in out and "Holm" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["plan", "--study", "nosuch", "--effect", "2"], "study 'nosuch' not found; studies:"),
        (
            ["plan", "--study", "plan-one-seed", "--effect", "2"],
            "--study 'plan-one-seed': every configuration has one seed",
        ),
        (
            ["plan", "--study", "plan-no-outcomes", "--effect", "2"],
            "--study 'plan-no-outcomes': no finished trial has per-image outcomes",
        ),
        (
            ["plan", "--study", "plan-replicated", "--effect", "0"],
            "--effect 0.0: must be a number of points > 0",
        ),
        (
            ["plan", "--study", "plan-replicated", "--effect", "2", "--objectives", "val/relative_mce:min"],
            "--objectives: val/relative_mce has no per-image accuracy",
        ),
        (["simulate", "--space", "smoke", "--from-study", "plan-one-seed"], "--space"),
        (
            ["simulate", "--space", "RACING", "--from-study", "plan-one-seed"],
            "--from-study 'plan-one-seed': every configuration has one seed",
        ),
        (
            ["simulate", "--space", "RACING", "--from-study", "nosuch"],
            "--from-study: study 'nosuch' not found",
        ),
        (
            ["simulate", "--space", "RACING", "--from-study", "plan-replicated", "--fixed", "1"],
            "--fixed '1': each must be an integer >= 2",
        ),
    ],
)
def test_errors_are_one_line_naming_the_flag(studies, capsys, tmp_path, argv, message):
    uri, _ = studies
    argv = [str(racing_space(tmp_path)) if a == "RACING" else a for a in argv]
    code, out, err = run_cli(capsys, *argv, "--tracking-uri", uri)
    lines = err.strip().splitlines()
    assert code == 2 and out == ""
    assert len(lines) == 1 and message in lines[0], err
    if argv[2] == "smoke":  # replicates: 1 cannot be simulated: the file and the key are named
        assert "smoke.yaml: replicates 1" in lines[0]


def racing_space(folder: Path, replicates: str = "{min: 2, max: 4}", num_trials: int = 8) -> Path:
    path = folder / "racing.yaml"
    text = (
        (REPO / "search_spaces" / "smoke.yaml")
        .read_text()
        .replace("num_trials: 6", f"num_trials: {num_trials}")
    )
    path.write_text(text + f"replicates: {replicates}\n")
    return path


def test_simulate_reports_cost_and_accuracy_beside_fixed_seeds(studies, capsys, tmp_path):
    uri, _ = studies
    space = racing_space(tmp_path)
    argv = ["simulate", "--space", str(space), "--from-study", "plan-replicated", "--studies", "3"]
    code, out, err = run_cli(capsys, *argv, "--tracking-uri", uri, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert "3/3 studies" in err  # progress on stderr
    assert doc["configurations"] == 8 and doc["studies"] == 3
    policies = {(p["min_seeds"], p["max_seeds"]): p for p in doc["policies"]}
    assert list(policies) == [(2, 4), (2, 2), (4, 4)]  # the space's, then fixed at m and M
    for r in (2, 4):
        assert policies[(r, r)]["trainings"] == r * 8  # fixed R: R trainings per configuration
    assert 2 * 8 <= policies[(2, 4)]["trainings"] <= 4 * 8
    for p in doc["policies"]:
        assert 0.0 <= p["exact_front"] <= 1.0 and p["studies"] == 3
    # Study by study against the space's policy: the difference of P(exact front) is that
    # of the discordant studies.
    assert policies[(2, 4)]["paired"] is None
    for r in (2, 4):
        pr = policies[(r, r)]["paired"]
        diff = policies[(r, r)]["exact_front"] - policies[(2, 4)]["exact_front"]
        assert pr["only_this"] + pr["only_first"] <= 3 and 0.0 <= pr["mcnemar_p"] <= 1.0
        assert (pr["only_this"] - pr["only_first"]) / 3 == pytest.approx(diff)
    # The fitted noise model shows the measured components again (the fit is least squares
    # over six components with four spreads; the seed variance is what it must get right).
    comps = {(c["statistic"], c["component"]): c for c in doc["components"]}
    for stat in ("clean_acc", "corruption_acc"):
        c = comps[(stat, "run_var")]
        assert c["simulated"] == pytest.approx(c["measured"], rel=0.35), c
    assert doc["regime"]["n_clean"] == REGIME.n_clean and doc["regime"]["n_corrupted"] == REGIME.n_corrupted
    # Text mode: the table and the same policies.
    code, out, err = run_cli(capsys, *argv, "--fixed", "3", "--tracking-uri", uri)
    assert code == 0, err
    assert "racing m = 2, M = 4" in out and "fixed R = 3" in out and "P(exact true front)" in out


def val_score(o, stat: str) -> np.ndarray:
    """Per-image score of a run on val, by hand: correctness (clean) or its mean over the
    benchmark corruptions' keys (the CIFAR-10-C mean)."""
    from study.metrics import BENCHMARK_CORRUPTIONS

    if stat == "clean_acc":
        return o.arrays["val/clean"].astype(float)
    keys = [k for k in o.arrays if k.startswith("val/") and k.split("/")[1] in BENCHMARK_CORRUPTIONS]
    return np.mean([o.arrays[k] for k in keys], axis=0, dtype=float)


@pytest.fixture(scope="module")
def trained(home, mlflow_server, subset_dir, tmp_path_factory):
    """A real replicated study (``freqstudy run``, real Ray, real training on the CIFAR-10
    subset): the smoke space at 2 configurations x 2 seeds, 1 epoch on 500 images."""
    tmp = tmp_path_factory.mktemp("plan-trained")
    space = tmp / "replicated.yaml"
    text = (REPO / "search_spaces" / "smoke.yaml").read_text().replace("num_trials: 6", "num_trials: 2")
    space.write_text(text + "replicates: 2\n")
    argv = ["--space", space, "--study", "plan-trained", "--data-dir", subset_dir]
    argv += ["--tracking-uri", mlflow_server.uri, "--max-concurrent", 2, "--cpus-per-trial", 1]
    settings = {"train.epochs": 1, "data.train_limit": 500, "eval.test": False, "tracking.log_model": False}
    finished_study(*argv, *set_flags(settings), storage=tmp / "studies", timeout=1200)
    return mlflow_server.uri, "plan-trained"


@pytest.mark.slow
def test_plan_on_a_trained_study_equals_its_outcomes_read_by_hand(trained, capsys):
    """On real trained runs: the components equal those computed from each run's
    outcomes.npz downloaded by hand and grouped by its configuration tag."""
    from mlflow import MlflowClient

    from study.analysis.outcomes import decode

    uri, study = trained
    code, out, err = run_cli(
        capsys, "plan", "--study", study, "--effect", "5", "--tracking-uri", uri, "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(study)
    groups: dict[str, list] = {}
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for r in client.search_runs([exp.experiment_id], filter_string=f"tags.`{M.TAG_ROLE}` = 'trial'"):
            if r.info.status != "FINISHED":
                continue
            path = client.download_artifacts(r.info.run_id, OUTCOMES_ARTIFACT, tmp)
            groups.setdefault(r.data.tags[M.TAG_CONFIG_ID], []).append(decode(Path(path).read_bytes()))
            if r.data.tags.get(M.TAG_BASELINE) == "true":
                base = r.data.tags[M.TAG_CONFIG_ID]
    assert base is not None and sorted(len(g) for g in groups.values()) == [2, 2]
    order = [base] + [k for k in groups if k != base]
    assert doc["configurations"] == 2 and doc["seeds"]["used"] == 2
    for row, stat in zip(doc["objectives"], ("clean_acc", "corruption_acc")):
        want = measure([np.stack([val_score(o, stat) for o in groups[k]]) for k in order], stat)
        assert row["run_var"] == pytest.approx(want.components.run_var, rel=1e-9, abs=1e-12)
        assert row["image_var"] == pytest.approx(want.components.image_var, rel=1e-9, abs=1e-12)
        assert row["n_images"] == want.components.n_images and row["df"] == 2


@pytest.mark.slow
def test_simulate_from_a_trained_study(trained, capsys, tmp_path):
    """The noise of real trained runs drives the harness: the fitted model shows the
    measured seed variance again (within a factor 2: a 2 x 2 study measures it with 2 df)."""
    uri, study = trained
    space = racing_space(tmp_path, num_trials=6)
    argv = ["simulate", "--space", str(space), "--from-study", study, "--studies", "2", "--json"]
    code, out, err = run_cli(capsys, *argv, "--tracking-uri", uri)
    assert code == 0, err
    doc = json.loads(out)
    assert [p["policy"] for p in doc["policies"]] == ["racing m = 2, M = 4", "fixed R = 2", "fixed R = 4"]
    for c in doc["components"]:
        if c["component"] == "run_var":
            assert c["measured"] / 2 <= c["simulated"] <= 2 * c["measured"], c
