"""``freqstudy pareto`` and ``freqstudy report`` on a real smoke study.

The study is made once per module by ``freqstudy run`` with the smoke space plus two
``points`` (a learned-mode and a fixed-mode configuration, run first after the baseline, so
the study holds both whatever the sampler draws; real Ray, real trials on the CIFAR-10
subset) against the session's real ``mlflow server``; every check then reads MLflow
directly and compares with a brute-force computation from the runs' own metrics.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from study import metrics as M
from study.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke(smoke_study):
    """The session's finished smoke study (``tests/conftest.py``): ``(tracking_uri, study)``."""
    return smoke_study.uri, smoke_study.study


def client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_of(uri, study):
    c = client(uri)
    exp = c.get_experiment_by_name(study)
    return c.search_runs([exp.experiment_id], max_results=1000)


def complete_trials(uri, study):
    """Brute force of the selection rule from raw MLflow runs."""
    out = []
    for r in runs_of(uri, study):
        tags, metrics, params = r.data.tags, r.data.metrics, r.data.params
        if tags.get(M.TAG_ROLE) != "trial" or r.info.status != "FINISHED":
            continue
        if tags.get(M.TAG_STATUS) != "finished":
            continue
        if metrics.get(M.EPOCHS_COMPLETED) != float(params["train.epochs"]):
            continue
        out.append(r)
    return out


def brute_front(trials, keys=(M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC)):
    def dominates(a, b):
        va = [a.data.metrics[k] for k in keys]
        vb = [b.data.metrics[k] for k in keys]
        return all(x >= y for x, y in zip(va, vb)) and any(x > y for x, y in zip(va, vb))

    return {t.info.run_id for t in trials if not any(dominates(o, t) for o in trials if o is not t)}


def baseline_of(trials):
    tagged = [t for t in trials if t.data.tags.get(M.TAG_BASELINE) == "true"]
    assert len(tagged) == 1, "the smoke study's trial 0 is its one baseline"
    return tagged[0]


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_pareto_json_equals_brute_force(smoke, capfd):
    uri, study = smoke
    code, out, err = run_cli(capfd, "pareto", "--study", study, "--tracking-uri", uri, "--json")
    assert code == 0, err
    rows = json.loads(out)  # the whole stdout, file descriptor 1 included, is one document
    trials = complete_trials(uri, study)
    assert len(trials) >= 2, "the smoke study should finish most trials"
    assert {r["run_id"] for r in rows} == brute_front(trials)
    by_id = {t.info.run_id: t for t in trials}
    for r in rows:
        assert r["rank"] == 1
        for key in (M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC):
            assert r[key] == pytest.approx(by_id[r["run_id"]].data.metrics[key])
    robust = [r[M.VAL_CORRUPTION_ACC] for r in rows]
    assert robust == sorted(robust, reverse=True)  # pareto-1 is the most robust
    # The Pareto figure went to the study's parent run.
    c = client(uri)
    parent = [r for r in runs_of(uri, study) if r.data.tags.get(M.TAG_ROLE) == "study"][0]
    assert "pareto/pareto.png" in {a.path for a in c.list_artifacts(parent.info.run_id, "pareto")}


def test_champion_respects_max_clean_drop(smoke, capsys):
    uri, study = smoke
    trials = complete_trials(uri, study)
    base_clean = baseline_of(trials).data.metrics[M.VAL_CLEAN_ACC]
    cleans = sorted({t.data.metrics[M.VAL_CLEAN_ACC] for t in trials})
    # 0, a drop that admits only some trials, and one that admits all of them.
    drops = sorted({0.0, max(0.0, base_clean - cleans[0]) + 1.0, max(0.0, (base_clean - cleans[0]) / 2)})
    for drop in drops:
        code, out, err = run_cli(
            capsys, "pareto", "--study", study, "--tracking-uri", uri, "--json", "--max-clean-drop", str(drop)
        )
        assert code == 0, err
        champs = [r for r in json.loads(out) if r["champion"]]
        assert len(champs) == 1
        champ = champs[0]
        assert champ[M.VAL_CLEAN_ACC] >= base_clean - drop - 1e-9
        ok = [t for t in trials if t.data.metrics[M.VAL_CLEAN_ACC] >= base_clean - drop - 1e-9]
        best = max(t.data.metrics[M.VAL_CORRUPTION_ACC] for t in ok)
        assert champ[M.VAL_CORRUPTION_ACC] == pytest.approx(best), f"drop {drop}"


