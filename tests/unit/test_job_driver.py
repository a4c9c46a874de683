"""A study's driver submitted as a Ray job: its current folder may be deleted and unpacked again
under it (defect 7), and the job's own environment variables must not be named twice
(``tests/integration/test_cluster.py`` runs both as real Ray jobs)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from study.provenance import CODE_VERSION_ENV
from study.search.opening import RAY_JOB_CONFIG_ENV, steady_folder, worker_env


def test_the_study_outlives_its_folder_unpacked_again_under_it(tmp_path, monkeypatch):
    """Ray unpacks a job's package with overwrite: the folder the driver started in is deleted
    and made again. In it, ``os.getcwd()`` (Tune's ``relpath`` as ``fit`` ends) fails; inside
    ``steady_folder`` it works, and the driver is back in the (new) folder after."""
    job = tmp_path / "_ray_pkg_0123"
    job.mkdir()
    monkeypatch.setenv("FREQSTUDY_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(job)
    with steady_folder():
        shutil.rmtree(job)
        job.mkdir()  # what another node's runtime-env agent does
        assert os.path.relpath("a/b/c", start="a") == os.path.join("b", "c")
        assert os.getcwd() == str(tmp_path / "home")
    assert os.getcwd() == str(job)

    # Without it (the old driver): the same steps end in the error of defect 7.
    shutil.rmtree(job)
    job.mkdir()
    with pytest.raises(FileNotFoundError, match=r"\[Errno 2\] No such file or directory"):
        os.path.relpath("a/b/c", start="a")
    os.chdir(tmp_path)


def test_a_variable_the_job_sets_is_left_to_the_job(monkeypatch):
    """`ray job submit --runtime-env-json '{"env_vars": {"FREQSTUDY_CODE_VERSION": ...}}'`:
    Ray refused the driver's runtime env, which named the same variable (the README's own
    advice ended every such study at its start)."""
    monkeypatch.delenv(RAY_JOB_CONFIG_ENV, raising=False)
    alone = worker_env({"X": "1", "Y": "2"})
    assert {CODE_VERSION_ENV, "PYTHONPATH", "X", "Y"} <= set(alone)
    job = {
        "runtime_env": {"working_dir": "gcs://_ray_pkg_1.zip", "env_vars": {CODE_VERSION_ENV: "v1", "X": "9"}}
    }
    monkeypatch.setenv(RAY_JOB_CONFIG_ENV, json.dumps(job))
    env = worker_env({"X": "1", "Y": "2"})
    assert CODE_VERSION_ENV not in env and "X" not in env
    assert env["Y"] == "2" and env["PYTHONPATH"] == alone["PYTHONPATH"]
    for bad in ("not json", "[]", '{"runtime_env": {"env_vars": ["a"]}}'):
        monkeypatch.setenv(RAY_JOB_CONFIG_ENV, bad)
        assert set(worker_env({"X": "1"})) == set(alone) - {"Y"}
