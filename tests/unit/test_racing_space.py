"""Racing as a space file says it (``replicates: {min, max}``, ``max_seeds``), as a resume
keeps it, and as the console and the runs' tags show it: one-line errors naming the
key; the study's settings bring racing back on ``--resume``; race lines follow the
trial line that led to them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from study import metrics as M
from study.errors import FieldError
from study.search import console as C
from study.search.race_reporter import RaceReporter, race_tags
from study.search.races import RaceBook, race_book
from study.search.settings import check_resume, load_settings, save_settings, settings_for
from study.search.space_parser import parse_space
from study.search.spaces import BASELINE_FLAG
from tests.support import SimulatedTrial, simulated_study

REPO = Path(__file__).resolve().parents[2]
SMOKE = (REPO / "search_spaces" / "smoke.yaml").read_text()


def _parse(extra: str):
    return parse_space(SMOKE + extra, source="s.yaml")


def test_replicates_min_max_and_max_seeds_parse():
    s = _parse("replicates: {min: 2, max: 6}\nmax_seeds: 40\n")
    assert (s.racing, s.min_seeds, s.replicates, s.max_seeds) == (True, 2, 6, 40)
    assert s.planned_seeds(6) == 12 and s.planned_seeds(30) == 40
    fixed = _parse("replicates: {min: 3, max: 3}\n")  # min = max: fixed replicates
    assert (fixed.racing, fixed.min_seeds, fixed.replicates) == (False, 3, 3)
    plain = _parse("replicates: 4\n")
    assert (plain.racing, plain.min_seeds, plain.replicates, plain.max_seeds) == (False, 4, 4, None)


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("replicates: {min: 1, max: 4}\n", "replicates.min: 1 is not allowed; allowed an integer in 2..100"),
        ("replicates: {min: 2}\n", "replicates: racing needs both min and max seeds; max is missing"),
        ("replicates: {min: 5, max: 3}\n", "replicates.max: 3 is below min 5; allowed max >= min"),
        ("replicates: {min: 2, max: 4, confidence: 0.9}\n", "replicates.confidence: unknown field"),
        ("replicates: {min: 2, max: true}\n", "replicates.max: True is not allowed"),
        (
            "replicates: {min: 2, max: 4}\nmax_seeds: 1\n",
            "max_seeds: 1 is not allowed; allowed an integer in 2..",
        ),
        ("replicates: 3\nmax_seeds: two\n", "max_seeds: 'two' is not allowed"),
    ],
)
def test_bad_racing_settings_fail_in_one_line_naming_the_key(extra, expected):
    with pytest.raises(ValueError) as e:
        _parse(extra)
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("space s.yaml line ")


def test_racing_needs_objectives_with_per_image_validation_scores():
    text = SMOKE.replace("val/corruption_acc", "val/severity/3") + "replicates: {min: 2, max: 4}\n"
    with pytest.raises(ValueError, match=r"objectives\.1\.metric: 'val/severity/3' has no per-image score"):
        parse_space(text, source="s.yaml")
    parse_space(text.replace("replicates: {min: 2, max: 4}", "replicates: 4"), source="s.yaml")


def test_resume_keeps_racing_and_refuses_a_different_race(tmp_path):
    space_file = tmp_path / "race.yaml"
    space_file.write_text(SMOKE + "replicates: {min: 2, max: 5}\nmax_seeds: 30\n")
    from study.search.space_parser import load_space

    space = load_space(space_file)
    save_settings(
        str(tmp_path),
        settings_for(
            space,
            num_trials=6,
            max_concurrent=2,
            cpus=1,
            gpus=0,
            max_failures=2,
            data_dir=None,
            code_version="x",
        ),
    )
    stored = load_settings(str(tmp_path))
    again = check_resume(stored, space=None, overrides={}, counts={}, data_dir=None)
    assert (again.min_replicates, again.replicates, again.max_seeds) == (2, 5, 30)
    other = tmp_path / "other.yaml"
    other.write_text(SMOKE + "replicates: {min: 2, max: 5}\nmax_seeds: 31\n")
    with pytest.raises(FieldError, match="its max_seeds differ from the study's"):
        check_resume(stored, space=load_space(other), overrides={}, counts={}, data_dir=None)


def test_race_lines_follow_the_trial_line_and_tags_name_the_outcome(monkeypatch):
    _, _, ys = simulated_study(0, configurations=3, seeds=4)
    trial = SimulatedTrial(ys, [])
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    console = C.StudyConsole("s", [M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC], 1, 3, live=False)
    reporter = RaceReporter(console, study="s", tracking_uri=None)
    space = _parse("replicates: {min: 2, max: 4}\n")
    book = race_book(space, num_trials=1, max_concurrent=1)  # the baseline alone: decided at once
    configs = {}

    def ask(trial_id):
        return {BASELINE_FLAG: not configs, "train.lr": 0.05}

    for i in range(2):
        configs[f"t{i}"] = book.suggest(f"t{i}", ask)
    console.started("t0", configs["t0"])
    reporter(book.end_seed("t0", trial.result(0, 0)), book)
    console.ended("t0", {})
    console.started("t1", configs["t1"])
    events = book.end_seed("t1", trial.result(0, 1))
    reporter(events, book)
    assert events and out.getvalue().count("race t0 baseline") == 0  # waits for the trial's line
    console.ended("t1", {})
    lines = out.getvalue().splitlines()
    assert lines[-2].startswith("trial t1 finished")
    assert lines[-1].startswith("race t0 baseline: ")
    assert ("seed 3 added (" in lines[-1]) or (
        "ended after 2 seeds (" in lines[-1] and "told val/" in lines[-1]
    )
    assert book.untagged == []  # no tracking: nothing to tag
    race = book.races[0]
    race.open, race.reason, race.other = False, "dominated", "abc"
    assert race_tags(race) == {
        M.TAG_RACE_REASON: "dominated",
        M.TAG_RACE_SEEDS: str(race.started),
        M.TAG_RACE_OTHER: "abc",
    }
    assert RaceBook.from_dict(book.to_dict()).to_dict() == book.to_dict()


def test_stop_and_seed_lines_read_as_documented():
    assert C.seed_line("ab12", "fixed p=0.5", 3, "front membership open", "cd34 baseline") == (
        "race ab12 fixed p=0.5: seed 3 added (front membership open vs cd34 baseline)"
    )
    line = C.stop_line("ab12", "fixed p=0.5", 4, "dominated", "cd34 baseline", {"val/a": 51.234}, ["val/a"])
    assert line == "race ab12 fixed p=0.5: ended after 4 seeds (dominated by cd34 baseline); told val/a 51.23"
    assert C.stop_line("ab12", "x", 2, "max seeds", None, None, ["val/a"]).endswith("told as failed")


def test_a_race_that_waits_as_dominated_gets_a_console_line_naming_its_dominator():
    from study.search.races import Event, Race
    from study.search.racing import DOMINATED, WAIT

    book = race_book(_parse("replicates: {min: 2, max: 4}\n"), num_trials=2, max_concurrent=1)
    front = Race("aaaa1111", {"train.lr": 0.05}, seeds={"t0": 0, "t1": 1})
    low = Race("bbbb2222", {"train.lr": 0.4}, seeds={"t2": 0, "t3": 1})
    book.races += [front, low]
    reporter = RaceReporter(None, study="s", tracking_uri=None)
    line = reporter.line(Event(WAIT, low, DOMINATED, "aaaa1111", 2), book)
    assert line.startswith("race bbbb2222 ")
    assert "waits at 2 seeds (dominated by aaaa1111" in line and line.endswith("still racing)")
