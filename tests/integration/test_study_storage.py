"""The study storage is trusted state: ``--resume`` refuses a study folder others could have
written to. A real (tiny, synthetic-trial) study is made once with real Ray; copies of its
folder are then made group-writable, given a stray file or a crafted ``tuner.pkl`` whose
unpickling would create a marker file, and each resume is refused in one line naming the path,
before Ray starts and without the marker appearing. The untouched folder resumes, and what Ray
writes on resuming passes the check again."""

from __future__ import annotations

import functools
import os
import pathlib
import pickle
import shutil
import stat
from pathlib import Path

import pytest

from study.bench.orchestration import synthetic_trial
from study.objectives import Objective
from study.search.space_parser import load_space
from study.search.spaces import SearchSpace
from study.search.storage import check_resumable

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUDY = "stored"


def _space() -> SearchSpace:
    smoke = load_space("smoke")
    return SearchSpace(
        path="<test>",
        objectives=(Objective("val/clean_acc", "maximize"), Objective("val/corruption_acc", "maximize")),
        sampler=smoke.sampler,
        fixed={"train.epochs": 2},
        parameters=smoke.parameters,
        num_trials=2,
        max_concurrent=1,
    )


def _run(storage: Path, *, resume: bool):
    from study.search.tune import run_study

    return run_study(
        _space(),
        study=STUDY,
        storage=str(storage),
        resume=resume,
        cpus_per_trial=1,
        trial_fn=functools.partial(synthetic_trial, seconds=0.1),
        tracking=False,
        console=False,
    )


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory) -> Path:
    """A finished two-trial study's folder, as Ray wrote it."""
    storage = tmp_path_factory.mktemp("made") / "studies"
    summary = _run(storage, resume=False)
    assert [t["status"] for t in summary.trials] == ["finished", "finished"]
    return storage / STUDY


def _copy(study_folder: Path, tmp_path: Path) -> Path:
    storage = tmp_path / "studies"
    storage.mkdir(mode=0o700)
    shutil.copytree(study_folder, storage / STUDY, symlinks=True)  # modes kept
    return storage


class Payload:
    """Unpickling it touches ``marker``: a stand-in for ``os.system``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _refused(storage: Path) -> str:
    with pytest.raises(ValueError) as refused:
        _run(storage, resume=True)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("resume: ")  # the library names its keyword
    assert "trusted state" in message
    return message


def test_a_new_study_folder_is_private_and_passes_the_check(study_folder):
    assert stat.S_IMODE(study_folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(study_folder.parent.stat().st_mode) == 0o700  # created here: private too
    assert check_resumable(str(study_folder)) is None
    assert (study_folder / "tuner.pkl").exists()


def test_group_writable_study_folder_is_refused_naming_it_and_its_mode(study_folder, tmp_path):
    storage = _copy(study_folder, tmp_path)
    folder = storage / STUDY
    folder.chmod(0o770)
    message = _refused(storage)
    assert f"{folder} is writable by other users (mode 0770)" in message
    folder.chmod(0o700)
    storage.chmod(0o777)
    assert f"{storage} is writable by other users (mode 0777)" in _refused(storage)


def test_a_file_ray_does_not_write_is_refused_naming_it(study_folder, tmp_path):
    storage = _copy(study_folder, tmp_path)
    evil = storage / STUDY / "evil.pkl"
    evil.write_bytes(pickle.dumps(Payload(tmp_path / "marker")))
    assert f"{evil} is not a file Ray Tune writes in a study folder" in _refused(storage)
    evil.unlink()
    trial = next(p for p in (storage / STUDY).iterdir() if p.is_dir())
    stray = trial / "checkpoint_000001" / "extra.pkl"
    stray.write_bytes(b"")
    assert f"{stray} is not a file Ray Tune writes" in _refused(storage)
    assert not (tmp_path / "marker").exists()


def test_a_crafted_tuner_pkl_in_a_writable_folder_is_refused_before_it_is_read(study_folder, tmp_path):
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(Payload(control)))
    assert control.exists()  # the payload is real
    storage = _copy(study_folder, tmp_path)
    folder = storage / STUDY
    marker = tmp_path / "marker"
    (folder / "tuner.pkl").write_bytes(pickle.dumps(Payload(marker)))
    folder.chmod(0o757)  # others could have put it there
    assert f"{folder} is writable by other users (mode 0757)" in _refused(storage)
    folder.chmod(0o755)
    (folder / "tuner.pkl").chmod(0o666)  # others can reach and rewrite the file itself
    assert f"{folder / 'tuner.pkl'} is writable by other users (mode 0666)" in _refused(storage)
    assert not marker.exists()


def test_the_untouched_study_resumes_and_stays_resumable(study_folder, tmp_path):
    storage = _copy(study_folder, tmp_path)
    summary = _run(storage, resume=True)
    assert [t["status"] for t in summary.trials] == ["finished", "finished"]
    assert check_resumable(str(storage / STUDY)) is None  # what Ray wrote on resuming passes too
    assert len(list((storage / STUDY).glob("experiment_state-*.json"))) >= 1
    assert os.access(storage / STUDY / "tuner.pkl", os.R_OK)
