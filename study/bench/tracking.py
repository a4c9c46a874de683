"""Bench section ``tracking``: the head's tracking server under many concurrent GPU trials.

``mlflow server`` is started as ``cluster.yaml``'s head starts it (``study.bench.head_server``:
PostgreSQL backend, psycopg 3, four workers, job execution off, artifacts proxied to a folder);
then 8, 32 and 128 trial writers (``study.bench.tracking_writers``: threads of up to 8
processes, the project's own MLflow client calls) each log a real trial's metrics, params,
dataset inputs, artifacts and model (``study.bench.tracking_payload``) at a GPU trial's pace,
one level after another, each for a measured window after a warm-up in which every writer
created its first run. Per level: HTTP requests per second, p50/p99 latency (overall, per
endpoint), errors (a status of 400 or more, an exception, a writer that stopped), and the share
of each trial's time spent waiting on tracking: what a GPU would idle.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from study import metrics as M
from study.bench.tracking_payload import GPU_TRIAL, QUICK_TRIAL, TrialPayload, build_payload
from study.bench.tracking_writers import WriterPlan, run_writers

LEVELS = (8, 32, 128)
QUICK_LEVELS = (4,)
WINDOW_S = 75.0  # 15 epochs of every writer; ~half the trials end (and start again) inside it
QUICK_WINDOW_S = 6.0
MAX_PROCESSES = 8  # writers per process = writers / processes (128: 16 threads each)


def processes_for(writers: int) -> int:
    return max(1, min(MAX_PROCESSES, writers // 4))


def _import_writer_modules() -> None:
    """Pool initializer: pay MLflow's and torch's import before any window opens."""
    import study.tracking.logged_models  # noqa: F401
    import study.tracking.runs  # noqa: F401


def _ready(_: int) -> int:
    time.sleep(0.5)  # keeps each of these tasks on its own process
    return os.getpid()


def _percentiles(seconds: Sequence[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ms = np.asarray(seconds) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def _is_error(status: Any) -> bool:
    return not isinstance(status, int) or status >= 400


def summarize_level(
    writers: int, processes: int, window: tuple[float, float], results: list[dict[str, Any]], epoch_s: float
) -> dict[str, Any]:
    """One level's figures from the writer processes' records (requests started in the window)."""
    start, end = window
    span = end - start
    every = [r for res in results for r in res["requests"]]
    inside = [r for r in every if start <= r[0] < end]
    per_writer = {w: v for res in results for w, v in res["writers"].items()}
    kinds: dict[str, list[float]] = {}
    for _, seconds, kind, _ in inside:
        kinds.setdefault(kind, []).append(seconds)
    errors = [r for r in every if _is_error(r[3])]
    statuses: dict[str, int] = {}
    for r in errors:
        statuses[f"{r[2]} {r[3]}"] = statuses.get(f"{r[2]} {r[3]}", 0) + 1
    writer_errors = [e for v in per_writer.values() for e in v["errors"]]
    waits = [v["waited_s"] / span for v in per_writer.values()]
    epochs = sum(v["epochs"] for v in per_writer.values())
    return {
        "writers": writers,
        "processes": processes,
        "threads_per_process": -(-writers // processes),
        "window_s": round(span, 1),
        "requests": len(inside),
        "requests_per_s": round(len(inside) / span, 1),
        **_percentiles([r[1] for r in inside]),
        "errors": len(errors),  # requests answered with >= 400 or not at all (after MLflow's retries)
        "error_statuses": statuses,
        # Writers whose trial would have failed (a call raised; its request is among the errors).
        "writers_stopped": sum(bool(v["errors"]) for v in per_writer.values()),
        "writer_errors": writer_errors[:3],
        "epoch_logs_per_s": round(epochs / span, 2),
        "offered_epoch_logs_per_s": round(writers / epoch_s, 2),
        "trials_finished": sum(v["trials_finished"] for v in per_writer.values()),
        "tracking_wait_share": {
            "mean": round(float(np.mean(waits)), 4) if waits else None,
            "max": round(float(np.max(waits)), 4) if waits else None,
        },
        "by_endpoint": {
            k: {"n": len(v), **_percentiles(v)} for k, v in sorted(kinds.items(), key=lambda kv: -len(kv[1]))
        },
    }


def level_line(r: dict[str, Any]) -> str:
    mean, most = (100 * (r["tracking_wait_share"][k] or 0) for k in ("mean", "max"))
    return (
        f"tracking: {r['writers']} writers ({r['processes']} processes): {r['requests_per_s']:.1f} req/s, "
        f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, {r['errors']} errors "
        f"({r['writers_stopped']} writers stopped), "
        f"{r['trials_finished']} trials ended; trials waited {mean:.1f}% of their time on tracking "
        f"(max {most:.1f}%)"
    )


def measure(
    uri: str,
    payload: TrialPayload,
    levels: Sequence[int],
    window_s: float,
    log: Callable[..., None] = print,
) -> list[dict[str, Any]]:
    """Run each level against the server at ``uri``; one result per level."""
    from study.tracking.experiments import ensure_experiment
    from study.tracking.server import mlflow_client

    client = mlflow_client(uri)
    most = max(processes_for(n) for n in levels)
    out = []
    # spawn: fresh interpreters (no fork of a process holding torch threads and HTTP pools).
    with multiprocessing.get_context("spawn").Pool(most, initializer=_import_writer_modules) as pool:
        pool.map(_ready, range(most), chunksize=1)
        for writers in levels:
            name = f"bench-tracking-{writers}-{uuid.uuid4().hex[:6]}"
            exp_id = ensure_experiment(client, name)
            parent = client.create_run(exp_id, tags={M.TAG_ROLE: "study", M.TAG_STUDY: name}).info.run_id
            n_proc = processes_for(writers)
            warmup = payload.shape.epoch_seconds
            start = time.time() + 1.0
            window = (start + warmup + 2.0, start + warmup + 2.0 + window_s)
            plans = [
                WriterPlan(uri, name, parent, list(range(p, writers, n_proc)), start, warmup, window)
                for p in range(n_proc)
            ]
            load_before = os.getloadavg()[0]
            log(f"tracking: {writers} writers for {window_s:.0f} s after a {warmup + 3:.0f} s warm-up ...")
            results = pool.starmap(run_writers, [(payload, plan) for plan in plans])
            level = summarize_level(writers, n_proc, window, results, payload.shape.epoch_seconds)
            level["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
            level["experiment"] = name
            level["requests_elsewhere"] = sorted({u for res in results for u in res["elsewhere"]})[:5]
            client.set_terminated(parent)
            log(level_line(level))
            out.append(level)
    return out


def _postgres_version() -> str:
    from study.bench.postgres import postgres_bin_dir

    done = subprocess.run([str(postgres_bin_dir() / "postgres"), "--version"], capture_output=True, text=True)
    return done.stdout.strip()


def bench_tracking(
    *,
    quick: bool = False,
    levels: Sequence[int] | None = None,
    window_s: float | None = None,
    uri: str | None = None,
    log: Callable[..., None] = print,
) -> dict[str, Any]:
    """The ``tracking`` section: a head-style server started here (or the one at ``uri``), then
    the load levels (default 8, 32, 128 writers of :data:`GPU_TRIAL`; ``quick``: 4 of ``QUICK_TRIAL``).

    Raises:
        study.bench.postgres.PostgresMissing: no PostgreSQL here (the section is skipped).
    """
    from study.bench.head_server import head_tracking_server
    from study.bench.postgres import postgres_bin_dir
    from study.tracking.server import HEAD_SERVER_WORKERS, LEAN_SERVER_ENV

    if uri is None:
        postgres_bin_dir()  # no PostgreSQL: say so before minutes of rendering
    shape = QUICK_TRIAL if quick else GPU_TRIAL
    levels = tuple(levels or (QUICK_LEVELS if quick else LEVELS))
    window_s = window_s or (QUICK_WINDOW_S if quick else WINDOW_S)
    with tempfile.TemporaryDirectory(prefix="freqstudy-bench-tracking-") as tmp:
        log(f"tracking: rendering one trial's artifacts and model (width {shape.width}) ...")
        payload = build_payload(Path(tmp) / "trial", shape)
        doc: dict[str, Any] = {
            "trial": payload.summary(),
            "writers_are": "threads of up to 8 processes, each thread one trial, through MLflow's client",
        }
        if uri is None:
            log("tracking: starting PostgreSQL and the head's mlflow server (a minute on 2 cores) ...")
            with head_tracking_server(Path(tmp) / "head") as server:
                doc["server"] = {
                    "backend": _postgres_version(),
                    "workers": HEAD_SERVER_WORKERS,
                    "env": LEAN_SERVER_ENV,
                    "artifacts": "proxied by the server to a local folder (S3 on the head)",
                }
                doc["levels"] = measure(server.uri, payload, levels, window_s, log)
        else:
            doc["server"] = {"uri": uri}
            doc["levels"] = measure(uri, payload, levels, window_s, log)
    return doc
