"""The results tables: every number is the analysis module's, formatted with its interval."""

from __future__ import annotations

import numpy as np

from study.analysis.outcomes import Outcomes
from study.analysis.paired import compare_groups, group_summary
from study.metrics import BENCHMARK_CORRUPTIONS
from study.reporting.results import category_table, label_of, markdown_table, results_rows


def outcomes(rng, p_clean, p_corrupt, n=300):
    arrays = {"test/clean": rng.random(n) < p_clean, "val/clean": rng.random(n) < p_clean}
    for split in ("test", "val"):
        for c in BENCHMARK_CORRUPTIONS:
            arrays[f"{split}/{c}/3"] = rng.random(n) < p_corrupt
    fp = {
        "source": "x",
        "n": n,
        "corruption_limit": 0,
        "corrupted_copy": "generated-v2",
        "corruption_seed": 0,
    }
    return Outcomes(arrays=arrays, fingerprints={"test": fp, "val": fp})


def record(run_id, mode, sigma, p=None):
    params = {"frequency.mode": mode, "frequency.perturbation": str(sigma)}
    if p is not None:
        params["frequency.proportion"] = str(p)
    return {"run_id": run_id, "params": params}


def test_rows_and_tables_carry_the_analysis_numbers():
    rng = np.random.default_rng(0)
    base = [outcomes(rng, 0.6, 0.5) for _ in range(3)]
    better = [outcomes(rng, 0.6, 0.6) for _ in range(3)]
    records = [record("b", "free", 0.0), record("x", "fixed", 0.5, p=0.25)]
    rows = results_rows(records, {"b": base, "x": better}, "b")
    assert [r["label"] for r in rows] == ["free σ=0", "fixed p=0.25 σ=0.5"] == [label_of(r) for r in records]
    x = next(r for r in rows if r["run_id"] == "x")
    direct = {d.name: d for d in compare_groups(base, better, "test", statistics=["corruption_acc"])}
    assert x["test_gains"]["robustness_gain"].ci_low == direct["corruption_acc"].ci_low
    own = group_summary(better, "test", statistics=["clean_acc"])["clean_acc"]
    assert x["test"]["clean_acc"] == (own.mean, own.ci_low, own.ci_high)
    table = markdown_table(rows, "test")
    g = x["test_gains"]["robustness_gain"]
    assert f"{g.diff:+.2f} [{g.ci_low:+.2f}, {g.ci_high:+.2f}]" in table
    assert table.splitlines()[2].startswith("| free σ=0 (baseline) | 3 |")  # the baseline first
    assert "weather gain" in category_table(rows, "val")
