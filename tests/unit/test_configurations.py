"""Replicates taken together: configuration records from trial records, against brute force."""

from __future__ import annotations

import math

import pytest

from study import metrics as M
from study.selection.configurations import group_configurations


def run(run_id, config, replicate, status="FINISHED", tag_status="finished", start=0, **metrics):
    return {
        "run_id": run_id,
        "status": status,
        "start_time": start,
        "params": {"train.epochs": "2", "frequency.mode": "fixed"},
        "metrics": {M.EPOCHS_COMPLETED: 2.0, **metrics},
        "tags": {M.TAG_CONFIG_ID: config, M.TAG_REPLICATE: str(replicate), M.TAG_STATUS: tag_status},
    }


def test_means_over_replicates_and_one_record_per_configuration():
    trials = [
        run("a0", "A", 0, start=1, **{M.VAL_CLEAN_ACC: 50.0, M.VAL_CORRUPTION_ACC: 40.0}),
        run("a1", "A", 1, start=2, **{M.VAL_CLEAN_ACC: 54.0, M.VAL_CORRUPTION_ACC: 44.0}),
        run("b0", "B", 0, start=3, **{M.VAL_CLEAN_ACC: 60.0, M.VAL_CORRUPTION_ACC: 30.0}),
    ]
    records, members = group_configurations(trials)
    assert [r["run_id"] for r in records] == ["a0", "b0"]
    a = records[0]
    assert a["metrics"][M.VAL_CLEAN_ACC] == 52.0 and a["metrics"][M.VAL_CORRUPTION_ACC] == 42.0
    assert a["replicates"] == 2 and a["members"] == ["a0", "a1"] and a["replicates_failed"] == 0
    assert [t["run_id"] for t in members["a0"]] == ["a0", "a1"]
    assert records[1]["replicates"] == 1


def test_a_crashed_replicate_is_left_out_and_counted_a_retried_one_counts_once():
    trials = [
        run("a0", "A", 0, **{M.VAL_CLEAN_ACC: 50.0}),
        run("a1-try1", "A", 1, status="FAILED", tag_status="failed", start=1),
        run("a1-try2", "A", 1, start=2, **{M.VAL_CLEAN_ACC: 56.0}),
        run("a2", "A", 2, status="FAILED", tag_status="failed", start=3),
    ]
    (record,), members = group_configurations(trials)
    assert record["members"] == ["a0", "a1-try2"] and record["replicates_failed"] == 1
    assert record["metrics"][M.VAL_CLEAN_ACC] == 53.0 and record["tags"][M.TAG_STATUS] == "finished"


def test_a_diverged_replicate_makes_the_configuration_incomplete():
    from study.selection.choose import incomplete_reason

    trials = [
        run("a0", "A", 0, **{M.VAL_CLEAN_ACC: 50.0}),
        run("a1", "A", 1, status="FAILED", tag_status="diverged"),
    ]
    (record,), _ = group_configurations(trials)
    assert record["tags"][M.TAG_STATUS] == "diverged" and record["replicates_failed"] == 0
    assert incomplete_reason(record) is not None


def test_untagged_trials_are_their_own_configurations_unchanged():
    plain = {"run_id": "x", "status": "FINISHED", "params": {}, "metrics": {M.VAL_CLEAN_ACC: 1.0}, "tags": {}}
    records, members = group_configurations([plain])
    assert records == [plain] and records[0] is plain and members == {"x": [plain]}


@pytest.mark.parametrize("seed", range(5))
def test_record_metrics_equal_brute_force_means(seed):
    import random

    rng = random.Random(seed)
    trials, expected = [], {}
    for c in "ABCD":
        values = [rng.uniform(0, 100) for _ in range(rng.randint(1, 4))]
        expected[c] = sum(values) / len(values)
        trials += [
            run(f"{c}{i}", c, i, start=rng.random(), **{M.VAL_CLEAN_ACC: v}) for i, v in enumerate(values)
        ]
    rng.shuffle(trials)
    records, _ = group_configurations(trials)
    got = {r["tags"][M.TAG_CONFIG_ID]: r["metrics"][M.VAL_CLEAN_ACC] for r in records}
    assert got.keys() == expected.keys()
    assert all(math.isclose(got[c], expected[c]) for c in got)


def test_a_configuration_with_seeds_still_running_is_not_complete():
    from study.selection.choose import incomplete_reason

    trials = [
        run("a0", "A", 0, **{M.VAL_CLEAN_ACC: 50.0}),
        run("a1", "A", 1, status="RUNNING", tag_status="running"),
    ]
    (record,), _ = group_configurations(trials)
    assert record["tags"][M.TAG_STATUS] == "running" and record["replicates_failed"] == 0
    assert incomplete_reason(record) is not None