def test_register_creates_versions_and_aliases_that_load(smoke, capsys):
    import mlflow.artifacts
    import torch

    uri, study = smoke
    trials = complete_trials(uri, study)
    base_clean = baseline_of(trials).data.metrics[M.VAL_CLEAN_ACC]
    code, out, err = run_cli(
        capsys,
        "pareto",
        "--study",
        study,
        "--tracking-uri",
        uri,
        "--json",
        "--register",
        "--max-clean-drop",
        "1.0",
    )
    assert code == 0, err
    rows = json.loads(out)
    c = client(uri)
    for i, r in enumerate(rows, start=1):
        mv = c.get_model_version_by_alias(study, f"pareto-{i}")
        assert mv.run_id == r["run_id"] and mv.version == r["version"]
        assert float(mv.tags[M.ROBUSTNESS_GAIN]) == pytest.approx(r[M.ROBUSTNESS_GAIN], abs=1e-3)
        assert M.CLEAN_DROP in mv.tags and M.RELATIVE_MCE in mv.tags
    champ = [r for r in rows if r["champion"]][0]
    mv = c.get_model_version_by_alias(study, "champion")
    assert mv.run_id == champ["run_id"]
    assert champ[M.VAL_CLEAN_ACC] >= base_clean - 1.0 - 1e-9
    assert len(c.search_model_versions(f"name = '{study}'")) == len(rows)
    # The registered version is the run's pickle-free model folder.
    mlflow.set_tracking_uri(uri)
    files = {
        Path(f).name for f in os.listdir(mlflow.artifacts.download_artifacts(f"models:/{study}@champion"))
    }
    assert files == {"weights.safetensors", "config.yaml", "freqstudy-model.json"}
    # The README's way: freqstudy's loader by alias, the same network as the champion run's.
    from study.tracking import load_logged_model, load_registered_model
    from study.tracking.registry import version_by_alias

    model = load_registered_model(study, "champion", uri)
    with torch.no_grad():
        logits = model(torch.zeros(3, 3, 32, 32))
    assert tuple(logits.shape) == (3, 10) and not model.training
    assert version_by_alias(study, "pareto-1", uri)["run_id"] == rows[0]["run_id"]
    with torch.no_grad():
        again = load_logged_model(champ["run_id"], uri)(torch.zeros(3, 3, 32, 32))
    torch.testing.assert_close(again, logits)
    with pytest.raises(ValueError, match="has no alias 'pareto-99'; aliases: .*champion"):
        version_by_alias(study, "pareto-99", uri)
    # Registering again reuses the versions instead of adding new ones.
    code, _, err = run_cli(capsys, "pareto", "--study", study, "--tracking-uri", uri, "--register")
    assert code == 0, err
    assert len(c.search_model_versions(f"name = '{study}'")) == len(rows)


def test_unknown_study_or_metric_names_what_exists(smoke, capsys):
    uri, study = smoke
    code, out, err = run_cli(capsys, "pareto", "--study", "no-such-study", "--tracking-uri", uri)
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert "study 'no-such-study' not found; studies:" in err and study in err
    code, out, err = run_cli(
        capsys,
        "pareto",
        "--study",
        study,
        "--tracking-uri",
        uri,
        "--objectives",
        "val/nope:max,val/clean_acc:max",
    )
    assert code == 2 and err.count("\n") == 1
    assert f"metric 'val/nope' not found in study '{study}'; metrics:" in err and M.VAL_CORRUPTION_ACC in err
    code, out, err = run_cli(capsys, "report", "--study", "no-such-study", "--tracking-uri", uri)
    assert code == 2 and "study 'no-such-study' not found" in err


