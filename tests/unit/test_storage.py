"""study.search.storage: what ``--resume`` accepts in a study folder, on hand-made folders laid
out with the names Ray Tune writes (the real ones are checked in
tests/integration/test_study_storage.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from study.search.storage import check_resumable, create_private, study_problem

TS = "2026-01-02_03-04-05"
TRIAL = "_run_trial_in_worker_168efa42_1_freqstudy_baseline=True_2026-01-02_03-04-05"


def make_study(root: Path) -> Path:
    folder = root / "studies" / "s"
    create_private(str(folder))
    for name in ("tuner.pkl", ".validate_storage_marker", f"experiment_state-{TS}.json"):
        (folder / name).write_bytes(b"")
    for name in (f"searcher-state-{TS}.pkl", f"search_gen_state-{TS}.json"):
        (folder / name).write_bytes(b"")
    trial = folder / TRIAL
    (trial / "checkpoint_000002").mkdir(parents=True)
    for name in ("params.json", "params.pkl", "result.json", "progress.csv", "events.out.tfevents.17.vm"):
        (trial / name).write_bytes(b"")
    (trial / "checkpoint_000002" / "epoch-0002.pt").write_bytes(b"")
    return folder


def test_rays_names_in_a_private_folder_pass(tmp_path):
    folder = make_study(tmp_path)
    assert oct(folder.stat().st_mode & 0o777) == oct(0o700)
    assert study_problem(str(folder)) is None
    # Inside a folder no one else can enter, a file's own group/other bits do not matter.
    (folder / "tuner.pkl").chmod(0o666)
    assert study_problem(str(folder)) is None
    folder.chmod(0o711)  # ...they do once others can reach it
    assert study_problem(str(folder)) == f"{folder / 'tuner.pkl'} is writable by other users (mode 0666)"


@pytest.mark.parametrize(
    "relative",
    ["evil.pkl", "experiment_state-latest.json", f"{TRIAL}/model.pkl", f"{TRIAL}/checkpoint_000002/x.pt"],
)
def test_any_other_name_is_refused_naming_it(tmp_path, relative):
    folder = make_study(tmp_path)
    (folder / relative).write_bytes(b"")
    assert (
        study_problem(str(folder)) == f"{folder / relative} is not a file Ray Tune writes in a study folder"
    )


def test_symbolic_links_and_writable_parents_are_refused(tmp_path):
    folder = make_study(tmp_path)
    (folder / "params.pkl").symlink_to(folder / "tuner.pkl")
    assert (
        study_problem(str(folder)) == f"{folder / 'params.pkl'} is a symbolic link, not written by Ray Tune"
    )
    (folder / "params.pkl").unlink()
    tmp_path.chmod(0o777)  # above the storage root: others could swap the root for their own
    try:
        assert study_problem(str(folder)) == f"{tmp_path} is writable by other users (mode 0777, not sticky)"
        tmp_path.chmod(0o1777)  # sticky, like /tmp: they cannot
        assert study_problem(str(folder)) is None
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_of_another_user_is_refused(tmp_path):
    folder = make_study(tmp_path)
    os.chown(folder / "tuner.pkl", 65534, 65534)
    problem = study_problem(str(folder))
    assert problem.startswith(f"{folder / 'tuner.pkl'} belongs to ") and "not to you" in problem


def test_resume_refusal_is_one_line_and_a_uri_gets_a_note(tmp_path):
    folder = make_study(tmp_path)
    (folder / "evil.pkl").write_bytes(b"")
    with pytest.raises(
        ValueError, match=r"^resume: .*evil\.pkl is not a file Ray Tune writes.*trusted state"
    ):
        check_resumable(str(folder))
    note = check_resumable("s3://bucket/studies/s")
    assert "trusted state" in note and "cannot be checked" in note and "\n" not in note
