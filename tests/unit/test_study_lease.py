"""The study lease (one live driver per study) and the stored study settings, on real files:
a second driver refused naming the holder, a dead or silent holder's lease taken over, the
heartbeat renewing it; a resume's flags checked against what the study stored."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from study.errors import FieldError
from study.search.lease import LEASE_FILE, StudyLease
from study.search.settings import check_resume, load_settings, save_settings, settings_for
from study.search.space_parser import load_space
from study.search.storage import study_problem


def _write_lease(folder, **fields):
    record = {"host": socket.gethostname(), "pid": os.getpid(), "token": "x" * 32, "started": time.time()}
    record.update(heartbeat=time.time(), study="s")
    record.update(fields)
    (folder / LEASE_FILE).write_text(json.dumps(record))


def test_a_second_driver_is_refused_in_one_line_naming_the_holder(tmp_path):
    first = StudyLease(str(tmp_path), "s", renew_s=0.1)
    first.acquire()
    try:
        with pytest.raises(FieldError) as e:
            StudyLease(str(tmp_path), "s").acquire()
        line = str(e.value)
        assert e.value.field == "resume" and "\n" not in line
        assert f"PID {os.getpid()} on {socket.gethostname()}" in line
        # The heartbeat renews the lease.
        before = json.loads((tmp_path / LEASE_FILE).read_text())["heartbeat"]
        time.sleep(0.5)
        assert json.loads((tmp_path / LEASE_FILE).read_text())["heartbeat"] > before
    finally:
        first.release()
    assert not (tmp_path / LEASE_FILE).exists()
    again = StudyLease(str(tmp_path), "s")
    again.acquire()  # released: the next driver takes it
    again.release()


def test_a_lease_whose_holder_stopped_renewing_expires(tmp_path):
    # A live process on another host that has not renewed for longer than the TTL.
    _write_lease(tmp_path, host="elsewhere", heartbeat=time.time() - 120)
    lease = StudyLease(str(tmp_path), "s", ttl_s=60)
    lease.acquire()
    assert json.loads((tmp_path / LEASE_FILE).read_text())["token"] == lease.token
    lease.release()
    # ... while a recent heartbeat from another host holds.
    _write_lease(tmp_path, host="elsewhere", heartbeat=time.time() - 5)
    with pytest.raises(FieldError, match="elsewhere"):
        StudyLease(str(tmp_path), "s", ttl_s=60).acquire()


def test_a_dead_driver_on_this_host_holds_nothing(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    _write_lease(tmp_path, pid=int(dead.stdout))
    lease = StudyLease(str(tmp_path), "s")
    lease.acquire()  # immediately, without waiting for the TTL
    lease.release()


def test_lease_and_settings_files_pass_the_resume_check(tmp_path):
    folder = tmp_path / "studies" / "s"
    folder.mkdir(parents=True, mode=0o700)
    os.chmod(tmp_path / "studies", 0o700)
    lease = StudyLease(str(folder), "s")
    lease.acquire()
    space = load_space("smoke")
    save_settings(str(folder), _settings(space))
    assert study_problem(str(folder)) is None
    lease.release()


def _settings(space, **kw):
    values = dict(num_trials=4, max_concurrent=1, cpus=1.0, gpus=0.0, max_failures=2, data_dir=None)
    values.update(kw)
    return settings_for(space, code_version="v1", **values)


NONE = {"num_trials": None, "max_concurrent": None, "cpus_per_trial": None, "gpus_per_trial": None}


def test_resume_restores_the_stored_space_and_refuses_a_conflicting_flag(tmp_path):
    space = load_space("smoke").with_fixed({"train.epochs": 8, "data.train_limit": 1000})
    save_settings(str(tmp_path), _settings(space, num_trials=6, data_dir="/data"))
    stored = load_settings(str(tmp_path))
    # Nothing given again: the study's own space, --set values included.
    restored = check_resume(stored, space=None, overrides={}, counts=NONE, data_dir=None)
    assert restored.fixed["train.epochs"] == 8 and restored.fixed["data.train_limit"] == 1000
    assert restored.replicates == space.replicates and restored.parameters == space.parameters
    # The same values given again are accepted.
    check_resume(
        stored, space=space, overrides={"train.epochs": 8}, counts={**NONE, "num_trials": 6}, data_dir="/data"
    )
    cases = [
        (dict(overrides={"train.epochs": 2}), "set", "train.epochs=2: the study runs with train.epochs=8"),
        (dict(counts={**NONE, "num_trials": 4}), "num_trials", " 4: the study was started with 6"),
        (
            dict(space=load_space("smoke")),
            "space",
            "differs from the study's space: fixed train.epochs is 2 there, 8",
        ),
        (dict(data_dir="/elsewhere"), "data_dir", " /elsewhere: the study reads"),
    ]
    for given, field, text in cases:
        kw = {**dict(space=None, overrides={}, counts=NONE, data_dir=None), **given}
        with pytest.raises(FieldError) as e:
            check_resume(stored, **kw)
        assert e.value.field == field and text in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_stored_settings_of_another_shape_are_one_line_errors(tmp_path):
    (tmp_path / "freqstudy-study.json").write_text(json.dumps({"format": 1, "num_trials": "six"}))
    with pytest.raises(ValueError, match="freqstudy-study.json: field"):
        load_settings(str(tmp_path))
    (tmp_path / "freqstudy-study.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        load_settings(str(tmp_path))
