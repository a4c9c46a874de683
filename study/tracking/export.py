"""A study out of MLflow into plain files anyone can recompute from, without a server.

``export_study`` writes into one folder:

- ``runs.json``: ``{"format", "study", "experiment_id", "parent", "trials"}``, the records of
  :func:`study.tracking.queries.load_study` as they are (``run_id``, ``name``, ``status``,
  ``start_time``, ``end_time``, ``experiment_id``, ``params``, ``metrics``, ``tags``), each trial
  with its configuration id, replicate, seed, code version and learned form spelled out beside;
- ``runs.csv``: the same trials one row each (params as ``param:<name>``, metrics as
  ``metric:<name>``), for a spreadsheet;
- ``outcomes/<run_id>.npz``: every finished trial's per-image outcomes artifact, byte for byte
  as the trial logged it (``study.analysis.outcomes``: bit-packed booleans, ~60 KB per trial
  for 500 test and 466 validation images with all 19 x 5 corrupted copies);
- ``manifest.json``: every file's size and sha256, so a reader can check what it got.

:func:`study.exported.load_export` reads the folder back into the same records.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from study import metrics as M
from study.exported import (
    EXPORT_FORMAT,
    MANIFEST,
    OUTCOMES_DIR,
    RUNS_CSV,
    RUNS_JSON,
    trial_summary,
)
from study.files import write_bytes_atomic, write_text_atomic
from study.reporting.formatting import csv_bytes
from study.tracking.queries import client_for, download_artifact, load_study

__all__ = ["export_study"]


def _csv_rows(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    params = sorted({k for t in trials for k in t["params"]})
    metrics = sorted({k for t in trials for k in t["metrics"]})
    rows = []
    for t in trials:
        row = {k: v for k, v in trial_summary(t).items()}
        row.update({f"param:{k}": t["params"].get(k, "") for k in params})
        row.update({f"metric:{k}": M.finite_or_none(t["metrics"].get(k)) for k in metrics})
        rows.append(row)
    return rows


def _json_safe(run: dict[str, Any]) -> dict[str, Any]:
    """A run dict whose NaN or infinite metrics are None (JSON has no NaN; the reader maps None back)."""
    return {**run, "metrics": {k: M.finite_or_none(v) for k, v in run["metrics"].items()}}


def export_study(study: str, out: Path, tracking_uri: str | None = None, client=None) -> dict[str, Any]:
    """Write the study's run table, outcomes and manifest into ``out`` (created; files in it
    with the same names are replaced). Returns the manifest."""
    from study.analysis.outcomes import OUTCOMES_ARTIFACT, decode

    client = client or client_for(tracking_uri)
    runs = load_study(study, client=client)
    out.mkdir(parents=True, exist_ok=True)
    (out / OUTCOMES_DIR).mkdir(exist_ok=True)
    trials = [{**_json_safe(t), "summary": trial_summary(t)} for t in runs["trials"]]
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="freqstudy-export-") as tmp:
        for t in trials:
            if t["status"] != "FINISHED":
                continue
            path = download_artifact(t["run_id"], OUTCOMES_ARTIFACT, Path(tmp) / t["run_id"], client=client)
            if path is None:
                continue
            data = path.read_bytes()
            try:
                decode(data)  # what is shipped must read back
            except ValueError as e:
                raise ValueError(f"run {t['run_id']}: {OUTCOMES_ARTIFACT}: {e}") from None
            written.append(write_bytes_atomic(out / OUTCOMES_DIR / f"{t['run_id']}.npz", data))
    doc = {
        "format": EXPORT_FORMAT,
        "study": runs["study"],
        "experiment_id": runs["experiment_id"],
        "parent": None if runs["parent"] is None else _json_safe(runs["parent"]),
        "trials": trials,
    }
    text = json.dumps(doc, indent=1, sort_keys=True, allow_nan=False)
    written.append(write_text_atomic(out / RUNS_JSON, text + "\n"))
    written.append(write_bytes_atomic(out / RUNS_CSV, csv_bytes(_csv_rows(runs["trials"]))))
    files = {
        str(p.relative_to(out)): {
            "bytes": p.stat().st_size,
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
        }
        for p in sorted(written)
    }
    manifest = {"format": EXPORT_FORMAT, "study": runs["study"], "files": files}
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest
