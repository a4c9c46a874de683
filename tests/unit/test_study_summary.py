"""The end-of-study summary (study.search.summary): its 'best' lines are configuration means
over the replicates, what Optuna is told, under the settings' own names."""

from __future__ import annotations

from study.search.space_parser import load_space
from study.search.summary import StudySummary, format_summary
from study.search.trials import CONFIG_ID_KEY, REPLICATE_KEY


def trial(k: int, cfg: str, corr: float, clean: float, *, status="finished", p=0.5, baseline=False):
    config = {} if baseline else {"frequency.mode": "fixed", "frequency.proportion": p}
    config.update({REPLICATE_KEY: k, **({CONFIG_ID_KEY: cfg} if k else {})})
    return {
        "trial_id": f"{cfg}_{k}",
        "status": status,
        "baseline": baseline,
        "config": config,
        "metrics": {
            "val/corruption_acc": corr,
            "val/clean_acc": clean,
            "run_id": f"run-{cfg}-{k}",
        },
        "full_budget": status == "finished",
        "error": None,
        "path": "",
    }


def test_best_lines_are_configuration_means_with_user_facing_names():
    space = load_space("smoke")
    # A: one lucky seed (70) but a mean of 50; B: steady 60. Optuna is told the means: B is best.
    a = [trial(k, "A", v, 80.0, p=0.25) for k, v in enumerate((70.0, 40.0, 40.0))]
    b = [trial(k, "B", 60.0, 82.0, p=0.75) for k in range(3)]
    # C would be best, but one seed diverged: a configuration with a diverged seed is not chosen.
    c = [trial(0, "C", 90.0, 90.0, p=1.0), trial(1, "C", 10.0, 10.0, p=1.0, status="diverged")]
    summary = StudySummary(study="s", experiment_path="/x", tracking_uri=None, parent_run_id=None)
    summary.trials = a + b + c
    text = format_summary(summary, space)
    line = next(x for x in text.splitlines() if "best val/corruption_acc" in x)
    assert ": 60.00 (mean of 3 seeds)" in line, line
    assert "frequency.proportion=0.75" in line and "run-B-0, run-B-1, run-B-2" in line, line
    assert REPLICATE_KEY not in text and CONFIG_ID_KEY not in text, text
    clean = next(x for x in text.splitlines() if "best val/clean_acc" in x)
    assert ": 82.00 (mean of 3 seeds)" in clean, clean


def test_a_single_seed_study_shows_its_trial():
    space = load_space("smoke")
    summary = StudySummary(study="s", experiment_path="/x", tracking_uri=None, parent_run_id=None)
    summary.trials = [trial(0, "A", 55.0, 70.0, baseline=True), trial(0, "B", 50.0, 75.0)]
    text = format_summary(summary, space)
    line = next(x for x in text.splitlines() if "best val/corruption_acc" in x)
    assert ": 55.00  [baseline]  run run-A-0" in line, line


def test_an_interrupted_study_counts_the_trials_unaccounted_for():
    space = load_space("smoke")
    summary = StudySummary(study="s", experiment_path="/x", tracking_uri=None, parent_run_id=None)
    summary.trials = [trial(0, "A", 55.0, 70.0), trial(0, "B", 50.0, 75.0, status="unknown")]
    summary.planned, summary.interrupted = 5, True
    text = format_summary(summary, space)
    assert "  interrupted: 4 of 5 trials unaccounted for" in text, text
    summary.interrupted = False
    assert "interrupted" not in format_summary(summary, space)


def test_the_interrupt_watch_sees_a_handler_that_put_its_predecessor_back():
    """Tune's handler, in miniature: installed over ours, it restores ours on SIGINT only."""
    import os
    import signal

    from study.search.interrupt import watch_interrupt

    def tune_like_run(send: bool) -> None:
        found = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, lambda *_: signal.signal(signal.SIGINT, found))
        if send:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    for send in (False, True):
        with watch_interrupt() as seen:
            tune_like_run(send)
        assert seen.interrupted is send
        assert signal.getsignal(signal.SIGINT) is before


def test_the_resume_command_repeats_the_studys_flags_quoted():
    import argparse

    from study.cli.run import add_arguments, resume_command

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--space", "my space.yaml", "--study", "s", "--num-trials", "4", "--set", "a.b=1"])
    assert resume_command(args) == ("freqstudy run --space 'my space.yaml' --study s --set a.b=1 --resume")