def test_report_is_self_contained_and_logged(smoke, capsys, tmp_path):
    uri, study = smoke
    out_dir = tmp_path / "report"
    code, out, err = run_cli(capsys, "report", "--study", study, "--tracking-uri", uri, "--out", str(out_dir))
    assert code == 0, err
    page = (out_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<link" not in page.lower() and "<script" not in page.lower()
    # "Which settings matter" has a figure when at least 2 complete trials besides the baseline ran.
    searched = [t for t in complete_trials(uri, study) if t.data.tags.get(M.TAG_BASELINE) != "true"]
    with_importance = len(searched) >= 2
    images = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(images) == 5 + with_importance and all(s.startswith("data:image/png;base64,") for s in images)
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    assert pngs == sorted(
        [
            "alpha.png",
            "pareto.png",
            "per_corruption.png",
            "perturbation_gain.png",
            "proportion_accuracy.png",
        ]
        + (["importance.png"] if with_importance else [])
    )
    assert all((out_dir / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    # Intervals from the stored per-image outcomes in both tables, error bars said in the captions.
    interval = r"\[[-+−]?\d+\.\d+, [-+−]?\d+\.\d+\]"
    n_complete = len(searched) + 1
    pareto_table = page[page.index("<h2>Pareto set</h2>") : page.index("<h2>Figures</h2>")]
    gains_table = page[page.index("<h2>Against the baseline") : page.index("<h2>Which settings matter")]
    assert len(re.findall(interval, gains_table)) >= 5 * n_complete  # 2 accuracies, gain, drop, mCE
    assert len(re.findall(interval, pareto_table)) >= 5
    assert page.count("Error bars:") == 4
    section = page[page.index("<h2>Which settings matter</h2>") :]
    if with_importance:
        assert f"Importance over {len(searched)} complete trials (the baseline excluded)" in section
        assert section.count("<img") == 1
        with open(out_dir / "importance.csv") as f:
            importance = list(csv.DictReader(f))
        assert {r["objective"] for r in importance} == {M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC}
        # The smoke space searches these (study.parameters on the parent run).
        assert {r["parameter"] for r in importance} <= {
            "frequency.mode",
            "frequency.proportion",
            "frequency.perturbation",
            "train.lr",
        }
    else:
        assert "at least 2 complete trials" in section and "<img" not in section
    with open(out_dir / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    trial_runs = [r for r in runs_of(uri, study) if r.data.tags.get(M.TAG_ROLE) == "trial"]
    assert {r["run_id"] for r in rows} == {r.info.run_id for r in trial_runs}
    with open(out_dir / "per_corruption.csv") as f:
        per = list(csv.DictReader(f))
    # The smoke space evaluates gaussian_noise, defocus_blur and contrast.
    assert {r["category"] for r in per} == {"noise", "blur", "digital"}
    assert {r["model"] for r in per} >= {"baseline", "pareto-1"}
    base = [r for r in rows if r["baseline"] == "True"]
    assert (
        len(base) == 1
        and float(base[0][M.ROBUSTNESS_GAIN]) == pytest.approx(0.0, abs=1e-9)
        and float(base[0][M.RELATIVE_MCE]) == pytest.approx(100.0, rel=1e-12)
    )
    # Every complete trial's accuracies and gains carry their interval bounds in the CSV.
    complete_ids = {t.info.run_id for t in searched} | {base[0]["run_id"]}
    for r in rows:
        if r["run_id"] not in complete_ids:
            continue
        for key in (M.TEST_CLEAN_ACC, M.TEST_CORRUPTION_ACC):
            assert float(r[f"{key}_ci_low"]) <= float(r[key]) <= float(r[f"{key}_ci_high"]), key
        assert float(r["robustness_gain_ci_low"]) <= float(r[M.ROBUSTNESS_GAIN]) + 1e-9
        assert float(r[M.ROBUSTNESS_GAIN]) <= float(r["robustness_gain_ci_high"]) + 1e-9
        assert 0 <= float(r["robustness_gain_p"]) <= 1
    parent = [r for r in runs_of(uri, study) if r.data.tags.get(M.TAG_ROLE) == "study"][0]
    logged = {a.path for a in client(uri).list_artifacts(parent.info.run_id, "report")}
    csvs = ["report.html", "trials.csv", "pareto.csv", "per_corruption.csv"]
    csvs += ["importance.csv"] if with_importance else []
    assert {f"report/{n}" for n in [*csvs, *pngs]} <= logged


def test_learned_alpha_is_per_filter(smoke, tmp_path):
    from study.selection.choice import choose, trial_label
    from study.selection.choose import param_of, parse_objectives
    from study.tracking import load_logged_model
    from study.tracking.queries import client_for, learned_alpha, load_study

    uri, study = smoke
    c = client_for(uri)
    choice = choose(load_study(study, client=c), parse_objectives(None), None)
    learned = [x.trial for x in choice.result.candidates if param_of(x.trial, "frequency.mode") == "learned"]
    assert learned, "the space's first point is a learned-mode configuration; it should finish"
    alpha = learned_alpha(choice, c, tmp_path)
    for t in learned:
        a = alpha[trial_label(t)]
        assert a.shape == (int(param_of(t, "model.width")),)  # one alpha per first-layer filter
        # The report shows the trained network's own alpha, filter by filter.
        trained = load_logged_model(t["run_id"], uri).stem.alpha().detach().numpy()
        np.testing.assert_allclose(a, trained, rtol=0, atol=1e-6)
        assert a.mean() == pytest.approx(t["metrics"][M.FILTER_MEAN_ALPHA], abs=1e-4)


def _outcomes_of(uri, run_id):
    from study.tracking.queries import load_outcomes

    return load_outcomes(run_id, tracking_uri=uri)


def test_every_trial_stores_its_per_image_outcomes(smoke):
    from study.analysis.outcomes import summarize

    uri, study = smoke
    trials = complete_trials(uri, study)
    assert len(trials) >= 2
    for t in trials:
        o = _outcomes_of(uri, t.info.run_id)
        assert o is not None and set(o.splits) == {"val", "test"}
        # The stored booleans give back exactly the accuracies the run logged, every one of them
        # under the name the run logged it, the objectives and headline numbers among them.
        compared = set()
        for split in ("val", "test"):
            recomputed = summarize(o, split)
            assert set(recomputed) <= set(t.data.metrics), set(recomputed) - set(t.data.metrics)
            for key, value in recomputed.items():
                assert value == pytest.approx(t.data.metrics[key], abs=1e-6), key
            compared |= set(recomputed)
        headline = {M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC, M.TEST_CLEAN_ACC, M.TEST_CORRUPTION_ACC}
        assert headline | {"test/corruption/contrast", "val/category/noise"} <= compared


def test_compare_interval_equals_brute_force_resampling_of_the_stored_booleans(smoke, capsys):
    """The interval `compare` prints is the percentile interval of B−A over images resampled by hand."""
    from study.analysis.paired import DEFAULT_RESAMPLES, resample_batch

    uri, study = smoke
    trials = complete_trials(uri, study)
    base = baseline_of(trials)
    other = next(t for t in trials if t is not base)
    code, out, err = run_cli(
        capsys,
        "compare",
        base.info.run_id,
        other.info.run_id,
        "--study",
        study,
        "--tracking-uri",
        uri,
        "--json",
        "--seed",
        "7",
    )
    assert code == 0, err
    doc = json.loads(out)
    rows = {r["statistic"]: r for r in doc["differences"]}
    a, b = _outcomes_of(uri, base.info.run_id), _outcomes_of(uri, other.info.run_id)
    d = b.arrays["test/clean"].astype(float) - a.arrays["test/clean"].astype(float)
    n = len(d)
    rng = np.random.default_rng(7)
    batch = resample_batch(n, DEFAULT_RESAMPLES)
    dist = []
    for start in range(0, DEFAULT_RESAMPLES, batch):
        idx = rng.integers(0, n, (min(batch, DEFAULT_RESAMPLES - start), n))
        dist.append(d[idx].mean(axis=1) * 100.0)
    lo, hi = np.quantile(np.concatenate(dist), [0.025, 0.975])
    assert (rows["clean_acc"]["ci_low"], rows["clean_acc"]["ci_high"]) == pytest.approx((lo, hi), abs=1e-9)
    assert rows["clean_acc"]["diff"] == pytest.approx(d.mean() * 100.0)
    assert rows["clean_acc"]["test"] == "mcnemar-exact" and 0 <= rows["clean_acc"]["p_value"] <= 1
    for name in ("corruption_acc", "relative_mce", "category/noise", "corruption/contrast"):
        r = rows[name]
        assert r["ci_low"] <= r["diff"] <= r["ci_high"] and 0 <= r["p_value"] <= 1, name
    # The table form says the same numbers.
    code, text, err = run_cli(
        capsys,
        "compare",
        base.info.run_id,
        other.info.run_id,
        "--study",
        study,
        "--tracking-uri",
        uri,
        "--seed",
        "7",
    )
    assert code == 0 and f"[{rows['clean_acc']['ci_low']:+.2f}, {rows['clean_acc']['ci_high']:+.2f}]" in text


def test_pareto_intervals_agree_with_compare_and_land_in_mlflow(smoke, capsys):
    uri, study = smoke
    code, out, err = run_cli(capsys, "pareto", "--study", study, "--tracking-uri", uri, "--json")
    assert code == 0, err
    rows = json.loads(out)
    base = baseline_of(complete_trials(uri, study))
    for r in rows:
        for key in ("robustness_gain_ci", "clean_drop_ci", "val_robustness_gain_ci"):
            assert isinstance(r[key], list) and len(r[key]) == 2 and r[key][0] <= r[key][1], key
        assert 0 <= r["robustness_gain_p"] <= 1 and r["replicates"] == 1
        assert r["robustness_gain_ci"][0] <= r[M.ROBUSTNESS_GAIN] <= r["robustness_gain_ci"][1]
        if r["run_id"] == base.info.run_id:
            continue
        code, cmp_out, err = run_cli(
            capsys,
            "compare",
            base.info.run_id,
            r["run_id"],
            "--study",
            study,
            "--tracking-uri",
            uri,
            "--json",
        )
        assert code == 0, err
        diffs = {d["statistic"]: d for d in json.loads(cmp_out)["differences"]}
        assert r["robustness_gain_ci"] == pytest.approx(
            [diffs["corruption_acc"]["ci_low"], diffs["corruption_acc"]["ci_high"]], abs=1e-9
        )
        assert r["clean_drop_ci"] == pytest.approx(
            [-diffs["clean_acc"]["ci_high"], -diffs["clean_acc"]["ci_low"]], abs=1e-9
        )
        run = client(uri).get_run(r["run_id"])
        assert run.data.metrics["gain/test/robustness_ci_low"] == pytest.approx(r["robustness_gain_ci"][0])
        assert run.data.metrics["gain/val/robustness_ci_high"] == pytest.approx(
            r["val_robustness_gain_ci"][1]
        )
    # --significant on a single-seed study: refused in one line saying why (two networks, not
    # configurations), before any champion is named.
    code, out, err = run_cli(
        capsys, "pareto", "--study", study, "--tracking-uri", uri, "--json", "--significant"
    )
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--significant" in err and "two trained networks" in err
    # The baseline's own row: gain exactly 0 with a zero-width interval; the rest name R = 1's scope
    # and carry Holm-adjusted p-values of the primary family.
    (b,) = [r for r in rows if r["run_id"] == base.info.run_id] or [None]
    if b is not None:
        assert b["robustness_gain_ci"] == [0.0, 0.0] and b[M.ROBUSTNESS_GAIN] == 0.0
    for r in rows:
        assert r["gain_scope"] == "networks" and r["gain_seeds"] == [1, 1]
        if r["run_id"] != base.info.run_id:
            assert r["robustness_gain_family"] == "primary (Holm)"
            assert r["robustness_gain_p"] <= r["robustness_gain_p_adjusted"] <= 1
            tags = client(uri).get_run(r["run_id"]).data.tags
            assert tags["gain/test/scope"] == "networks" and tags["gain/test/seeds"] == "1v1"
    code, text, err = run_cli(capsys, "pareto", "--study", study, "--tracking-uri", uri)
    assert code == 0 and "about two trained networks" in text


def test_compare_a_run_with_itself_is_exactly_zero(smoke, capsys):
    """Issue 22: `compare --study S B0 B0` gives 0 [0, 0] for every statistic, p = 1, labelled
    as about networks (one seed), with each statistic's multiplicity family named."""
    uri, study = smoke
    base = baseline_of(complete_trials(uri, study)).info.run_id
    args = ("compare", base, base, "--study", study, "--tracking-uri", uri)
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["scope"] == "networks" and doc["families"]
    for r in doc["differences"]:
        assert (r["diff"], r["ci_low"], r["ci_high"]) == (0.0, 0.0, 0.0), r
        assert r["scope"] == "networks" and r["replicates"] == [1, 1]
    rows = {r["statistic"]: r for r in doc["differences"]}
    assert rows["corruption_acc"]["family"] == "primary (Holm)"
    assert rows["category/noise"]["family"] == "secondary (Benjamini-Hochberg)"
    code, text, err = run_cli(capsys, *args)
    assert code == 0 and "about two trained networks" in text


def test_compare_refuses_runs_on_different_images(smoke, capsys, subset_dir, tmp_path, monkeypatch):
    uri, study = smoke
    monkeypatch.setenv("FREQSTUDY_HOME", str(tmp_path / "home"))
    code, out, err = run_cli(
        capsys,
        "train",
        "--data-dir",
        str(subset_dir),
        "--tracking-uri",
        uri,
        "--set",
        f"tracking.experiment={study}",
        "--set",
        "model.width=8",
        "--set",
        "train.epochs=1",
        "--set",
        "data.train_limit=300",
        "--set",
        "eval.corruption_limit=17",
        "--set",
        "eval.corruptions=[contrast]",
        "--set",
        "eval.severities=[1]",
        "--set",
        "tracking.log_model=false",
        "--set",
        "train.batch_size=100",
    )
    assert code == 0, err
    other = re.search(r"run (\w+) finished", out).group(1)
    base = baseline_of(complete_trials(uri, study))
    code, out, err = run_cli(
        capsys, "compare", base.info.run_id, other, "--study", study, "--tracking-uri", uri, "--split", "val"
    )
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "not evaluated on the same images" in err and "corruption_limit" in err
    code, out, err = run_cli(
        capsys, "compare", base.info.run_id, "0" * 32, "--study", study, "--tracking-uri", uri
    )
    assert code == 2 and "RUN_B" in err and err.count("\n") == 1


@pytest.fixture
def throwaway_tables():
    """A statistic and a gain added to the tables for one test only (each table is the one
    source its consumers iterate over, so nothing else is touched)."""
    from study.analysis import gains as G
    from study.analysis import statistics as S
    from study.analysis.outcomes import parse_key

    def hardest(ix):
        keys = ix.of(M.BENCHMARK_CORRUPTIONS)
        top = max((parse_key(k)[2] for k in keys), default=None)
        return [("hardest_severity_acc", tuple(k for k in keys if parse_key(k)[2] == top))] if keys else []

    stat = S.Statistic("hardest_severity_acc", S.MEAN, hardest)
    gain = G.GainSpec(
        "hardest_gain",
        "hardest_severity_acc",
        +1,
        0.0,
        "hardest-severity gain (pts)",
        "hardest",
        2,
        True,
        "hardest",
        True,
        lambda model, base, split: math.nan,  # no summary metric of it: the point comes with outcomes
    )
    S.STATISTICS.append(stat)
    G.GAINS.append(gain)
    try:
        yield stat, gain
    finally:
        S.STATISTICS.remove(stat)
        G.GAINS.remove(gain)


def test_a_throwaway_statistic_and_gain_reach_every_output(smoke, capsys, tmp_path, throwaway_tables):
    uri, study = smoke
    base = baseline_of(complete_trials(uri, study))
    code, out, err = run_cli(capsys, "pareto", "--study", study, "--tracking-uri", uri, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert rows and all("hardest_gain_ci" in r and "val_hardest_gain_ci" in r for r in rows)
    # A Pareto trial evaluated on the baseline's images (others have no paired gain).
    paired = [r for r in rows if r["run_id"] != base.info.run_id and r["hardest_gain_ci"] is not None]
    if not paired:
        pytest.skip("no Pareto trial of this smoke study shares the baseline's test images")
    row = paired[0]
    code, out, err = run_cli(
        capsys, "compare", base.info.run_id, row["run_id"], "--study", study, "--tracking-uri", uri, "--json"
    )
    assert code == 0, err
    diffs = {d["statistic"]: d for d in json.loads(out)["differences"]}
    hard = diffs["hardest_severity_acc"]
    assert hard["ci_low"] <= hard["diff"] <= hard["ci_high"] and hard["test"] == "sign-flip-permutation"
    assert row["hardest_gain_ci"] == pytest.approx([hard["ci_low"], hard["ci_high"]])
    out_dir = tmp_path / "report"
    code, _, err = run_cli(capsys, "report", "--study", study, "--tracking-uri", uri, "--out", str(out_dir))
    assert code == 0, err
    with open(out_dir / "trials.csv") as f:
        trial_row = {r["run_id"]: r for r in csv.DictReader(f)}[row["run_id"]]
    assert float(trial_row["hardest_gain_ci_low"]) == pytest.approx(hard["ci_low"])
    assert float(trial_row["hardest_gain_ci_high"]) == pytest.approx(hard["ci_high"])
    with open(out_dir / "pareto.csv") as f:
        assert "hardest_gain_ci_low" in next(csv.reader(f))
    results = (out_dir / "results.md").read_text()
    assert "hardest-severity gain (pts)" in results
    assert f"{hard['diff']:+.2f} [{hard['ci_low']:+.2f}, {hard['ci_high']:+.2f}]" in results
    assert "hardest-severity gain (pts)" in (out_dir / "report.html").read_text()


def test_export_reads_back_as_the_server_study_and_reports_the_same(smoke, capsys, tmp_path):
    """``freqstudy export`` then the file-backed source: the same trial records and outcomes as
    the server's, and ``report --from-export`` writes the ``results.md`` that ``report --study`` writes."""
    from study.exported import load_export
    from study.tracking.gains import study_outcomes
    from study.tracking.queries import load_study

    uri, study = smoke
    export = tmp_path / "export"
    code, out, err = run_cli(capsys, "export", "--study", study, "--tracking-uri", uri, "--out", str(export))
    assert code == 0, err
    manifest = json.loads((export / "manifest.json").read_text())
    finished = [t for t in runs_of(uri, study) if t.data.tags.get(M.TAG_ROLE) == "trial"]
    finished = [t for t in finished if t.info.status == "FINISHED"]
    assert {f"outcomes/{t.info.run_id}.npz" for t in finished} <= set(manifest["files"])
    for t in finished:  # the logged artifact byte for byte
        logged = client(uri).download_artifacts(t.info.run_id, "outcomes.npz", str(tmp_path / t.info.run_id))
        assert (export / "outcomes" / f"{t.info.run_id}.npz").read_bytes() == Path(logged).read_bytes()
    with open(export / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["run_id"] for r in rows} == {
        t.info.run_id for t in runs_of(uri, study) if t.data.tags.get(M.TAG_ROLE) == "trial"
    }

    runs, outcomes = load_export(export)
    server_runs = load_study(study, tracking_uri=uri)

    def same(a, b):  # JSON carries NaN as null; compare NaN-aware
        na = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in a["metrics"].items()}
        nb = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in b["metrics"].items()}
        return {**a, "metrics": na} == {**b, "metrics": nb}

    assert len(runs["trials"]) == len(server_runs["trials"])
    assert all(same(a, b) for a, b in zip(runs["trials"], server_runs["trials"]))
    assert same(runs["parent"], server_runs["parent"])
    server_outcomes = study_outcomes(server_runs, tracking_uri=uri)
    assert sorted(outcomes) == sorted(server_outcomes)
    assert all(outcomes[k] == server_outcomes[k] for k in outcomes)

    code, _, err = run_cli(
        capsys, "report", "--study", study, "--tracking-uri", uri, "--out", str(tmp_path / "a")
    )
    assert code == 0, err
    code, _, err = run_cli(capsys, "report", "--from-export", str(export), "--out", str(tmp_path / "b"))
    assert code == 0, err
    assert (tmp_path / "b" / "results.md").read_text() == (tmp_path / "a" / "results.md").read_text()
    assert (tmp_path / "b" / "trials.csv").read_bytes() == (tmp_path / "a" / "trials.csv").read_bytes()
