"""A study's own settings, kept in its storage so that ``--resume`` continues the same study.

When a study starts, ``freqstudy-study.json`` in its Tune folder records the space file's
text, the fixed values with every ``--set`` applied, the trial count, concurrency,
resources, retries and data folder. ``--resume`` rebuilds the space from that record and
runs with those values; a flag given again must agree with it, and one that does not is
refused in one line naming the flag, the value given and the study's
(:func:`check_resume`). The record is JSON: reading it runs no code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from study.errors import FieldError
from study.search import study_files
from study.search.space_parser import parse_space
from study.search.spaces import SearchSpace

SETTINGS_FILE = "freqstudy-study.json"
FORMAT = 1


@dataclass(frozen=True)
class StudySettings:
    space_source: str  # the space file the study started from (for the record; its text is below)
    space_text: str | None  # None: a space built in code (no file), which a resume must be given
    fixed: dict[str, Any]  # the space's fixed values with --set applied
    num_trials: int
    max_concurrent: int
    cpus_per_trial: float
    gpus_per_trial: float
    max_failures: int
    data_dir: str | None
    code_version: str

    def space(self) -> SearchSpace:
        """The study's space as it started: the stored text, then the stored fixed values."""
        if self.space_text is None:
            raise FieldError("space", f": the study's space was built in code ({self.space_source}); give it")
        space = parse_space(self.space_text, source=self.space_source)
        extra = {k: v for k, v in self.fixed.items() if k not in space.fixed or space.fixed[k] != v}
        return space.with_fixed(extra)


_TYPES: dict[str, Any] = {
    "space_source": str,
    "space_text": (str, type(None)),
    "fixed": dict,
    "num_trials": int,
    "max_concurrent": int,
    "cpus_per_trial": (int, float),
    "gpus_per_trial": (int, float),
    "max_failures": int,
    "data_dir": (str, type(None)),
    "code_version": str,
}


def save_settings(path: str, settings: StudySettings) -> None:
    study_files.write_json(path, SETTINGS_FILE, {"format": FORMAT, **asdict(settings)})


def load_settings(path: str) -> StudySettings | None:
    """The settings stored in the study folder ``path``; None for a study started before
    freqstudy kept them.

    Raises:
        ValueError: one line naming the file and the field when it is not what freqstudy writes.
    """
    value = study_files.read_json(path, SETTINGS_FILE)
    if value is None:
        return None
    where = f"{path.rstrip('/')}/{SETTINGS_FILE}"
    if value.get("format") != FORMAT:
        raise ValueError(f"{where}: format {value.get('format')!r}; this freqstudy reads format {FORMAT}")
    for key, kind in _TYPES.items():
        if key not in value or not isinstance(value[key], kind) or isinstance(value[key], bool):
            raise ValueError(f"{where}: field {key!r} missing or of the wrong type")
    return StudySettings(**{k: value[k] for k in _TYPES})


def settings_for(
    space: SearchSpace,
    *,
    num_trials: int,
    max_concurrent: int,
    cpus: float,
    gpus: float,
    max_failures: int,
    data_dir: str | None,
    code_version: str,
) -> StudySettings:
    """What a new study stores: the space file's text is read again from ``space.path``
    (a space built in code has no file: its fixed values alone are kept)."""
    source = Path(space.path)
    return StudySettings(
        space_source=str(space.path),
        space_text=source.read_text(encoding="utf-8") if source.is_file() else None,
        fixed=dict(space.fixed),
        num_trials=num_trials,
        max_concurrent=max_concurrent,
        cpus_per_trial=float(cpus),
        gpus_per_trial=float(gpus),
        max_failures=max_failures,
        data_dir=data_dir,
        code_version=code_version,
    )


# SearchSpace fields compared by a resume (the file's path and description are not the study).
_SPACE_FIELDS = (
    *("objectives", "sampler", "parameters", "baseline", "points"),
    *("num_trials", "replicates", "min_replicates", "max_seeds", "max_concurrent", "cpus", "gpus"),
)


def space_difference(given: SearchSpace, stored: SearchSpace) -> str | None:
    """The first way ``given`` differs from the study's space, in words; None when it does not."""
    for key in sorted(set(given.fixed) | set(stored.fixed)):
        a, b = given.fixed.get(key, "(unset)"), stored.fixed.get(key, "(unset)")
        if a != b:
            return f"fixed {key} is {a!r} there, {b!r} in the study"
    for name in _SPACE_FIELDS:
        a, b = getattr(given, name), getattr(stored, name)
        if a != b:
            return f"its {name} differ from the study's" if name.endswith("s") else f"its {name} differs"
    return None


def _same(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-12)


def check_resume(
    stored: StudySettings,
    *,
    space: SearchSpace | None,
    overrides: dict[str, Any],
    counts: dict[str, float | None],
    data_dir: str | None,
) -> SearchSpace:
    """The study's space, after checking what a resume was given against what it stored.

    Args:
        space: the space given again (``--space``), or None to take the study's.
        overrides: ``--set`` values given again.
        counts: ``num_trials``, ``max_concurrent``, ``cpus_per_trial``, ``gpus_per_trial``,
            ``max_failures`` as given (None: not given).
        data_dir: the data folder given again (resolved), or None.

    Raises:
        FieldError: naming the first field that differs (``set``, ``space``, ``num_trials``, ...),
            its value given and the study's.
    """
    if stored.space_text is None and space is not None:
        study_space = space.with_fixed(stored.fixed)  # the study's fixed values win; compared below
    else:
        study_space = stored.space()
    tail = "(stored when the study started); resume without it, or start a new study"
    for key, value in overrides.items():
        have = study_space.fixed.get(key, "(unset)")
        if value != have:
            raise FieldError("set", f" {key}={value!r}: the study runs with {key}={have!r} {tail}")
    if space is not None:
        diff = space_difference(space.with_fixed(overrides), study_space)
        if diff:
            raise FieldError("space", f" {space.path}: differs from the study's space: {diff} {tail}")
    for name, value in counts.items():
        have = getattr(stored, name)
        if value is not None and not _same(value, have):
            raise FieldError(name, f" {value:g}: the study was started with {have:g} {tail}")
    if data_dir is not None and stored.data_dir is not None and data_dir != stored.data_dir:
        raise FieldError("data_dir", f" {data_dir}: the study reads {stored.data_dir} {tail}")
    return study_space
