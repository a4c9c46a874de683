"""Reading a study back out of MLflow: its parent run, its trial runs, metric
histories and artifacts, as plain dicts the pure modules can work on.

MLflow is the source of truth for a study (experiment = study; one parent run
tagged role ``study``; one run per trial tagged role ``trial``; every run
tagged with the study name). Everything here returns plain Python values
(``{"run_id", "name", "status", "start_time", "params", "metrics", "tags"}``),
so ``study.selection`` and the report never see an MLflow object. A study that
does not exist is a one-line ``ValueError`` naming the studies that do (a
missing metric is ``study.selection.choose.check_metrics``'s, naming the metrics).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from study import metrics as M
from study.errors import FieldError
from study.npyfiles import Expect, read_npy

if TYPE_CHECKING:
    from study.selection.choice import Choice

# Runs per page when listing a study: the server's cap; a study is hundreds of
# trials, so a few pages at most.
PAGE_SIZE = 1000


def client_for(tracking_uri: str | None):
    """An ``MlflowClient`` on the given server (None: ``MLFLOW_TRACKING_URI``);
    commands get the URI from ``study.tracking.server.local_tracking_uri``.

    The fluent API (model registration and loading) follows the same URI.
    """
    import mlflow

    from study.tracking.server import mlflow_client

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise FieldError("tracking_uri", ": none given; pass one or set MLFLOW_TRACKING_URI")
    # Commands read artifacts (outcomes, maps, models) per run: a progress bar for each
    # small file would bury the one-line messages on stderr.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow_client(uri)


def list_studies(client) -> list[str]:
    """Names of the experiments that hold at least one freqstudy run, sorted;
    every non-default experiment when none is tagged (older stores)."""
    exps = [e for e in client.search_experiments() if e.name != "Default"]
    tagged = []
    for e in exps:
        found = client.search_runs(
            [e.experiment_id], filter_string=f"tags.`{M.TAG_ROLE}` != ''", max_results=1
        )
        if found:
            tagged.append(e.name)
    return sorted(tagged or [e.name for e in exps])


def _run_to_dict(run) -> dict[str, Any]:
    return {
        "run_id": run.info.run_id,
        "name": run.info.run_name or run.info.run_id[:8],
        "status": run.info.status,  # MLflow's own: FINISHED, FAILED, KILLED, RUNNING
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "experiment_id": run.info.experiment_id,
        "params": dict(run.data.params),
        "metrics": {k: float(v) for k, v in run.data.metrics.items()},
        "tags": {
            k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.") or k == "mlflow.parentRunId"
        },
    }


def _search_all(client, experiment_ids: Sequence[str], filter_string: str = "") -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            list(experiment_ids),
            filter_string=filter_string,
            max_results=PAGE_SIZE,
            page_token=token,
            order_by=["attributes.start_time ASC"],
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def load_study(study: str, tracking_uri: str | None = None, client=None) -> dict[str, Any]:
    """A study's runs.

    Returns:
        ``{"study", "experiment_id", "parent": run dict or None, "trials": [run dict]}``;
        trials are the runs tagged role ``trial`` (or untagged, e.g. from
        ``freqstudy train`` into the study's experiment), oldest first.

    Raises:
        ValueError: naming the studies that exist when ``study`` is not one.
    """
    client = client or client_for(tracking_uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        names = list_studies(client)
        raise ValueError(f"study {study!r} not found; studies: {', '.join(names) if names else '(none)'}")
    runs = [_run_to_dict(r) for r in _search_all(client, [exp.experiment_id])]
    parents = [r for r in runs if r["tags"].get(M.TAG_ROLE) == "study"]
    trials = [
        r
        for r in runs
        if r["tags"].get(M.TAG_ROLE, "trial") == "trial" and r["tags"].get(M.TAG_STUDY, study) == study
    ]
    trials = one_run_per_trial(trials)
    # Several parents happen when a study is resumed with a new parent run; the
    # earliest is the study's, and trials point at theirs through mlflow.parentRunId.
    parent = min(parents, key=lambda r: r["start_time"] or 0) if parents else None
    return {"study": study, "experiment_id": exp.experiment_id, "parent": parent, "trials": trials}


def one_run_per_trial(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per Tune trial: a trial retried after a crash or a lost node has a run per
    attempt (the earlier ones KILLED or FAILED); its FINISHED run stands for it, else its
    latest. Runs without a trial id (``freqstudy train``) are kept; the order is kept."""
    latest: dict[str, dict[str, Any]] = {}
    for r in runs:
        tid = r["tags"].get(M.TAG_TRIAL_ID)
        if tid is None:
            continue
        seen = latest.get(tid)
        rank = (r["status"] == "FINISHED", r["start_time"] or 0)
        if seen is None or rank > (seen["status"] == "FINISHED", seen["start_time"] or 0):
            latest[tid] = r
    keep = {id(r) for r in latest.values()}
    return [r for r in runs if r["tags"].get(M.TAG_TRIAL_ID) is None or id(r) in keep]


def resolve_run_id(given: str, study: str, client, what: str = "run") -> str:
    """The run id ``given`` names in ``study``: a full run id, a trial id as ``pareto`` prints it
    (``freqstudy.trial_id``), or a unique prefix of a run id (8 characters or more).

    Raises:
        ValueError: one line when nothing or more than one run of the study matches.
    """
    exp = client.get_experiment_by_name(study)
    if exp is None or len(given) >= 32:
        return given  # run_in_study names what is wrong
    runs = one_run_per_trial([_run_to_dict(r) for r in _search_all(client, [exp.experiment_id])])
    found = [r for r in runs if r["tags"].get(M.TAG_TRIAL_ID) == given]
    if not found and len(given) >= 8:
        found = [r for r in runs if r["run_id"].startswith(given)]
    if len(found) > 1:
        ids = ", ".join(r["run_id"] for r in found[:4])
        raise ValueError(
            f"{what} {given}: names {len(found)} runs of study {study!r} ({ids}); give more of it"
        )
    return found[0]["run_id"] if found else given


def list_artifacts(
    run_id: str, path: str | None = None, tracking_uri: str | None = None, client=None
) -> list[str]:
    client = client or client_for(tracking_uri)
    return [a.path for a in client.list_artifacts(run_id, path)]


def download_artifact(
    run_id: str, path: str, dst: str | os.PathLike, tracking_uri: str | None = None, client=None
) -> Path | None:
    """Download one artifact of a run into ``dst``; None when the run has no such artifact."""
    client = client or client_for(tracking_uri)
    parent = str(Path(path).parent) if "/" in path else None
    if Path(path).name not in {Path(p).name for p in list_artifacts(run_id, parent, client=client)}:
        return None
    Path(dst).mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(dst)))


