"""A study driver stopped the way ``ray job stop`` stops it, with real Ray, a real ``mlflow
server`` and the real CIFAR-10 subset (issue 24, defects 3, 4 and 8). One study serves the
three tests: a driver started with ``--set`` values and trial counts is held still (SIGSTOP)
once its first trial ended, a second driver is started with the very same command plus
``--resume``, the first is let go and sent SIGTERM. Then:

- the second driver was refused in one line naming the first (the old code accepted it, and
  both ran the same configurations);
- SIGTERM ended the first with its own one line, no stack dump and no RUNNING run (the old
  code printed Ray's SIGTERM stack dump and left the parent and trial runs RUNNING);
- a resume that disagrees with the study is refused in one line naming the difference, and
  ``--resume`` alone runs the study's own settings to the end (the old code ran the resumed
  trials with whatever it was given, in the same study).

Each test fails on its own on the old code; the drivers are started in their own sessions
and stopped by process group, so nothing they started outlives the module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from study import metrics as M
from study.tracking.study_runs import find_study_run
from tests.cli_runner import freqstudy_command, no_traceback
from tests.support import (
    TINY_STUDY,
    count_study_runs,
    ended_trials,
    optuna_study,
    set_flags,
    trial_runs,
    tune_states,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
STUDY = "stopped"
TRIALS = 3  # the baseline ends before the stop; the resume runs the other two


def _end_group(proc: subprocess.Popen) -> None:
    """Stop a driver started in its own session, with what it started there (its local Ray)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def _driver(args: list[str], timeout: float) -> SimpleNamespace:
    """``freqstudy run ARGS``: its exit code (None: still running after ``timeout`` s, then
    stopped), stdout and stderr."""
    cmd = freqstudy_command("run", *args)
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end_group(proc)
        out, err = proc.communicate()
        return SimpleNamespace(returncode=None, stdout=out, stderr=err)
    no_traceback(err, ["run", *args])
    return SimpleNamespace(returncode=proc.returncode, stdout=out, stderr=err)


@pytest.fixture(scope="module")
def stopped(home, subset_dir, mlflow_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stopped")
    storage = tmp / "studies"
    where = ["--study", STUDY, "--storage", str(storage), "--tracking-uri", mlflow_server.uri]
    where += ["--data-dir", str(subset_dir)]
    sets = set_flags(TINY_STUDY)
    counts = ["--num-trials", str(TRIALS), "--max-concurrent", "1", "--cpus-per-trial", "1"]
    command = freqstudy_command("run", "--space", "smoke", *where, *counts, *sets)
    path = str(storage / STUDY)
    log, errors = open(tmp / "driver.log", "w"), open(tmp / "driver.err", "w")
    first = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=errors, start_new_session=True)
    try:
        deadline = time.time() + 400
        while time.time() < deadline and first.poll() is None:
            if ended_trials(path) >= 1:
                break
            time.sleep(1)
        assert first.poll() is None, f"driver ended early: {(tmp / 'driver.err').read_text()[-3000:]}"
        # Held still while the second driver starts (tiny trials could otherwise end the study
        # and drop its lease first); its PID lives and its heartbeat is inside the lease's TTL.
        os.kill(first.pid, signal.SIGSTOP)
        try:
            done_before = {tid for tid, s in tune_states(path).items() if s == "TERMINATED"}
            second = _driver(["--space", "smoke", *where, *counts, *sets, "--resume"], timeout=90)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        first.send_signal(signal.SIGTERM)
        stopped_at = time.time()
        try:
            first.wait(timeout=60)
            took = time.time() - stopped_at
        except subprocess.TimeoutExpired:
            took = None
    finally:
        if first.poll() is None:
            _end_group(first)
        log.close()
        errors.close()
    time.sleep(3)  # Ray's reaper takes down the stopped driver's local cluster
    return SimpleNamespace(
        first=first,
        second=second,
        err=(tmp / "driver.err").read_text(),
        took=took,
        where=where,
        done_before=done_before,
        path=path,
        uri=mlflow_server.uri,
    )


