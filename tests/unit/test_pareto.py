"""study.pareto against brute force: ranks, crowding, and the trial adapter."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from study import metrics as M
from study.selection import choose as P
from study.selection.choose import (
    Objective,
    choose_champion,
    crowding_distance,
    find_baseline,
    incomplete_reason,
    non_dominated_ranks,
    parse_objectives,
    sort_trials,
    trial_gains,
)


def brute_ranks(values: np.ndarray, directions) -> np.ndarray:
    """Front by definition: peel the points no remaining point dominates."""
    sign = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    costs = values * sign
    n = len(values)
    ranks = np.zeros(n, dtype=int)
    valid = [i for i in range(n) if not np.isnan(costs[i]).any()]
    remaining = set(valid)
    rank = 0

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    while remaining:
        rank += 1
        front = [i for i in remaining if not any(dominates(costs[j], costs[i]) for j in remaining if j != i)]
        for i in front:
            ranks[i] = rank
        remaining -= set(front)
    return ranks


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("seed", range(8))
def test_ranks_match_brute_force(m, seed):
    rng = np.random.default_rng(seed * 10 + m)
    n = int(rng.integers(1, 60))
    # Few distinct levels so ties (equal coordinates and duplicate points) are common.
    values = rng.integers(0, 5, size=(n, m)).astype(float)
    directions = [rng.choice(["max", "min"]) for _ in range(m)]
    np.testing.assert_array_equal(non_dominated_ranks(values, directions), brute_ranks(values, directions))


@pytest.mark.parametrize("seed", range(4))
def test_ranks_continuous_values_with_nan(seed):
    rng = np.random.default_rng(100 + seed)
    values = rng.normal(size=(80, 3))
    values[rng.random(80) < 0.15, rng.integers(0, 3)] = np.nan
    directions = ["max", "min", "max"]
    got = non_dominated_ranks(values, directions)
    np.testing.assert_array_equal(got, brute_ranks(values, directions))
    assert (got[np.isnan(values).any(axis=1)] == 0).all()
    assert (got[~np.isnan(values).any(axis=1)] >= 1).all()


def test_duplicates_share_the_front_and_direction_matters():
    pts = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    assert non_dominated_ranks(pts, ["max", "max"]).tolist() == [1, 1, 2, 1]
    assert non_dominated_ranks(pts, ["min", "min"]).tolist() == [2, 2, 1, 2]


def test_empty_and_all_nan():
    assert non_dominated_ranks(np.zeros((0, 2)), ["max", "max"]).tolist() == []
    assert non_dominated_ranks(np.full((3, 2), np.nan), ["max", "min"]).tolist() == [0, 0, 0]


def test_bad_directions_and_shapes_are_one_line_errors():
    with pytest.raises(ValueError, match="'up' is not one of max, min"):
        non_dominated_ranks(np.zeros((2, 2)), ["max", "up"])
    with pytest.raises(ValueError, match="2 given for 3 objectives"):
        non_dominated_ranks(np.zeros((2, 3)), ["max", "max"])


def brute_crowding(values: np.ndarray) -> np.ndarray:
    n, m = values.shape
    if n <= 2:
        return np.full(n, np.inf)
    d = np.zeros(n)
    for j in range(m):
        order = sorted(range(n), key=lambda i: (values[i, j], i))
        lo, hi = values[order[0], j], values[order[-1], j]
        d[order[0]] = d[order[-1]] = np.inf
        for a, i, b in zip(order, order[1:], order[2:]):
            if hi > lo:
                d[i] += (values[b, j] - values[a, j]) / (hi - lo)
    return d


@pytest.mark.parametrize("seed", range(6))
def test_crowding_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 4, size=(int(rng.integers(1, 12)), int(rng.integers(2, 5)))).astype(float)
    np.testing.assert_allclose(crowding_distance(values), brute_crowding(values))


def test_crowding_of_a_line_is_the_neighbour_gap():
    pts = np.array([[0.0, 4.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0]])
    d = crowding_distance(pts)
    assert math.isinf(d[0]) and math.isinf(d[3])
    np.testing.assert_allclose(d[1:3], [2 * 3 / 4, 2 * 3 / 4])
    # Identical points: zero span, no division by zero.
    np.testing.assert_array_equal(crowding_distance(np.ones((4, 2)))[1:3], [0.0, 0.0])


def test_parse_objectives():
    assert parse_objectives(None) == (
        Objective(M.VAL_CLEAN_ACC, "max"),
        Objective(M.VAL_CORRUPTION_ACC, "max"),
    )
    assert parse_objectives("val/clean_acc:max, system/peak_memory_mb:MIN") == (
        Objective("val/clean_acc", "max"),
        Objective("system/peak_memory_mb", "min"),
    )
    with pytest.raises(ValueError, match="'best' of 'val/clean_acc' is not one of max, min"):
        parse_objectives("val/clean_acc:best")
    with pytest.raises(ValueError, match="repeats"):
        parse_objectives("a:max,a:min")


# -- trial records ------------------------------------------------------------------


def trial(
    run_id,
    clean,
    corr,
    *,
    status="finished",
    done=2,
    epochs=2,
    mode="fixed",
    sigma=0.0,
    baseline=False,
    test_clean=None,
    test_corr=None,
):
    tags = {M.TAG_STATUS: status, M.TAG_ROLE: "trial"}
    if baseline:
        tags[M.TAG_BASELINE] = "true"
    metrics = {
        M.VAL_CLEAN_ACC: clean,
        M.VAL_CORRUPTION_ACC: corr,
        M.EPOCHS_COMPLETED: float(done),
        M.TEST_CLEAN_ACC: clean if test_clean is None else test_clean,
        M.TEST_CORRUPTION_ACC: corr if test_corr is None else test_corr,
        M.corruption_key("test", "fog"): corr,
        M.corruption_key("test", "snow"): corr,
    }
    metrics = {k: v for k, v in metrics.items() if v is not None}
    params = {"train.epochs": str(epochs), "frequency.mode": mode, "frequency.perturbation": str(sigma)}
    return {
        "run_id": run_id,
        "name": run_id,
        "params": params,
        "metrics": metrics,
        "tags": tags,
        "start_time": 0,
    }


def test_only_full_budget_finished_trials_are_chosen():
    trials = [
        trial("base", 90, 60, mode="free", baseline=True),
        trial("a", 88, 70),
        trial("b", 85, 75),
        trial("c", 80, 74),  # dominated by b
        trial("asha", 95, 95, done=1),  # stopped early: would dominate everything
        trial("div", 99, 99, status="diverged"),
        trial("nan", math.nan, 80),
        trial("missing", 91, None),
    ]
    assert incomplete_reason(trials[4]) == "stopped early"
    res = sort_trials(trials, parse_objectives(None))
    assert [c.run_id for c in res.front] == ["b", "a", "base"]  # most robust first
    assert {c.run_id: c.rank for c in res.candidates}["c"] == 2
    assert res.excluded == {"stopped early": 1, "status diverged": 1, "missing or NaN objective": 2}


def test_champion_respects_max_clean_drop():
    trials = [trial("base", 90, 60, mode="free", baseline=True), trial("a", 88, 70), trial("b", 85, 75)]
    res = sort_trials(trials, parse_objectives(None))
    base = find_baseline(trials)
    assert base["run_id"] == "base"
    assert choose_champion(res, base, 2.0).run_id == "a"
    assert choose_champion(res, base, 5.0).run_id == "b"
    assert choose_champion(res, base, 0.0).run_id == "base"
    assert choose_champion(res, base, None).run_id == "b"
    with pytest.raises(ValueError, match="no finished baseline"):
        choose_champion(res, None, 1.0)


def test_champion_equals_brute_force_over_all_complete_trials():
    rng = np.random.default_rng(7)
    trials = [trial("base", 90.0, 60.0, mode="free", baseline=True)]
    trials += [trial(f"t{i}", float(rng.integers(80, 95)), float(rng.integers(55, 80))) for i in range(40)]
    res = sort_trials(trials, parse_objectives(None))
    for drop in (0.0, 1.0, 3.0, 7.0):
        ok = [t for t in trials if t["metrics"][M.VAL_CLEAN_ACC] >= 90.0 - drop]
        best = max(t["metrics"][M.VAL_CORRUPTION_ACC] for t in ok)
        champ = choose_champion(res, trials[0], drop)
        assert champ.trial["metrics"][M.VAL_CORRUPTION_ACC] == best
        assert champ.trial["metrics"][M.VAL_CLEAN_ACC] >= 90.0 - drop


def test_gains_use_test_metrics_against_baseline():
    base = trial("base", 90, 60, mode="free", baseline=True, test_clean=89, test_corr=58)
    a = trial("a", 88, 70, test_clean=87, test_corr=69)
    g = trial_gains(a, base)
    assert g[M.ROBUSTNESS_GAIN] == pytest.approx(11.0)
    assert g[M.CLEAN_DROP] == pytest.approx(2.0)
    assert g["val_" + M.ROBUSTNESS_GAIN] == pytest.approx(10.0)
    # relative mCE over fog and snow (val numbers stored under test keys above): 100 * 60/80
    assert g[M.RELATIVE_MCE] == pytest.approx(100 * (30 + 30) / (40 + 40))


def test_pure_module_imports_neither_ray_nor_mlflow():
    code = (
        "import sys, study.selection.choose, study.selection.choice, study.reporting.report, "
        "study.reporting.figures_study; "
        "print(any(m.split('.')[0] in ('ray', 'mlflow') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_metric_error_names_the_metrics():
    trials = [trial("a", 88, 70), trial("b", 85, 75)]
    with pytest.raises(ValueError) as e:
        P.check_metrics("s", trials, ["val/nope"])
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("metric 'val/nope' not found in study 's'; metrics: epochs_completed,")
    assert "(and 2 per-corruption/severity/category keys)" in msg
    P.check_metrics("s", trials, [M.VAL_CLEAN_ACC])


def study_runs(trials):
    return {"study": "s", "experiment_id": "1", "parent": None, "trials": trials}


def outcomes_of(clean: int, corr: int, n: int = 100):
    """Per-image outcomes whose accuracies are ``clean`` and ``corr`` percent (fog and snow, severity 1)
    on both splits, as the ``trial`` records' metrics say."""
    from study.analysis.outcomes import Outcomes

    rng = np.random.default_rng(clean * 1000 + corr)
    arrays = {}
    for split in ("val", "test"):
        arrays[f"{split}/clean"] = rng.permutation(np.arange(n) < clean * n // 100)
        for name in ("fog", "snow"):
            arrays[f"{split}/{name}/1"] = rng.permutation(np.arange(n) < corr * n // 100)
    return Outcomes(arrays, {split: {"n": n, "source": "synthetic"} for split in ("val", "test")})


def test_report_renders_offline_self_contained(tmp_path):
    """The report from plain records (no MLflow): every figure inline, no URL; with per-image
    outcomes every table carries intervals, and "Which settings matter" ranks the searched settings."""
    import csv
    import re

    from study.cli.pareto import format_table
    from study.reporting.report import write_report
    from study.selection.choice import choose, pareto_rows

    trials = [
        trial("base", 90, 60, mode="free", baseline=True),
        trial("a", 88, 70, sigma=0.2),
        trial("b", 85, 75, mode="learned", sigma=0.4),
        trial("stopped", 99, 99, done=1),
    ]
    trials[2]["metrics"][M.FILTER_MEAN_ALPHA] = 0.7
    outcomes = {"base": outcomes_of(90, 60), "a": outcomes_of(88, 70), "b": outcomes_of(85, 75)}
    runs = {
        **study_runs(trials),
        "parent": {
            "run_id": "parent",
            "params": {"study.parameters": "frequency.mode,frequency.perturbation"},
        },
    }
    choice = choose(runs, P.parse_objectives(None), 3.0, outcomes=outcomes)
    assert choice.champion.run_id == "a"
    rows = pareto_rows(choice)
    assert [(r["run_id"], r["aliases"]) for r in rows] == [
        ("b", ["pareto-1"]),
        ("a", ["pareto-2", "champion"]),
        ("base", ["pareto-3"]),
    ]
    table = format_table(choice, rows)
    assert "excluded: 1 stopped early" in table and "champion: a (within 3 points" in table
    written = write_report(choice, tmp_path, alpha={"b": np.array([0.2, 0.9, 0.7])}, outcomes=outcomes)
    assert {p.name for p in written} >= {
        "report.html",
        "trials.csv",
        "pareto.csv",
        "per_corruption.csv",
        "pareto.png",
        "importance.png",
        "importance.csv",
    }
    page = (tmp_path / "report.html").read_text()
    assert not re.search(r"https?://", page)
    assert page.count('src="data:image/png;base64,') == 6  # five figures and the importance figure
    # Intervals in every table: the Pareto set, and the gains against the baseline.
    interval = r"\[[-+−]?\d+\.\d+, [-+−]?\d+\.\d+\]"
    pareto_table = page[page.index("<h2>Pareto set</h2>") : page.index("<h2>Figures</h2>")]
    gains_table = page[page.index("<h2>Against the baseline") : page.index("<h2>Which settings matter")]
    for table in (pareto_table, gains_table):
        assert len(re.findall(interval, table)) >= 3 * 4, table  # 3 trials x (2 accuracies + 2 gains)
    gain_a = choice.gains["a"]["test"].robustness_gain
    assert f"+10.00 [{gain_a.ci_low:+.2f}, {gain_a.ci_high:+.2f}]".replace("-", "−") in gains_table
    # The figures' captions say what the error bars are.
    assert page.count("Error bars:") == 4
    section = page[page.index("<h2>Which settings matter</h2>") :]
    assert section.count('src="data:image/png;base64,') == 1
    assert "Importance over 2 complete trials (the baseline excluded)" in section
    assert "fANOVA" in section and "ranks are rough" in section
    with open(tmp_path / "trials.csv") as f:
        by_run = {r["run_id"]: r for r in csv.DictReader(f)}
    assert float(by_run["a"]["robustness_gain_ci_low"]) == pytest.approx(gain_a.ci_low)
    lo, hi = (float(by_run["a"][f"{M.TEST_CLEAN_ACC}_ci_{end}"]) for end in ("low", "high"))
    assert lo < 88 < hi
    assert by_run["stopped"]["robustness_gain_ci_low"] == ""  # not complete: no interval
    with open(tmp_path / "importance.csv") as f:
        imp = list(csv.DictReader(f))
    assert {r["objective"] for r in imp} == {M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC}
    assert {r["parameter"] for r in imp} == {"frequency.mode", "frequency.perturbation"}


def test_no_complete_trial_gives_an_empty_set_not_a_crash(tmp_path):
    from study.reporting.figures_study import pareto_figure
    from study.selection.choice import choose, pareto_rows

    trials = [trial("x", 90, 60, done=1), trial("y", 80, 70, status="failed")]
    choice = choose(study_runs(trials), P.parse_objectives(None), None)
    assert pareto_rows(choice) == [] and choice.champion is None
    assert choice.result.excluded == {"stopped early": 1, "status failed": 1}
    pareto_figure(choice)  # draws the excluded trials only
    with pytest.raises(ValueError, match="has no trial runs"):
        choose(study_runs([]), P.parse_objectives(None), None)


def test_test_set_metrics_are_never_objectives():
    with pytest.raises(ValueError, match="test-set metric"):
        parse_objectives("val/clean_acc:max,test/corruption_acc:max")
