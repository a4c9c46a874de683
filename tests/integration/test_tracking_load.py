"""The ``tracking`` bench section at reduced scale (4 writers of a 3-epoch, 1-s-per-epoch trial
for 6 s) against the session's PostgreSQL-backed head server: no errors, a result document
whose figures agree with each other, and every run the writers reported as ended is a
FINISHED run in PostgreSQL with its metrics, artifacts and logged model. The full 8/32/128
figures are README's (``freqstudy bench --only tracking``)."""

from __future__ import annotations

import pytest

from study import metrics as M
from study.bench.tracking_payload import EPOCH_KEYS, QUICK_TRIAL
from study.bench.tracking_writers import request_kind

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_request_kinds_leave_ids_out():
    assert request_kind("POST", "http://h:1/api/2.0/mlflow/runs/log-batch") == "POST runs/log-batch"
    assert request_kind("PUT", "http://h:1/api/2.0/mlflow-artifacts/artifacts/3/abc/artifacts/x.png") == (
        "PUT artifacts"
    )
    assert request_kind("PATCH", "http://h:1/api/2.0/mlflow/logged-models/m-0123456789abcdef0123") == (
        "PATCH logged-models/{id}"
    )


def test_tracking_bench_at_reduced_scale(postgres_mlflow_server):
    import psycopg
    from mlflow.entities import LoggedModelStatus

    from study.bench.tracking import bench_tracking

    server = postgres_mlflow_server
    lines: list[str] = []
    doc = bench_tracking(quick=True, uri=server.uri, log=lines.append)
    trial = doc["trial"]
    assert trial["metrics_per_epoch"] == len(EPOCH_KEYS) and trial["epochs"] == QUICK_TRIAL.epochs
    assert trial["final_metrics"] > 2 * 19 * 5  # val and test, every corruption at every severity
    assert trial["artifact_files"] >= 8 and trial["model_mb"] > 0
    (level,) = doc["levels"]
    assert level["errors"] == 0 and level["writers_stopped"] == 0, (
        level["error_statuses"],
        level["writer_errors"],
    )
    assert level["writers"] == 4 and level["requests"] > 0
    assert level["requests_per_s"] == pytest.approx(level["requests"] / level["window_s"], rel=0.01)
    assert 0 < level["p50_ms"] <= level["p99_ms"] <= level["max_ms"]
    assert sum(e["n"] for e in level["by_endpoint"].values()) == level["requests"]
    # Writers log epochs no faster than a GPU trial would, and end whole trials.
    assert 0 < level["epoch_logs_per_s"] <= level["offered_epoch_logs_per_s"] * 1.01
    assert level["trials_finished"] >= 1
    assert 0 <= level["tracking_wait_share"]["mean"] <= level["tracking_wait_share"]["max"] <= 1
    assert {"POST runs/create", "POST runs/log-batch", "PUT artifacts", "POST logged-models"} <= set(
        level["by_endpoint"]
    )
    assert any("4 writers" in line and "req/s" in line for line in lines)

    # What the writers logged is in PostgreSQL: one FINISHED run per trial they ended.
    with psycopg.connect(server.postgres.uri) as conn:
        (exp_id,) = conn.execute(
            "select experiment_id from experiments where name = %s", (level["experiment"],)
        ).fetchone()
        finished = conn.execute(
            "select r.run_uuid from runs r join tags t on t.run_uuid = r.run_uuid "
            "where r.experiment_id = %s and r.status = 'FINISHED' and t.key = %s and t.value = 'trial'",
            (exp_id, M.TAG_ROLE),
        ).fetchall()
        assert len(finished) == level["trials_finished"]
        ids = [r[0] for r in finished]
        keys = conn.execute(
            "select count(distinct key) from latest_metrics where run_uuid = %s", (ids[0],)
        ).fetchone()[0]
        # Every final metric, and the epoch row's keys besides (val/clean_acc is in both).
        assert trial["final_metrics"] < keys <= trial["final_metrics"] + len(EPOCH_KEYS)
        ready = LoggedModelStatus.to_int(LoggedModelStatus.READY)
        models = conn.execute(
            "select count(*) from logged_models where source_run_id = any(%s) and status = %s", (ids, ready)
        ).fetchone()[0]
        assert models == len(ids)
    for run_id in ids:
        folder = server.artifacts / str(exp_id) / run_id / "artifacts"
        assert len([p for p in folder.iterdir() if p.is_file()]) == trial["artifact_files"]
        assert (folder / "model" / "weights.safetensors").exists()


def test_tracking_section_without_mlflow_or_psycopg_is_skipped_with_its_reason():
    """On a machine without the cluster extra (here: MLflow and psycopg blocked) the section is
    one skipped entry with its reason, the JSON is one document, and the exit status says none ran."""
    import json
    import subprocess
    import sys
    import textwrap

    from conftest import REPO

    block = textwrap.dedent("""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("mlflow", "psycopg"):
                    raise ImportError(f"{name} blocked for this test")
                return None
        sys.meta_path.insert(0, Block())
        from study.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", block, "bench", "--quick", "--json", "--only", "tracking"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["tracking"] == {
        "skipped": "psycopg is not installed: pip install -e '.[cluster]'"
    }
