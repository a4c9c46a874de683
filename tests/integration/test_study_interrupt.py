"""A study driver stopped with SIGINT (Ctrl+C, sent to its PID) says it was interrupted, how
many trials are unaccounted for and the exact ``--resume`` command; that command, run as
printed, continues the study to its planned trials without re-running finished ones.
Real Ray, a real ``mlflow server``, the CIFAR-10 subset, trials of 1 epoch on 500 images."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from study import metrics as M
from tests.cli_runner import freqstudy_command, no_traceback, run_freqstudy
from tests.support import TINY_STUDY, ended_trials, set_flags, trial_runs

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TINY = {**TINY_STUDY, "eval.corruptions": ["gaussian_noise"], "eval.severities": [1]}


@pytest.mark.slow
def test_sigint_names_the_interruption_and_its_resume_command_continues_it(
    subset_dir, mlflow_server, tmp_path
):
    storage, study = tmp_path / "studies", "ctrl-c"
    sets = set_flags(TINY)
    # In the order the resume command gives its flags; a resume keeps the study's count and resources.
    kept = ["--space", "smoke", "--study", study]
    kept += ["--data-dir", str(subset_dir), "--tracking-uri", mlflow_server.uri, "--storage", str(storage)]
    kept += sets
    argv = ["run", *kept, "--num-trials", "3", "--max-concurrent", "1", "--cpus-per-trial", "1"]
    env = {**os.environ, "FREQSTUDY_HOME": str(tmp_path / "home")}
    log_path = tmp_path / "driver.log"
    with open(log_path, "w") as log:
        driver = subprocess.Popen(
            freqstudy_command(*argv),
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.time() + 400
            while time.time() < deadline and driver.poll() is None and ended_trials(storage / study) < 1:
                time.sleep(1)
            assert driver.poll() is None, log_path.read_text()[-3000:]
            driver.send_signal(signal.SIGINT)  # the driver's PID only, as Ctrl+C in its terminal would
            code = driver.wait(timeout=180)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
    out = log_path.read_text()
    assert code == 130, out[-3000:]
    no_traceback(out, argv, env)
    m = re.search(r"interrupted: (\d+) of 3 trials unaccounted for", out)
    assert m and int(m.group(1)) >= 1, out[-3000:]
    m = re.search(rf"study {study} was interrupted; continue it with: (freqstudy run .*--resume)$", out, re.M)
    assert m, out[-3000:]
    words = shlex.split(m.group(1))
    assert words[:2] == ["freqstudy", "run"] and words[2:-1] == kept, words
    time.sleep(3)  # Ray's reaper takes down the interrupted driver's local cluster

    resumed = run_freqstudy(*words[1:], env=env, timeout=500)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert f"study {study}: 3 trials in " in resumed.stdout and "3 finished" in resumed.stdout, resumed.stdout
    assert "was interrupted" not in resumed.stdout and "unaccounted" not in resumed.stdout
    from study.tracking.study_runs import find_study_run

    runs = trial_runs(mlflow_server.uri, find_study_run(mlflow_server.uri, study))
    finished = [r for r in runs if r["status"] == "FINISHED"]
    assert len({r["tags"][M.TAG_TRIAL_ID] for r in finished}) == 3 == len(finished)
