"""Races in what users read: each configuration's seeds and why its race ended, from its runs'
tags, validated as a configuration group is; and configurations of unequal seeds taken with
every seed they have (no truncation to the smallest R) in every statistic and table."""

from __future__ import annotations

import numpy as np
import pytest

from study import metrics as M
from study.metrics import BENCHMARK_CORRUPTIONS
from study.selection.configurations import group_configurations
from study.selection.race_outcomes import (
    FIXED,
    OPEN,
    REASONS,
    Race,
    race_of,
    race_text,
    seeds_line,
    seeds_text,
)
from tests.support import coin_outcomes


def run(run_id, config, replicate, *, reason=None, seeds=None, other=None, start=0, mode="fixed", **metrics):
    tags = {
        M.TAG_CONFIG_ID: config,
        M.TAG_REPLICATE: str(replicate),
        M.TAG_STATUS: "finished",
        M.TAG_TRIAL_ID: f"{config}-{replicate}",
    }
    for key, value in ((M.TAG_RACE_REASON, reason), (M.TAG_RACE_SEEDS, seeds), (M.TAG_RACE_OTHER, other)):
        if value is not None:
            tags[key] = str(value)
    return {
        "run_id": run_id,
        "status": "FINISHED",
        "start_time": start,
        "params": {"train.epochs": "2", "frequency.mode": mode, "seed": str(replicate)},
        "metrics": {M.EPOCHS_COMPLETED: 2.0, M.VAL_CLEAN_ACC: 50.0, M.VAL_CORRUPTION_ACC: 40.0, **metrics},
        "tags": tags,
    }


def config_runs(config, seeds, reason=None, other=None, **kw):
    tag_seeds = seeds if reason is not None else None
    return [
        run(f"{config}{k}", config, k, reason=reason, seeds=tag_seeds, other=other, start=k, **kw)
        for k in range(seeds)
    ]


def test_the_racer_reasons_are_the_ones_shown():
    from study.search import racing

    assert REASONS == racing.STOP_REASONS


def test_records_carry_the_seeds_and_reason_of_their_race():
    trials = config_runs("A", 2, "dominated", other="B") + config_runs("B", 5, "settled")
    trials += config_runs("C", 8, "max seeds") + config_runs("D", 3, "budget")
    records, _ = group_configurations(trials)
    got = {r["tags"][M.TAG_CONFIG_ID]: race_of(r) for r in records}
    assert got == {
        "A": Race(2, "dominated", "B"),
        "B": Race(5, "settled"),
        "C": Race(8, "max seeds"),
        "D": Race(3, "budget"),
    }
    assert [r["replicates"] for r in records] == [2, 5, 8, 3]  # every seed, unequal
    assert not any(r.get("inconsistent") for r in records)


def test_untagged_studies_are_fixed_and_a_racing_studys_untagged_configuration_is_open():
    plain, _ = group_configurations(config_runs("A", 3) + config_runs("B", 3))
    assert [race_of(r) for r in plain] == [Race(3, FIXED), Race(3, FIXED)]
    assert seeds_line(plain) == "seeds: fixed, 3 per configuration"
    single = {"run_id": "x", "status": "FINISHED", "params": {}, "metrics": {}, "tags": {}}
    assert race_of(single) == Race(1, FIXED) and seeds_line([single, single]) is None
    # A racing study: the configuration whose race the searcher has not ended yet is "open".
    raced, _ = group_configurations(config_runs("A", 2, "dominated", other="B") + config_runs("B", 3))
    assert [race_of(r).reason for r in raced] == ["dominated", OPEN]
    assert seeds_line(raced) == "seeds: raced, 2 to 3 per configuration (race ended: dominated 1, open 1)"


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            {M.TAG_RACE_REASON: "settled"},
            "runs A0 and A2 share freqstudy.config_id=A but disagree on the race tags "
            "(freqstudy.race.reason dominated vs settled); left out",
        ),
        (
            {M.TAG_RACE_SEEDS: "4"},
            "runs A0 and A2 share freqstudy.config_id=A but disagree on the race tags "
            "(freqstudy.race.seeds 3 vs 4); left out",
        ),
        (
            {M.TAG_RACE_REASON: None, M.TAG_RACE_SEEDS: None, M.TAG_RACE_OTHER: None},
            "runs A0 and A2 share freqstudy.config_id=A but disagree on the race tags "
            "(freqstudy.race.reason dominated vs (none); freqstudy.race.seeds 3 vs (none); "
            "freqstudy.race.other B vs (none)); left out",
        ),
    ],
)
def test_runs_that_disagree_on_their_race_leave_the_configuration_out_named(change, expected):
    from study.selection.choose import incomplete_reason

    trials = config_runs("A", 3, "dominated", other="B")
    for key, value in change.items():
        if value is None:
            del trials[2]["tags"][key]
        else:
            trials[2]["tags"][key] = value
    (record,), _ = group_configurations(trials)
    assert record["inconsistent"] == expected and "\n" not in expected
    assert incomplete_reason(record) == "inconsistent configuration"