def run_params(run_id: str, tracking_uri: str | None = None, client=None) -> dict[str, str]:
    """A run's params (the flattened trial config as logged); a one-line ``ValueError``
    when the server has no such run."""
    from mlflow.exceptions import MlflowException

    client = client or client_for(tracking_uri)
    try:
        return dict(client.get_run(run_id).data.params)
    except MlflowException:
        raise ValueError(f"run {run_id}: not found at {client.tracking_uri}") from None


def log_files(
    run_id: str,
    paths: Iterable[str | os.PathLike],
    artifact_path: str,
    tracking_uri: str | None = None,
    client=None,
) -> None:
    """Attach files to an existing run (the study's parent run) under ``artifact_path``."""
    client = client or client_for(tracking_uri)
    for p in paths:
        client.log_artifact(run_id, str(p), artifact_path)


def load_outcomes(run_id: str, tracking_uri: str | None = None, client=None):
    """A run's per-image outcomes (``study.analysis.outcomes.Outcomes``), or None when it has none.

    The file is decoded without pickle; a malformed one is a one-line ``ValueError`` naming the run.
    """
    import tempfile

    from study.analysis.outcomes import OUTCOMES_ARTIFACT, decode

    client = client or client_for(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="freqstudy-outcomes-") as tmp:
        path = download_artifact(run_id, OUTCOMES_ARTIFACT, tmp, client=client)
        if path is None:
            return None
        data = path.read_bytes()
    try:
        return decode(data)
    except ValueError as e:
        raise ValueError(f"run {run_id}: {OUTCOMES_ARTIFACT}: {e}") from None


