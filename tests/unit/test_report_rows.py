"""The report's per-trial rows (study.reporting.rows) on a replicated study: a replicate is
excluded only for a reason of its own or of its configuration, named."""

from __future__ import annotations

from study import metrics as M
from study.reporting.rows import trial_rows
from study.selection.choice import choose
from study.selection.choose import parse_objectives


def run(run_id, config, replicate, clean, corr, *, start=0, tag_status="finished", status="FINISHED"):
    return {
        "run_id": run_id,
        "name": run_id,
        "status": status,
        "start_time": start,
        "params": {"train.epochs": "2", "frequency.mode": "free", "frequency.perturbation": "0.0"},
        "metrics": {M.EPOCHS_COMPLETED: 2.0, M.VAL_CLEAN_ACC: clean, M.VAL_CORRUPTION_ACC: corr},
        "tags": {M.TAG_CONFIG_ID: config, M.TAG_REPLICATE: str(replicate), M.TAG_STATUS: tag_status},
    }


def test_finite_replicates_of_a_ranked_configuration_are_not_excluded():
    trials = [run(f"a{k}", "A", k, 50.0 + k, 40.0 + k, start=k) for k in range(3)]
    trials += [run(f"b{k}", "B", k, 60.0 - k, 30.0 + k, start=10 + k) for k in range(3)]
    choice = choose({"study": "s", "parent": None, "trials": trials}, parse_objectives(None), None)
    rows = {r["run_id"]: r for r in trial_rows(choice)}
    assert {rid: r["excluded"] for rid, r in rows.items()} == {rid: "" for rid in rows}


def test_a_replicate_is_excluded_for_its_configuration_with_the_reason_named():
    trials = [
        run("a0", "A", 0, 50.0, 40.0),
        run("a1", "A", 1, 52.0, 41.0, start=1),
        run("a2", "A", 2, 1.0, 1.0, start=2, tag_status="diverged", status="FAILED"),
        run("b0", "B", 0, 60.0, 30.0, start=3),
    ]
    choice = choose({"study": "s", "parent": None, "trials": trials}, parse_objectives(None), None)
    rows = {r["run_id"]: r for r in trial_rows(choice)}
    assert rows["b0"]["excluded"] == ""
    assert rows["a2"]["excluded"] == "run failed"
    # Its finished siblings are left out because a seed diverged: said so, not "NaN objective".
    assert rows["a0"]["excluded"] == rows["a1"]["excluded"] == "configuration: status diverged", rows