def test_race_seeds_that_are_not_a_count_or_fewer_than_the_runs_are_named():
    trials = config_runs("A", 2, "settled")
    for t in trials:
        t["tags"][M.TAG_RACE_SEEDS] = "two"
    (record,), _ = group_configurations(trials)
    assert record["inconsistent"] == (
        "freqstudy.config_id=A: freqstudy.race.seeds='two' is not a whole number >= 1; left out"
    )
    trials = config_runs("A", 3, "settled")
    for t in trials:
        t["tags"][M.TAG_RACE_SEEDS] = "2"
    (record,), _ = group_configurations(trials)
    assert (
        record["inconsistent"]
        == "freqstudy.config_id=A: freqstudy.race.seeds=2 but 3 replicates were logged; left out"
    )


def test_a_crashed_attempt_without_tags_is_not_a_disagreement():
    trials = config_runs("A", 2, "settled")
    crashed = run("A1-try1", "A", 1, start=0.5)
    crashed["status"], crashed["tags"][M.TAG_STATUS] = "FAILED", "failed"
    (record,), members = group_configurations([*trials, crashed])
    assert "inconsistent" not in record and race_of(record) == Race(2, "settled")
    assert [t["run_id"] for t in members[record["run_id"]]] == ["A0", "A1"]


def test_race_texts():
    label = {"B": "fixed p=0.5 σ=0"}.get
    assert race_text(Race(2, "dominated", "B"), lambda c: label(c) or c) == "dominated by fixed p=0.5 σ=0"
    assert race_text(Race(2, "dominated", "Z"), lambda c: label(c) or c) == "dominated by Z"
    assert [race_text(Race(3, r)) for r in ("settled", "max seeds", "budget", FIXED)] == [
        "settled",
        "max seeds",
        "budget",
        FIXED,
    ]
    (record,), _ = group_configurations(config_runs("A", 3))
    assert seeds_text(record) == "3" and seeds_text({**record, "replicates_failed": 1}) == "3 (1 crashed)"


# -- unequal seeds through the statistics and the tables -------------------------------------


@pytest.fixture(scope="module")
def raced_study():
    """A racing study as trial records with per-image outcomes: the baseline (8 seeds, max
    seeds), B on the front (5, settled), A dominated by B (2 seeds); ``(study_runs, outcomes)``."""
    rng = np.random.default_rng(23)
    spec = [  # config, mode, p, sigma, seeds, reason, other, p clean, p corrupt
        ("base", "free", 0.5, 0.0, 8, "max seeds", None, 0.70, 0.50),
        ("B", "fixed", 0.5, 0.5, 5, "settled", None, 0.72, 0.60),
        ("A", "fixed", 0.25, 0.0, 2, "dominated", "B", 0.62, 0.45),
    ]
    trials, outs, start = [], {}, 0
    for config, mode, p, sigma, seeds, reason, other, pc, pk in spec:
        for k in range(seeds):
            o = coin_outcomes(rng, pc, pk, n=240, seed_sd=0.03)
            metrics = {}
            for split in ("val", "test"):
                metrics[f"{split}/clean_acc"] = 100.0 * o.arrays[f"{split}/clean"].mean()
                metrics[f"{split}/corruption_acc"] = 100.0 * np.mean(
                    [o.arrays[f"{split}/{c}/3"].mean() for c in BENCHMARK_CORRUPTIONS]
                )
            t = run(
                f"{config}{k}", config, k, reason=reason, seeds=seeds, other=other, start=start, mode=mode
            )
            t["metrics"].update(metrics)
            t["params"].update({"frequency.perturbation": str(sigma), "frequency.proportion": str(p)})
            if config == "base":
                t["tags"][M.TAG_BASELINE] = "true"
            trials.append(t)
            outs[t["run_id"]] = o
            start += 1
    study = {"study": "raced", "experiment_id": "1", "parent": None, "trials": trials}
    return study, outs


