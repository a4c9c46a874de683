"""Concurrent trial writers for the tracking load bench: each writer is a thread that
replays a GPU trial's tracking calls with the project's own MLflow client code, in the order
``study.search.trials.tracked_trial`` and ``study.tracking.runs.run_tracked_trial`` make them:

- start: the finished-run lookup (experiment by name, run search), the experiment check, the
  run's creation with its tags, its params in batches of 100;
- every ``epoch_seconds`` (the trial's GPU time, spent between two logs, so a slow server
  stretches the trial as it would a real one): one ``log_batch`` of the epoch's metrics;
- end: the data tag, the final metrics, the dataset inputs, the note, the artifacts, the model
  folder (as ``model/`` and as a logged model with its metrics linked), the status and the end.

Writers are threads of a few processes (on 2 cores, 128 processes each importing MLflow and
torch would measure their start, not the server). Every HTTP request is timed at
``requests``' adapter, where MLflow's own retries happen inside, so a latency is what the
trial waited, and a status of 400 or more, or an exception, counts as an error.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from study import metrics as M
from study.bench.tracking_payload import TrialPayload

_ID = re.compile(r"^(m-)?[0-9a-f]{16,}$|^\d+$")


def request_kind(method: str, url: str) -> str:
    """``POST runs/log-batch``, ``PUT artifacts``...: the endpoint, ids left out."""
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    if "mlflow-artifacts/artifacts/" in path:
        return f"{method} artifacts"
    parts = [p for p in path.split("/") if p and p not in ("api", "2.0", "3.0", "ajax-api", "mlflow")]
    return f"{method} " + "/".join("{id}" if _ID.match(p) else p for p in parts)


@dataclass
class Recorder:
    """Every HTTP request of this process to the server at ``uri``: ``(start wall time, seconds,
    kind, status or error name)``. Requests elsewhere (MLflow's client fetches its telemetry
    settings from config.mlflow-telemetry.io) are listed apart: they do not load the server."""

    uri: str
    requests: list[tuple[float, float, str, Any]] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)

    def note(self, request, started: float, seconds: float, outcome: Any) -> None:
        if not str(request.url).startswith(self.uri.rstrip("/") + "/"):
            self.elsewhere.append(str(request.url).split("?", 1)[0][:200])
        else:  # list.append is atomic under the GIL: the writer threads share the lists
            self.requests.append((started, seconds, request_kind(request.method, request.url), outcome))

    def install(self) -> None:
        """Record this process's requests here from now on (a pool process serves several levels)."""
        global _RECORDER
        _RECORDER = self
        _time_requests()


_RECORDER: Recorder | None = None


def _time_requests() -> None:
    """Time every request ``requests`` sends in this (writer) process into ``_RECORDER``: MLflow
    builds its session inside its client, so the adapter class is wrapped, once."""
    from requests.adapters import HTTPAdapter

    if getattr(HTTPAdapter.send, "freqstudy_timed", False):
        return
    original = HTTPAdapter.send

    def timed_send(adapter, request, **kwargs):
        started, t0 = time.time(), time.perf_counter()
        try:
            response = original(adapter, request, **kwargs)
        except Exception as e:
            if _RECORDER is not None:
                _RECORDER.note(request, started, time.perf_counter() - t0, type(e).__name__)
            raise
        if _RECORDER is not None:
            _RECORDER.note(request, started, time.perf_counter() - t0, response.status_code)
        return response

    timed_send.freqstudy_timed = True  # type: ignore[attr-defined]
    HTTPAdapter.send = timed_send  # type: ignore[method-assign,assignment]


@dataclass
class WriterPlan:
    """One process's share of a load level."""

    uri: str
    experiment: str
    parent_run_id: str
    writers: list[int]  # writer numbers (seeds and trial ids)
    start: float  # wall time the first trials may start (spread over warmup_s)
    warmup_s: float
    window: tuple[float, float]  # wall times of the measured window; writers stop at its end