def run_in_study(run_id: str, study: str, tracking_uri: str | None = None, client=None, what: str = "run"):
    """The run ``run_id`` as a dict, checked to belong to ``study``; one-line ``ValueError`` otherwise."""
    from mlflow.exceptions import MlflowException

    client = client or client_for(tracking_uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        names = list_studies(client)
        raise FieldError("study", f" {study!r} not found; studies: {', '.join(names) if names else '(none)'}")
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ValueError(f"{what} {run_id}: no such run in {client.tracking_uri}") from None
    if run.info.experiment_id != exp.experiment_id:
        raise ValueError(f"{what} {run_id}: belongs to another experiment, not study {study!r}")
    return _run_to_dict(run)


# Artifacts of a trial run the report reads (written by study.reporting.trial_artifacts).
ALPHA_ARTIFACT = "alpha.npy"  # (O,) learned alpha of a learned-mode trial, when the trial logged it
METRICS_ARTIFACT = "metrics.json"  # its "alpha_history" is (epochs, O) in learned mode
FOURIER_ARTIFACT = "fourier_heatmap.npy"  # = study.analysis.fourier.FOURIER_HEATMAP_NPY (no torch here)


def learned_alpha(choice: Choice, client, workdir: Path) -> dict[str, np.ndarray]:
    """Per-filter alpha after the last epoch of each complete learned-mode trial.

    Read from the trial's ``alpha.npy`` artifact when it has one, else from the
    last row of ``alpha_history`` (epochs x filters) in its ``metrics.json``;
    trials with neither contribute their final ``filters/mean_alpha`` to one
    pooled box, so the figure still shows where the proportion went.
    """
    from study.selection.choice import trial_label
    from study.selection.choose import metric_of, param_of

    out: dict[str, np.ndarray] = {}
    pooled = []
    for c in choice.result.candidates:
        t = c.trial
        if param_of(t, "frequency.mode") != "learned":
            continue
        alpha = _alpha_from_artifacts(t["run_id"], client, workdir / t["run_id"], download_artifact)
        if alpha is not None:
            out[trial_label(t)] = alpha
        elif not math.isnan(metric_of(t, M.FILTER_MEAN_ALPHA)):
            pooled.append(metric_of(t, M.FILTER_MEAN_ALPHA))
    if pooled:
        out["mean α per trial"] = np.array(pooled)
    return out


def _alpha_from_artifacts(run_id: str, client, workdir: Path, download) -> np.ndarray | None:
    path = download(run_id, ALPHA_ARTIFACT, workdir, client=client)
    if path is not None:
        return read_npy(path, what=f"run {run_id}: {ALPHA_ARTIFACT}", expect=Expect("f", 1, 1 << 24))
    path = download(run_id, METRICS_ARTIFACT, workdir, client=client)
    if path is None:
        return None
    try:
        history = json.loads(Path(path).read_text()).get("alpha_history")
    except (OSError, ValueError, AttributeError, RecursionError):  # RecursionError: '[[[[...' too deep
        return None
    if not history:
        return None
    last = np.asarray(history[-1], dtype=float).ravel()
    return last if last.size and np.isfinite(last).all() else None


def fourier_maps(choice: Choice, client, workdir: Path) -> dict[str, np.ndarray]:
    """The Fourier heat maps that the baseline and the Pareto models logged, by their names
    in :func:`study.selection.choice.fourier_models` (at most ``MAX_FOURIER_PANELS``); models
    without one are left out.

    Each map is the trial's ``fourier_heatmap.npy`` artifact, loaded without pickle; a file
    that is not a square 2-D float array is skipped.
    """
    from study.selection.choice import MAX_FOURIER_PANELS, fourier_models

    out: dict[str, np.ndarray] = {}
    for name, t in fourier_models(choice):
        if len(out) == MAX_FOURIER_PANELS:
            break
        path = download_artifact(t["run_id"], FOURIER_ARTIFACT, workdir / t["run_id"], client=client)
        if path is None:
            continue
        try:
            heatmap = read_npy(path, what=FOURIER_ARTIFACT, expect=Expect("f", 2, 1 << 20))
        except (OSError, ValueError):
            continue
        if heatmap.ndim == 2 and heatmap.shape[0] == heatmap.shape[1] and heatmap.dtype.kind == "f":
            out[name] = heatmap
    return out