def test_unequal_seeds_reach_every_interval_whole(raced_study):
    """Every gain and accuracy interval uses every seed of each side: the estimate is the brute
    mean over all runs, the seeds per side are (8, R), and the interval is seedlevel's on the
    full (R, n) stacks."""
    from study.analysis import seedlevel as SL
    from study.analysis.paired import group_summary
    from study.analysis.statistics import select, statistics_of
    from study.reporting.results import results_rows
    from study.selection.choice import choose, pareto_rows
    from study.selection.choose import parse_objectives

    study, outs = raced_study
    choice = choose(study, parse_objectives(None), None, outcomes=outs)
    base = [outs[f"base{k}"] for k in range(8)]
    (stat,) = select(statistics_of(base[0].keys("test"), "test"), ["corruption_acc"])
    for config, seeds in (("A", 2), ("B", 5)):
        mine = [outs[f"{config}{k}"] for k in range(seeds)]
        gain = choice.gains[f"{config}0"]["test"][M.ROBUSTNESS_GAIN]
        assert gain.replicates == (8, seeds) and gain.scope == SL.CONFIGURATIONS
        brute = 100.0 * (
            np.mean([stat.scores(o).mean() for o in mine]) - np.mean([stat.scores(o).mean() for o in base])
        )
        assert gain.diff == pytest.approx(brute)
        ya, yb = np.stack([stat.scores(o) for o in base]), np.stack([stat.scores(o) for o in mine])
        iv = SL.configuration_difference(ya, yb)
        assert (gain.ci_low, gain.ci_high) == pytest.approx((iv.ci_low, iv.ci_high))
        own = group_summary(mine, "test", statistics=["corruption_acc"])["corruption_acc"]
        assert own.replicates == seeds
    rows = {r["run_id"]: r for r in pareto_rows(choice)}
    assert rows["B0"]["seeds"] == 5 and rows["B0"]["race_reason"] == "settled"
    records = [c.trial for c in choice.result.candidates]
    groups = {rid: [outs[t["run_id"]] for t in runs] for rid, runs in choice.members.items()}
    table = {r["run_id"]: r for r in results_rows(records, groups, "base0", gains=choice.gains)}
    assert table["A0"]["replicates"] == 2 and table["base0"]["replicates"] == 8


def test_pareto_table_and_results_md_show_seeds_and_why(raced_study):
    from study.cli.pareto import format_table
    from study.cli.report import race_paragraph
    from study.reporting.results import markdown_table, results_rows
    from study.selection.choice import choose, pareto_rows
    from study.selection.choose import parse_objectives

    study, outs = raced_study
    choice = choose(study, parse_objectives(None), None, outcomes=outs)
    text = format_table(choice, pareto_rows(choice))
    head = text.splitlines()[0]
    assert "seeds" in head and "race ended" in head
    assert "seeds: raced, 2 to 8 per configuration (race ended: dominated 1, settled 1, max seeds 1)" in text
    records = [c.trial for c in choice.result.candidates]
    groups = {rid: [outs[t["run_id"]] for t in runs] for rid, runs in choice.members.items()}
    rows = results_rows(records, groups, "base0", gains=choice.gains)
    md = markdown_table(rows, "test")
    assert md.splitlines()[0].startswith("| configuration | seeds | race ended | intervals about |")
    assert "| fixed p=0.25 σ=0 | 2 | dominated by fixed p=0.5 σ=0.5 | configurations (8v2 seeds" in md
    assert "| free σ=0 (baseline) | 8 | max seeds | configurations |" in md
    assert race_paragraph(records)[0].startswith("Seeds: raced, 2 to 8 per configuration")


def test_registered_versions_carry_their_race(raced_study):
    from study.cli.pareto import registrations
    from study.selection.choice import choose, pareto_rows
    from study.selection.choose import parse_objectives

    study, outs = raced_study
    choice = choose(study, parse_objectives(None), None, outcomes=outs)
    regs = {r.run_id: r.tags for r in registrations(choice, pareto_rows(choice))}
    assert regs["B0"]["seeds"] == 5 and regs["B0"]["race_reason"] == "settled"
    assert regs["base0"]["seeds"] == 8 and regs["base0"]["race_reason"] == "max seeds"


def test_every_run_of_trials_csv_says_its_configurations_race(raced_study):
    from study.reporting.rows import configuration_rows, trial_rows
    from study.selection.choice import choose
    from study.selection.choose import parse_objectives

    study, outs = raced_study
    choice = choose(study, parse_objectives(None), None, outcomes=outs)
    got = {(r["run_id"][:-1], r["seeds"], r["race_reason"]) for r in trial_rows(choice)}
    assert got == {("base", 8, "max seeds"), ("B", 5, "settled"), ("A", 2, "dominated")}
    rows = {r["run_id"]: r for r in configuration_rows(choice)}
    assert (rows["A0"]["seeds"], rows["A0"]["race_other"], rows["A0"]["replicates"]) == (2, "B", 2)