def _trial(payload: TrialPayload, plan: WriterPlan, client, writer: int, n: int, first_epoch: int):
    from study.config import TrialConfig
    from study.tracking.runs import finished_run_of, start_trial_run

    name = f"bench w{writer} t{n}"
    trial_id = f"w{writer:04d}t{n:03d}"
    cfg = TrialConfig.from_flat(
        {**payload.flat_config, "tracking.experiment": plan.experiment, "tracking.run_name": name}
    )
    finished_run_of(plan.uri, plan.experiment, trial_id)
    tags = {M.TAG_STUDY: plan.experiment, M.TAG_ROLE: "trial", M.TAG_TRIAL_ID: trial_id}
    run_id = start_trial_run(client, cfg, parent_run_id=plan.parent_run_id, tags=tags)
    return cfg, run_id, first_epoch


def _end_trial(payload: TrialPayload, client, cfg, run_id: str) -> None:
    from pathlib import Path

    from study.tracking.logged_models import log_logged_model
    from study.tracking.notes import set_trial_note
    from study.tracking.runs import end_run, log_metrics

    client.set_tag(run_id, M.TAG_DATA, payload.fingerprint)
    log_metrics(client, run_id, payload.final_metrics, payload.shape.epochs)
    client.log_inputs(run_id, datasets=payload.datasets)
    set_trial_note(client, run_id, cfg, "finished", None, payload.final_metrics)
    client.log_artifacts(run_id, payload.artifacts_dir)
    client.log_artifacts(run_id, payload.model_dir, M.MODEL_ARTIFACT)
    log_logged_model(client, run_id, Path(payload.model_dir), step=payload.shape.epochs)
    end_run(client, run_id, "finished", None, mlflow_status="FINISHED")  # as a trial ends its run


def _writer(payload: TrialPayload, plan: WriterPlan, writer: int, out: dict[int, Any]) -> None:
    """One trial after another until the window ends; ``out`` gets its waits and counts."""
    from study.tracking.runs import log_metrics
    from study.tracking.server import mlflow_client

    rng = random.Random(writer)
    shape = payload.shape
    client = mlflow_client(plan.uri)
    waited = 0.0  # seconds spent in tracking calls inside the window
    counts: dict[str, Any] = {"epochs": 0, "trials_finished": 0, "errors": []}
    try:
        time.sleep(max(0.0, plan.start + rng.uniform(0, plan.warmup_s) - time.time()))
        n = 0
        # The first trial is caught at a random epoch, so trials end all through the window.
        cfg, run_id, epoch = _trial(payload, plan, client, writer, n, rng.randint(1, shape.epochs))
        time.sleep(max(0.0, plan.window[0] + rng.uniform(0, shape.epoch_seconds) - time.time()))
        while time.time() < plan.window[1]:
            t0 = time.time()
            row = {k: rng.uniform(0, 1) for k in payload.epoch_keys}
            log_metrics(client, run_id, row, epoch)
            counts["epochs"] += 1
            if epoch == shape.epochs:
                _end_trial(payload, client, cfg, run_id)
                counts["trials_finished"] += 1
                n += 1
                cfg, run_id, epoch = _trial(payload, plan, client, writer, n, 1)
            else:
                epoch += 1
            t1 = time.time()
            waited += max(0.0, min(t1, plan.window[1]) - max(t0, plan.window[0]))
            time.sleep(max(0.0, min(shape.epoch_seconds, plan.window[1] - time.time())))  # the GPU epoch
    except Exception as e:  # the writer's trial would have failed here: an error, and this writer stops
        counts["errors"].append(f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    out[writer] = {"waited_s": waited, **counts}


def run_writers(payload: TrialPayload, plan: WriterPlan) -> dict[str, Any]:
    """Run ``plan.writers`` as threads of this process; its requests and each writer's counts."""
    from study.tracking.server import bound_http

    bound_http()
    # One connection per writer, as each real trial has its own process and session.
    os.environ["MLFLOW_HTTP_POOL_MAXSIZE"] = str(max(10, len(plan.writers)))
    recorder = Recorder(plan.uri)
    recorder.install()
    out: dict[int, Any] = {}
    threads = [
        threading.Thread(target=_writer, args=(payload, plan, w, out), daemon=True) for w in plan.writers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "pid": os.getpid(),
        "requests": recorder.requests,
        "elsewhere": recorder.elsewhere,
        "writers": out,
    }
