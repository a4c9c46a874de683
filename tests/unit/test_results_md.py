"""The results tables: every number is the analysis module's, formatted with its interval."""

from __future__ import annotations

import numpy as np

from study.analysis.outcomes import Outcomes
from study.analysis.paired import compare_groups, group_summary
from study.reporting.results import category_table, label_of, markdown_table, results_rows
from tests.support import coin_outcomes


def record(run_id, mode, sigma, p=None):
    params = {"frequency.mode": mode, "frequency.perturbation": str(sigma)}
    if p is not None:
        params["frequency.proportion"] = str(p)
    return {"run_id": run_id, "params": params}


def test_rows_and_tables_carry_the_analysis_numbers():
    rng = np.random.default_rng(0)
    base = [coin_outcomes(rng, 0.6, 0.5, n=300) for _ in range(3)]
    better = [coin_outcomes(rng, 0.6, 0.6, n=300) for _ in range(3)]
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


def test_scope_multiplicity_ranges_and_p_resolution():
    """Issue 22's table in results.md: replicated rows say their seeds and seed share, single-seed
    rows say they are about two trained networks; p adj (Holm) >= p; a tiny p prints as '≤ 0.001';
    accuracy intervals stay in [0, 100]."""
    from study.analysis.multiplicity import PRIMARY, SECONDARY

    rng = np.random.default_rng(1)
    base = [coin_outcomes(rng, 0.02, 0.5, n=300) for _ in range(3)]  # clean accuracy near 0: a range test
    much = [coin_outcomes(rng, 0.02, 0.8, n=300) for _ in range(3)]
    same = [coin_outcomes(rng, 0.02, 0.5, n=300) for _ in range(3)]
    records = [record("b", "free", 0.0), record("x", "fixed", 0.5, p=0.25), record("y", "fixed", 0.5, p=0.5)]
    rows = results_rows(records, {"b": base, "x": much, "y": same}, "b")
    table = markdown_table(rows, "test")
    assert "configurations (3v3 seeds" in table and "p adj (Holm)" in table
    x = next(r for r in rows if r["run_id"] == "x")
    g = x["test_gains"]["robustness_gain"]
    assert g.family == PRIMARY and g.p_value <= g.p_adjusted <= 1 and g.scope == "configurations"
    assert "≤ 0.001" in table and "<0.001" not in table
    for r in rows:
        for mean, lo, hi in r["test"].values():
            assert 0.0 <= lo <= mean <= hi <= 100.0
        for d in r["test_diff"].values():
            if r["baseline"]:  # against itself: exactly 0, not a member of any family
                assert (d.diff, d.ci_low, d.ci_high, d.family) == (0.0, 0.0, 0.0, None)
                continue
            assert d.family == SECONDARY and d.p_adjusted >= d.p_value
    assert "BH" in category_table(rows, "test")
    single = results_rows(records[:2], {"b": base[:1], "x": much[:1]}, "b")
    assert "two trained networks (1 seed)" in markdown_table(single, "test")


def test_clean_beside_cifar10c_on_the_same_images():
    """eval.corruption_limit = L < N: the clean column beside CIFAR-10-C is on the first L images."""
    from study.analysis.seedlevel import configuration_level

    rng = np.random.default_rng(4)
    n, limit = 300, 100

    def limited(p_clean, p_corrupt):
        o = coin_outcomes(rng, p_clean, p_corrupt, n=n)
        arrays = {k: (v.copy() if k.endswith("/clean") else v[:limit]) for k, v in o.arrays.items()}
        arrays["test/clean"][:limit] = rng.random(limit) < 0.95  # the first L images: easier
        return Outcomes(
            arrays=arrays,
            fingerprints={s: {**f, "corruption_limit": limit} for s, f in o.fingerprints.items()},
        )

    base = [limited(0.5, 0.5) for _ in range(2)]
    records = [record("b", "free", 0.0)]
    (row,) = results_rows(records, {"b": base}, "b")
    y = np.stack([o.arrays["test/clean"][:limit] for o in base]).astype(float)
    assert row["test_clean_images"] == limit and row["test"]["clean_acc"][0] == 100 * y.mean()
    iv = configuration_level(y)
    assert row["test"]["clean_acc"] == (iv.estimate, iv.ci_low, iv.ci_high)
    assert f"same source images ({limit} per run" in markdown_table([row], "test")