def test_learned_forms_never_share_a_configuration_and_are_named():
    """A study resumed across the learned-form change: seeds logged with the earlier (untagged,
    band-gains) form and with the energy-share form are two configurations, each named."""
    from models.stem import LEARNED_FORM, LEGACY_LEARNED_FORM
    from study.reporting.results import label_of
    from study.selection.choose import frequency_of

    def learned(run_id, replicate, form):
        t = run(run_id, "L", replicate, **{M.VAL_CLEAN_ACC: 50.0 + replicate})
        t["params"]["frequency.mode"] = "learned"
        if form is not None:
            t["tags"][M.TAG_LEARNED_FORM] = form
        return t

    old, new = learned("l0", 0, None), learned("l1", 1, LEARNED_FORM)
    records, _ = group_configurations([old, new, run("f0", "F", 0), run("f1", "F", 1)])
    assert sorted(r["members"] if "members" in r else [r["run_id"]] for r in records) == [
        ["f0", "f1"],
        ["l0"],
        ["l1"],
    ]
    assert M.LEGACY_LEARNED_FORM == LEGACY_LEARNED_FORM != LEARNED_FORM == "energy-share"
    assert (M.learned_form_of(old), M.learned_form_of(new), M.learned_form_of(run("f", "F", 0))) == (
        "band-gains",
        "energy-share",
        None,
    )
    assert (
        frequency_of(old)["learned_form"] == "band-gains"
        and frequency_of(run("f", "F", 0))["learned_form"] == ""
    )
    assert "band-gains" in label_of(old) and "band-gains" not in label_of(new)
    from study.cli.compare import form_lines

    forms = {"a": M.learned_form_of(old), "b": M.learned_form_of(new)}
    assert form_lines(forms) == [
        "A is learned mode, form band-gains (the earlier form: band gains on a free kernel, "
        "which left alpha inert)",
        "B is learned mode, form energy-share",
    ]
    assert form_lines({"a": None, "b": None}) == []


def tagged(run_id, config, replicate, *, start=0, trial=None, **params):
    t = run(run_id, config, replicate, start=start, **{M.VAL_CLEAN_ACC: 50.0, M.VAL_CORRUPTION_ACC: 40.0})
    t["params"] = {**t["params"], "seed": str(replicate), **params}
    t["tags"][M.TAG_TRIAL_ID] = trial or run_id
    return t


def test_runs_of_another_configuration_under_a_groups_id_leave_the_group_out_named():
    from study.selection.choose import incomplete_reason

    trials = [tagged("a0", "A", 0), tagged("a1", "A", 1, start=1)]
    # A run of another configuration (free mode) tagged with A's id.
    trials += [tagged("x0", "A", 2, start=2, **{"frequency.mode": "free"})]
    (record,), _ = group_configurations(trials)
    assert incomplete_reason(record) == "inconsistent configuration"
    assert "\n" not in record["inconsistent"]
    assert (
        "a0 and x0 share freqstudy.config_id=A but differ in frequency.mode (fixed vs free)"
        in (record["inconsistent"])
    )


def test_per_run_params_and_seeds_of_replicates_are_not_inconsistencies():
    trials = [
        tagged("a0", "A", 0, **{"tracking.run_name": "x #0", "data.dir": "/n1"}),
        tagged("a1", "A", 1, start=1, **{"tracking.run_name": "x #1", "data.dir": "/n2"}),
    ]
    (record,), _ = group_configurations(trials)
    assert "inconsistent" not in record and record["replicates"] == 2


def test_a_replicate_whose_seed_is_not_base_plus_index_is_named():
    trials = [tagged("a0", "A", 0), tagged("a1", "A", 1, start=1, seed="7")]
    (record,), _ = group_configurations(trials)
    assert "not a base seed (seed - replicate: 0 vs 6)" in record["inconsistent"]


def test_duplicate_replicate_numbers_are_refused_not_replaced():
    trials = [tagged("a0", "A", 0), tagged("a1", "A", 1, start=1), tagged("a1bis", "A", 1, start=2)]
    (record,), _ = group_configurations(trials)
    assert (
        record["inconsistent"] == "runs a1 and a1bis are both replicate 1 of freqstudy.config_id=A; left out"
    )
    # Two ended attempts of the same Tune trial (a resumed trial) stay one replicate.
    trials[2]["tags"][M.TAG_TRIAL_ID] = "a1"
    (record,), _ = group_configurations(trials)
    assert "inconsistent" not in record


def test_a_baseline_tag_on_a_fixed_mode_configuration_is_not_used_and_named():
    from study.selection.choice import choose
    from study.selection.choose import parse_objectives

    def plain(run_id, mode, start, baseline):
        t = tagged(
            run_id, run_id, 0, start=start, **{"frequency.mode": mode, "frequency.perturbation": "0.0"}
        )
        if baseline:
            t["tags"][M.TAG_BASELINE] = "true"
        return t

    trials = [plain("real", "free", 0, False), plain("moved", "fixed", 1, True)]
    choice = choose({"study": "s", "parent": None, "trials": trials}, parse_objectives(None), None)
    assert choice.baseline["run_id"] == "real"
    (line,) = choice.problems
    assert "run moved is tagged freqstudy.baseline=true but is mode fixed" in line
    assert line.endswith("the baseline is run real"), line
