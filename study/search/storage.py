"""The study storage is trusted state: how freqstudy keeps it private and what ``--resume`` checks.

Ray Tune keeps a study as pickles (``tuner.pkl``, ``searcher-state-*.pkl``, each trial's
``params.pkl`` and ``error.pkl``) and JSON that may carry cloudpickled objects, and
``Tuner.restore`` unpickles them: whoever can write the folder can run code as the user who
resumes. That is Ray's format and cannot be made safe here; instead

- a new study's folder on a local path is created private (mode 0700, and the storage root
  too when freqstudy creates it), so no other user can reach the files Ray writes in it;
- before ``--resume`` reads anything, :func:`check_resumable` refuses, in one line naming the
  path, a storage root or study folder that is not the user's own or that other users may
  write to (mode ``& 0o022``), a folder above them that others may write to (unless sticky,
  as ``/tmp``), any file or folder in the study that others may write to or that belongs
  to someone else, a symbolic link, and any name that Ray Tune 2.x (as run by freqstudy)
  does not write there;
- a URI storage (``s3://...``) cannot be checked from here: a one-line note says it is
  trusted state.

No Ray import: the checks run before Ray starts.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
from pathlib import Path

from study.errors import FieldError

_TS = r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_STATE = rf"(searcher-state-{_TS}\.pkl|search_gen_state-{_TS}\.json|basic-variant-state-{_TS}\.json)"

# What Ray Tune 2.x writes in a study folder run by study.search.tune (the trainable is
# ``_run_trial_in_worker``), level by level. Learnt from the folders of real studies
# (Ray 2.60) and Ray's own file-name constants (ray.air.constants, ray.tune.*.CKPT_FILE_TMPL).
EXPERIMENT_FILES = (
    r"tuner\.pkl",
    r"trainable\.pkl",  # older Ray versions
    r"\.validate_storage_marker",
    rf"experiment_state-{_TS}\.json",
    _STATE,
    rf"\.{_UUID}-tmp-{_STATE}",  # Ray's atomic write (temporary name, then a rename) cut short
    # freqstudy's own JSON (study.search.settings, study.search.lease), and its atomic writes cut short
    r"freqstudy-study\.json",
    r"freqstudy-lease\.json",
    r"\.freqstudy-(study|lease)\.json\.[0-9a-f]{32}\.tmp",
)
TRIAL_DIRS = (r"_run_trial_in_worker_[0-9a-f]+(_\d+)?_\d+_.+",)
TRIAL_FILES = (
    r"params\.json",
    r"params\.pkl",
    r"result\.json",
    r"progress\.csv",
    r"error\.txt",
    r"error\.pkl",
    r"trial_metadata\.json",
    r"events\.out\.tfevents\.\d+\.[^/]+",
)
CHECKPOINT_DIRS = (r"checkpoint_\d{6}", r"checkpoint_tmp_[0-9a-f]+")
CHECKPOINT_FILES = (
    r"epoch-\d{4}\.pt",  # a tracked trial's checkpoint (study.engine.checkpoint; weights-only load)
    r"state\.npy",  # the orchestration benchmark's synthetic trial (study.bench.orchestration)
    r"\.metadata\.json",
    r"\.tune_metadata",
)

_TRUSTED = "the study storage is trusted state (Ray unpickles it on --resume); only you may write to it"


def is_uri(path: str) -> bool:
    return "://" in path


def _match(name: str, patterns: tuple[str, ...]) -> bool:
    return any(re.fullmatch(p, name) for p in patterns)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _others_may_write(mode: int) -> bool:
    return bool(mode & (stat.S_IWGRP | stat.S_IWOTH))


def create_private(path: str) -> None:
    """Create a new study's local folder ``<root>/<study>`` with mode 0700 (the root too, when
    it is created here); a URI is left to Ray."""
    if is_uri(path):
        return
    folder = Path(path)
    root = folder.parent
    if not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        root.mkdir(mode=0o700, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask, and the folder may have existed


def storage_problem(path: str) -> str | None:
    """Why the storage root and study folder ``path`` are not the user's alone, or None.

    Checks the study folder and its storage root (owned by the user, not writable by group or
    others) and every folder above them (not writable by others unless sticky, like ``/tmp``).
    """
    me = os.geteuid()
    folder = Path(path)
    for i, p in enumerate([folder, folder.parent, *folder.parent.parents]):
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            return f"{p} is a symbolic link"
        mode = stat.S_IMODE(st.st_mode)
        if i < 2:  # the study folder and the storage root: the user's own, nobody else's to write
            if st.st_uid != me:
                return f"{p} belongs to {_user(st.st_uid)}, not to you ({_user(me)})"
            if _others_may_write(mode):
                return f"{p} is writable by other users (mode {mode:04o})"
        elif _others_may_write(mode) and not mode & stat.S_ISVTX:
            return f"{p} is writable by other users (mode {mode:04o}, not sticky)"
    return None


def _walk(folder: Path, level: int, reach: int, me: int) -> str | None:
    """The first entry below ``folder`` that Ray would not write there, that is not the user's,
    or that another user could write; ``reach`` holds the group/other write bits of the
    classes that can traverse down to ``folder``."""
    levels = (
        (EXPERIMENT_FILES, TRIAL_DIRS),
        (TRIAL_FILES, CHECKPOINT_DIRS),
        (CHECKPOINT_FILES, ()),
    )
    files, dirs = levels[level]
    for entry in sorted(folder.iterdir()):
        st = entry.lstat()
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            return f"{entry} is a symbolic link, not written by Ray Tune"
        is_dir = stat.S_ISDIR(st.st_mode)
        allowed = dirs if is_dir else files if stat.S_ISREG(st.st_mode) else ()
        if not _match(entry.name, allowed):
            return f"{entry} is not a file Ray Tune writes in a study folder"
        if st.st_uid != me:
            return f"{entry} belongs to {_user(st.st_uid)}, not to you ({_user(me)})"
        if mode & reach:
            return f"{entry} is writable by other users (mode {mode:04o})"
        if is_dir:
            # Group (other) members reach what is inside only through the search bit for them.
            inner = reach & (
                (stat.S_IWGRP if mode & stat.S_IXGRP else 0) | (stat.S_IWOTH if mode & stat.S_IXOTH else 0)
            )
            problem = _walk(entry, level + 1, inner, me)
            if problem:
                return problem
    return None


def study_problem(path: str) -> str | None:
    """:func:`storage_problem`, then the first entry of the study folder that fails the checks."""
    problem = storage_problem(path)
    if problem:
        return problem
    folder = Path(path)
    mode = stat.S_IMODE(folder.lstat().st_mode)
    reach = (stat.S_IWGRP if mode & stat.S_IXGRP else 0) | (stat.S_IWOTH if mode & stat.S_IXOTH else 0)
    return _walk(folder, 0, reach, os.geteuid())


def check_resumable(path: str) -> str | None:
    """Refuse to resume from a study folder that others could have written to.

    Returns:
        A one-line note to print for a URI storage (it cannot be checked here); None otherwise.

    Raises:
        ValueError: one line naming the path and why, and what to do.
    """
    if is_uri(path):
        return f"{_TRUSTED}; {path} is not on this machine and cannot be checked"
    problem = study_problem(path)
    if problem:
        raise FieldError(
            "resume",
            f": {problem}; {_TRUSTED} (remove what you did not put there, `chmod -R go-w` "
            "what is yours, or start a new study)",
        )
    return None
