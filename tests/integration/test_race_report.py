"""Races in ``freqstudy pareto`` (table and ``--json``), ``freqstudy report`` (HTML) and
``results.md``, read from a real ``mlflow server``.

No training: each study's runs are logged straight into the fixture server as freqstudy logs
trial runs (params, metrics, tags, an ``outcomes.npz`` of per-image outcomes drawn with a seed
effect), with the race tags the Ray searcher sets when a configuration's race ends. Three
studies: a racing one (unequal seeds, every stop reason, and a configuration whose runs
disagree on their race), a plain ``replicates: 2`` one logged before racing existed (no race
tags), and one of a single seed per configuration.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from mlflow import MlflowClient

from study import metrics as M
from study.analysis.outcomes import OUTCOMES_ARTIFACT, encode
from study.analysis.outcomes import summarize as outcome_metrics
from study.cli import main
from tests.support import coin_outcomes

pytestmark = pytest.mark.integration

N_IMAGES = 200
# config id, mode, p, sigma, seeds, reason, other, P(clean right), P(corrupted right)
RACED = [
    ("base", "free", 0.5, 0.0, 6, "max seeds", None, 0.70, 0.50),
    ("good", "fixed", 0.5, 0.5, 4, "settled", None, 0.72, 0.62),
    ("poor", "fixed", 0.25, 0.0, 2, "dominated", "good", 0.60, 0.45),
    ("late", "fixed", 0.75, 0.5, 3, "budget", None, 0.66, 0.55),
]
PLAIN = [(c, m, p, s, 2, None, None, pc, pk) for c, m, p, s, _, _, _, pc, pk in RACED[:3]]
SINGLE = [(c, m, p, s, 1, None, None, pc, pk) for c, m, p, s, _, _, _, pc, pk in RACED[:3]]


def log_study(client, name, spec, tmp, *, tagged=True, race_tags=None, seed=0):
    """Log one study's trial runs; ``race_tags`` overrides a run's race tags: {run name: tags}."""
    from mlflow.entities import Metric, Param, RunTag

    rng = np.random.default_rng(seed)
    exp = client.create_experiment(name)
    ids = {}
    for config, mode, p, sigma, seeds, reason, other, pc, pk in spec:
        for k in range(seeds):
            o = coin_outcomes(rng, pc, pk, n=N_IMAGES, seed_sd=0.02)
            tags = {M.TAG_ROLE: "trial", M.TAG_STATUS: "finished", M.TAG_MODE: mode, M.TAG_STUDY: name}
            tags[M.TAG_TRIAL_ID] = f"{config}-{k}" if tagged else config
            if tagged:
                tags.update({M.TAG_CONFIG_ID: f"{config}-0", M.TAG_REPLICATE: str(k)})
            if reason is not None:
                tags.update({M.TAG_RACE_REASON: reason, M.TAG_RACE_SEEDS: str(seeds)})
                if other is not None:
                    tags[M.TAG_RACE_OTHER] = f"{other}-0"
            if config == "base":
                tags[M.TAG_BASELINE] = "true"
            tags.update((race_tags or {}).get(f"{config}-{k}", {}))
            run_id = client.create_run(exp, run_name=f"{config}-{k}").info.run_id
            params = {
                "train.epochs": "2",
                "frequency.mode": mode,
                "frequency.proportion": str(p),
                "frequency.perturbation": str(sigma),
                "seed": str(k),
            }
            metrics = {**outcome_metrics(o, "val"), **outcome_metrics(o, "test"), M.EPOCHS_COMPLETED: 2.0}
            client.log_batch(
                run_id,
                metrics=[Metric(key, float(v), 0, 0) for key, v in metrics.items()],
                params=[Param(key, v) for key, v in params.items()],
                tags=[RunTag(key, v) for key, v in tags.items()],
            )
            path = tmp / run_id / OUTCOMES_ARTIFACT
            path.parent.mkdir()
            path.write_bytes(encode(o))
            client.log_artifact(run_id, str(path))
            client.set_terminated(run_id, "FINISHED")
            ids[f"{config}-{k}"] = run_id
    return ids


@pytest.fixture(scope="module")
def studies(mlflow_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("race-report")
    client = MlflowClient(mlflow_server.uri)
    # "torn": its last run says another outcome than the others (a driver killed mid-tagging).
    torn = [("torn", "fixed", 0.5, 0.0, 3, "settled", None, 0.65, 0.5)]
    disagree = {"torn-2": {M.TAG_RACE_REASON: "dominated", M.TAG_RACE_OTHER: "good-0"}}
    log_study(client, "raced", RACED + torn, tmp, race_tags=disagree, seed=1)
    log_study(client, "plain", PLAIN, tmp, seed=2)
    log_study(client, "single", SINGLE, tmp, tagged=False, seed=3)
    return mlflow_server.uri


def cli(capfd, *argv):
    code = main(list(argv))
    out, err = capfd.readouterr()
    assert code == 0, err
    return out, err


def test_pareto_json_and_table_of_a_racing_study(studies, capfd):
    out, err = cli(capfd, "pareto", "--study", "raced", "--tracking-uri", studies, "--json")
    rows = json.loads(out)
    by_trial = {r["trial"]: r for r in rows}
    assert set(by_trial) <= {"base-0", "good-0", "late-0"} and "good-0" in by_trial
    expected = {c + "-0": (seeds, reason) for c, _, _, _, seeds, reason, *_ in RACED}
    for r in rows:
        assert (r["seeds"], r["race_reason"]) == expected[r["trial"]]
        assert r["replicates"] == r["seeds"] and len(r["runs"]) == r["seeds"]
        if not r["baseline"]:  # every seed of each side, unequal: 6 v 4, 6 v 3
            assert r["gain_seeds"] == [6, r["seeds"]] and r["gain_scope"] == "configurations"
    # The torn configuration is left out, named on stderr in one line.
    note = [line for line in err.splitlines() if "disagree on the race tags" in line]
    assert len(note) == 1 and "freqstudy.config_id=torn-0" in note[0] and "left out" in note[0]

    out, _ = cli(capfd, "pareto", "--study", "raced", "--tracking-uri", studies)
    head = out.splitlines()[0].split()
    assert head[3:6] == ["seeds", "race", "ended"]
    good = next(line for line in out.splitlines() if " good-0 " in line)
    assert re.search(r"good-0\s+fixed\s+4\s+settled\s", good)
    assert (
        "seeds: raced, 2 to 6 per configuration (race ended: dominated 1, settled 1, max seeds 1, budget 1)"
        in out
    )


def test_report_and_results_md_show_every_reason(studies, capfd, tmp_path):
    out_dir = tmp_path / "report"
    cli(capfd, "report", "--study", "raced", "--tracking-uri", studies, "--out", str(out_dir))
    md = (out_dir / "results.md").read_text()
    assert "| configuration | seeds | race ended | intervals about |" in md
    assert "| free σ=0 (baseline) | 6 | max seeds | configurations |" in md
    assert "| fixed p=0.5 σ=0.5 | 4 | settled | configurations (6v4 seeds" in md
    assert "| fixed p=0.25 σ=0 | 2 | dominated by fixed p=0.5 σ=0.5 | configurations (6v2 seeds" in md
    assert "| fixed p=0.75 σ=0.5 | 3 | budget | configurations (6v3 seeds" in md
    assert "torn" not in md and "Seeds were raced" in md
    page = (out_dir / "report.html").read_text()
    assert "<th>seeds</th><th>race ended</th>" in page
    for cell in ("max seeds", "settled", "dominated by good-0", "budget"):
        assert f"<td>{cell}</td>" in page, cell
    assert "Seeds: raced, 2 to 6 per configuration" in page


def test_an_untagged_replicated_study_shows_fixed_seeds(studies, capfd, tmp_path):
    out, _ = cli(capfd, "pareto", "--study", "plain", "--tracking-uri", studies, "--json")
    rows = json.loads(out)
    assert rows and all((r["seeds"], r["race_reason"], r["race_other"]) == (2, "fixed", None) for r in rows)
    out, _ = cli(capfd, "pareto", "--study", "plain", "--tracking-uri", studies)
    assert "seeds" in out.splitlines()[0] and "race" not in out.splitlines()[0]
    assert "seeds: fixed, 2 per configuration" in out
    cli(capfd, "report", "--study", "plain", "--tracking-uri", studies, "--out", str(tmp_path / "r"))
    md = (tmp_path / "r" / "results.md").read_text()
    # Today's table, unchanged: no race column and no racing paragraph.
    assert "| configuration | seeds | intervals about |" in md and "race" not in md
    page = (tmp_path / "r" / "report.html").read_text()
    assert (
        "<th>seeds</th>" in page and "race ended" not in page and "Seeds: fixed, 2 per configuration." in page
    )


def test_a_single_seed_study_keeps_its_look(studies, capfd, tmp_path):
    out, _ = cli(capfd, "pareto", "--study", "single", "--tracking-uri", studies, "--json")
    rows = json.loads(out)
    assert rows and all((r["seeds"], r["race_reason"]) == (1, "fixed") for r in rows)
    out, _ = cli(capfd, "pareto", "--study", "single", "--tracking-uri", studies)
    assert "seeds" not in out and "race" not in out
    cli(capfd, "report", "--study", "single", "--tracking-uri", studies, "--out", str(tmp_path / "r"))
    page = (tmp_path / "r" / "report.html").read_text()
    assert "<th>seeds</th>" not in page and "race ended" not in page and "Seeds:" not in page
