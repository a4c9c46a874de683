"""A study read from the files of ``freqstudy export`` instead of an MLflow server.

:func:`load_export` turns an export folder (``study.tracking.export``: ``runs.json``,
``outcomes/<run_id>.npz``, ``manifest.json``) back into what
:func:`study.tracking.queries.load_study` and :func:`study.tracking.gains.study_outcomes`
return, so :func:`study.selection.choice.choose` and the report run on it unchanged.

Read as untrusted input: JSON only (sizes bounded before parsing), outcomes through
:func:`study.analysis.outcomes.decode` (size-checked npz, never unpickled), every file checked
against the manifest's size and sha256, run ids that are plain hex names (no path in them).
Errors are one ``ValueError`` line naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from study import metrics as M
from study.analysis.outcomes import Outcomes, decode

__all__ = [
    "EXPORT_FORMAT",
    "MANIFEST",
    "OUTCOMES_DIR",
    "RUNS_CSV",
    "RUNS_JSON",
    "load_export",
    "trial_summary",
]

EXPORT_FORMAT = "freqstudy-export/1"
RUNS_JSON = "runs.json"
RUNS_CSV = "runs.csv"
MANIFEST = "manifest.json"
OUTCOMES_DIR = "outcomes"
# A study of a thousand trials with a few hundred metrics each is a few MB of JSON; an outcomes
# file of the full CIFAR-10 test and train sets with all corruptions is about 10 MB packed.
MAX_JSON_BYTES = 64 << 20
MAX_OUTCOMES_BYTES = 32 << 20
RUN_ID = re.compile(r"^[0-9a-zA-Z_-]{1,64}$")
RECORD_KEYS = (
    "run_id",
    "name",
    "status",
    "start_time",
    "end_time",
    "experiment_id",
    "params",
    "metrics",
    "tags",
)


def trial_summary(t: dict[str, Any]) -> dict[str, Any]:
    """The columns a reader looks for first: run id, configuration, replicate, seed, status,
    code version, learned form (None outside learned mode)."""
    tags, params = t.get("tags") or {}, t.get("params") or {}
    return {
        "run_id": t["run_id"],
        "name": t.get("name"),
        "configuration_id": tags.get(M.TAG_CONFIG_ID) or tags.get(M.TAG_TRIAL_ID) or t["run_id"],
        "replicate": tags.get(M.TAG_REPLICATE, "0"),
        "seed": params.get("seed", params.get("train.seed")),
        "status": t.get("status"),
        "freqstudy_status": tags.get(M.TAG_STATUS),
        "baseline": tags.get(M.TAG_BASELINE) == "true",
        "mode": params.get("frequency.mode") or tags.get(M.TAG_MODE),
        "code_version": tags.get(M.TAG_CODE_VERSION),
        "learned_form": M.learned_form_of(t),
    }


def _read_bounded(path: Path, limit: int) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ValueError(f"{path}: missing from the export") from None
    if size > limit:
        raise ValueError(f"{path}: is {size:,} bytes; allowed at most {limit:,}")
    return path.read_bytes()


def _json(path: Path) -> Any:
    try:
        return json.loads(_read_bounded(path, MAX_JSON_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not JSON ({str(e).splitlines()[0][:120]})") from None
    except RecursionError:
        raise ValueError(f"{path}: nested too deep for a run table") from None


def _record(raw: Any, where: str) -> dict[str, Any]:
    """A run dict as ``load_study`` makes it, checked: string params and tags, float metrics
    (None, the JSON for NaN, back to NaN)."""
    if not isinstance(raw, dict) or not all(k in raw for k in RECORD_KEYS):
        raise ValueError(f"{where}: a run record needs the keys {', '.join(RECORD_KEYS)}")
    run_id = raw["run_id"]
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise ValueError(f"{where}: run_id {str(run_id)[:80]!r} is not a run id (letters, digits, - and _)")
    out = {k: raw[k] for k in RECORD_KEYS}
    for key in ("params", "tags"):
        d = raw[key]
        if not isinstance(d, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in d.items()
        ):
            raise ValueError(f"{where}: run {run_id}: {key} must map names to strings")
        out[key] = dict(d)
    metrics = raw["metrics"]
    if not isinstance(metrics, dict):
        raise ValueError(f"{where}: run {run_id}: metrics must map names to numbers")
    out["metrics"] = {}
    for k, v in metrics.items():
        if v is None:
            v = math.nan
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ValueError(f"{where}: run {run_id}: metric {str(k)[:80]!r} is not a number")
        out["metrics"][k] = float(v)
    return out


def _check_manifest(root: Path) -> dict[str, dict[str, Any]]:
    manifest = _json(root / MANIFEST)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise ValueError(f"{root / MANIFEST}: needs a 'files' map of name -> bytes and sha256")
    return files


def _verified(root: Path, name: str, files: dict[str, Any], limit: int) -> bytes:
    entry = files.get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise ValueError(f"{root / name}: not listed in {MANIFEST}")
    data = _read_bounded(root / name, limit)
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ValueError(
            f"{root / name}: sha256 differs from {MANIFEST}'s; the file changed since the export"
        )
    return data


def load_export(root: str | Path) -> tuple[dict[str, Any], dict[str, Outcomes]]:
    """``(study_runs, outcomes)`` of an export folder: ``study_runs`` as
    :func:`~study.tracking.queries.load_study` returns it, ``outcomes`` run id -> outcomes
    of the finished trials that have them (as ``study_outcomes``)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--from-export {root}: not a folder (give the folder freqstudy export wrote)")
    files = _check_manifest(root)
    try:
        doc = json.loads(_verified(root, RUNS_JSON, files, MAX_JSON_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ValueError(f"{root / RUNS_JSON}: not JSON") from None
    where = str(root / RUNS_JSON)
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{where}: 'format' must be {EXPORT_FORMAT!r}")
    if not isinstance(doc.get("study"), str) or not isinstance(doc.get("trials"), list):
        raise ValueError(f"{where}: needs 'study' (a name) and 'trials' (a list)")
    parent = None if doc.get("parent") is None else _record(doc["parent"], where)
    trials = [_record(t, where) for t in doc["trials"]]
    if len({t["run_id"] for t in trials}) != len(trials):
        raise ValueError(f"{where}: a run id appears twice")
    outcomes: dict[str, Outcomes] = {}
    for t in trials:
        name = f"{OUTCOMES_DIR}/{t['run_id']}.npz"
        if t["status"] != "FINISHED" or name not in files:
            continue
        data = _verified(root, name, files, MAX_OUTCOMES_BYTES)
        try:
            outcomes[t["run_id"]] = decode(data)
        except ValueError as e:
            raise ValueError(f"{root / name}: {e}") from None
    runs = {
        "study": doc["study"],
        "experiment_id": str(doc.get("experiment_id", "")),
        "parent": parent,
        "trials": trials,
    }
    return runs, outcomes