def test_a_second_driver_is_refused_in_one_line_naming_the_first(stopped):
    second = stopped.second
    assert second.returncode is not None, "the second driver was accepted: still running after 90 s"
    assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"driver PID {stopped.first.pid} on " in lines[0], second.stderr


def test_sigterm_ends_the_study_in_one_line_with_no_running_run(stopped):
    err = stopped.err
    assert stopped.took is not None and stopped.took < 30, f"took {stopped.took} s: {err[-2000:]}"
    assert stopped.first.returncode == 143, err[-3000:]
    # Its own line last (a band-split warning may precede it), and no stack dump.
    assert err.strip().splitlines()[-1] == (
        f"freqstudy run: stopped (SIGTERM); study {STUDY}'s running trials are closed as KILLED; "
        "continue it with --resume"
    ), err[-3000:]
    assert "Traceback" not in err and "SIGTERM handler" not in err, err[-3000:]  # no_traceback's, and Ray's
    parent = find_study_run(stopped.uri, STUDY)
    assert parent is not None
    client_runs = trial_runs(stopped.uri, parent)
    assert not [r["run_id"] for r in client_runs if r["status"] == "RUNNING"]
    from mlflow import MlflowClient

    assert MlflowClient(stopped.uri).get_run(parent).info.status != "RUNNING"


def test_a_resume_runs_the_studys_own_settings_and_refuses_others(stopped, capsys):
    from study.cli import main

    where = stopped.where
    # The space given again without the study's --set values, another trial count, another
    # --set: each one line naming the difference (the old code ran trials with them). In this
    # process: a refusal comes before Ray starts, and each driver started would cost seconds.
    for flags, text in (
        (["--space", "smoke"], "differs from the study's space: "),
        (["--num-trials", "6"], f"--num-trials 6: the study was started with {TRIALS}"),
        (["--set", "train.epochs=3"], "--set train.epochs=3: the study runs with train.epochs=1"),
    ):
        code = main(["run", "--resume", *where, *flags])
        refused = capsys.readouterr()
        shown = (refused.out[-1500:], refused.err[-1500:])
        assert code == 2 and text in refused.err, (flags, code, shown)
        assert len(refused.err.strip().splitlines()) == 1, refused.err

    resumed_at_ms = time.time() * 1000
    done = _driver(["--resume", *where], timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"study {STUDY}: resumed, {TRIALS} trials" in done.stdout, done.stdout
    assert f"study {STUDY}: {TRIALS} trials in " in done.stdout and f"{TRIALS} finished" in done.stdout, (
        done.stdout
    )

    # The same parent run; no new run for a trial that had finished before the stop.
    uri = stopped.uri
    assert count_study_runs(uri, STUDY) == 1
    parent = find_study_run(uri, STUDY)
    runs = trial_runs(uri, parent)
    for tid in stopped.done_before:
        mine = [r for r in runs if r["tags"].get(M.TAG_TRIAL_ID) == tid]
        assert len(mine) == 1 and mine[0]["status"] == "FINISHED"
        assert mine[0]["start_time"] < resumed_at_ms
    assert not [r for r in runs if r["status"] == "RUNNING"]
    finished = [r for r in runs if r["status"] == "FINISHED"]
    assert len({r["tags"][M.TAG_TRIAL_ID] for r in finished}) == TRIALS
    # Every trial, before and after the resume, ran the study's own settings.
    for r in finished:
        assert r["params"]["train.epochs"] == "1" and r["params"]["data.train_limit"] == "500", r["params"]
    # The searcher state survived: exactly TRIALS Optuna trials, all told, none asked twice.
    ot = optuna_study(stopped.path)
    assert [t.number for t in ot.trials] == list(range(TRIALS))
    assert all(t.state.name == "COMPLETE" and len(t.values) == 2 for t in ot.trials)
