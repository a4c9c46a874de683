"""A study against a real PostgreSQL-backed tracking server, started the way
``cluster.yaml``'s head starts it: the same ``postgresql://`` URI form, psycopg 3 (the
``cluster`` extra), ``--workers 4``, job execution off, artifacts proxied to a destination
folder. ``freqstudy run --tracking-uri`` (real Ray, real trials on the CIFAR-10 subset),
then ``pareto --register``, ``report`` and ``compare``; what they wrote is read back from
PostgreSQL itself and from the artifact folder. The server command is built by the same
helper the bench uses, and checked flag for flag against ``cluster.yaml``.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from study import metrics as M
from study import yamlfiles
from study.cli import main
from study.tracking.server import HEAD_SERVER_WORKERS, LEAN_SERVER_ENV, group_members, head_server_command
from tests.cli_runner import finished_study
from tests.support import TINY_STUDY, set_flags

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
STUDY = "pg-tiny"


def _flags(argv: list[str]) -> dict[str, str]:
    """``--flag value`` pairs of a command line (every flag here takes one value)."""
    out, i = {}, 0
    while i < len(argv):
        if argv[i].startswith("--"):
            out[argv[i]] = argv[i + 1]
            i += 2
        else:
            i += 1
    return out


def cluster_head_command() -> tuple[dict[str, str], list[str]]:
    """``cluster.yaml``'s MLflow start: ``(environment assignments, mlflow server argv)``."""
    config = yamlfiles.load_file(REPO / "cluster.yaml", "cluster file")
    command = next(c for c in config["head_start_ray_commands"] if "mlflow server" in c)
    statement = next(s for s in command.split(";") if "mlflow server" in s)
    words = shlex.split(statement.split(">", 1)[0])  # up to its log redirection
    start = words.index("nohup")
    env = dict(w.split("=", 1) for w in words[:start] if "=" in w)
    return env, words[start + 1 :]


def test_the_server_command_is_the_one_cluster_yaml_runs():
    """Same flags, same worker count, same lean environment, same driver package: the test
    server cannot drift from the head's without this failing."""
    env, argv = cluster_head_command()
    assert argv[1:4] == ["-m", "mlflow", "server"]
    ours = head_server_command(
        backend_store_uri="postgresql://u:p@127.0.0.1:5432/mlflow",
        artifacts_destination="/tmp/artifacts",
        host="127.0.0.1",
        port=5000,
        allowed_hosts="localhost:5000",
    )
    head, mine = _flags(argv), _flags(ours)
    assert set(head) == set(mine), (sorted(head), sorted(mine))
    assert head["--workers"] == mine["--workers"] == str(HEAD_SERVER_WORKERS)
    assert (
        head["--backend-store-uri"] == "$BACKEND"
    )  # the secret holds postgresql://USER:PASSWORD@HOST:5432/mlflow
    assert "postgresql://USER:PASSWORD@HOST:5432/mlflow" in (REPO / "cluster.yaml").read_text()
    assert all(env.get(k) == v for k, v in LEAN_SERVER_ENV.items()), env
    # The head installs the driver the `cluster` extra names (SQLAlchemy 2 loads psycopg 3).
    from importlib.metadata import requires

    # The installed package's own metadata (tomllib would need Python 3.11).
    extra = [
        r.split(";")[0].replace(" ", "") for r in requires("freqstudy") or [] if 'extra == "cluster"' in r
    ]
    config = yamlfiles.load_file(REPO / "cluster.yaml", "cluster file")
    installed = " ".join(config["head_setup_commands"])
    assert [r.split(">")[0] for r in extra] == ["psycopg[binary]"] and '"psycopg[binary]"' in installed


@pytest.fixture(scope="module")
def study_on_postgres(home, postgres_mlflow_server, subset_dir, tmp_path_factory):
    """A tiny finished study (the baseline and one searched trial, models logged) on the PostgreSQL server."""
    server = postgres_mlflow_server
    settings = {
        **TINY_STUDY,
        "eval.test": True,
        "tracking.log_model": True,
    }  # `report` and `--register` need them
    sets = set_flags(settings)
    argv = ["--space", "smoke", "--study", STUDY]
    argv += ["--num-trials", 2, "--max-concurrent", 2, "--cpus-per-trial", 1]
    argv += ["--data-dir", subset_dir, "--tracking-uri", server.uri]
    finished_study(*argv, *sets, storage=tmp_path_factory.mktemp("pg-studies"), timeout=600)
    return server


def _query(server, sql: str, *args) -> list[tuple]:
    import psycopg

    with psycopg.connect(server.postgres.uri) as conn:
        return conn.execute(sql, args).fetchall()


def test_study_pareto_register_report_compare_land_in_postgresql(study_on_postgres, capsys, tmp_path):
    server = study_on_postgres
    # The server runs as configured: its parent and HEAD_SERVER_WORKERS uvicorn workers.
    assert len(group_members(server.proc.pid)) >= 1 + HEAD_SERVER_WORKERS

    # Runs, params, tags and metrics are rows of PostgreSQL's tables.
    (exp_id,) = _query(server, "select experiment_id from experiments where name = %s", STUDY)[0]
    runs = _query(
        server,
        "select r.run_uuid, r.status, t.value from runs r join tags t on t.run_uuid = r.run_uuid "
        "where r.experiment_id = %s and t.key = %s",
        exp_id,
        M.TAG_ROLE,
    )
    trials = {run_id for run_id, status, role in runs if role == "trial" and status == "FINISHED"}
    assert len(trials) == 2 and sum(role == "study" for _, _, role in runs) == 1
    assert all(status == "FINISHED" for _, status, _ in runs)  # nothing left RUNNING
    for key in (M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC, M.TRAIN_LOSS):
        rows = _query(server, "select run_uuid from latest_metrics where key = %s", key)
        assert trials <= {r[0] for r in rows}, key
    params = _query(server, "select count(*) from params where run_uuid = any(%s)", list(trials))[0][0]
    assert params >= 2 * 20
    # Artifacts went through the server's proxy into the destination folder.
    for run_id in trials:
        folder = server.artifacts / str(exp_id) / run_id / "artifacts"
        assert {"metrics.json", "config.yaml", "filters.npy", "model"} <= {p.name for p in folder.iterdir()}
        assert (folder / "model" / "weights.safetensors").stat().st_size > 0

    # pareto --register: registered versions and aliases in PostgreSQL's registry tables.
    assert main(["pareto", "--study", STUDY, "--tracking-uri", server.uri, "--register", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {r["run_id"] for r in rows} <= trials
    versions = _query(server, "select run_id from model_versions where name = %s", STUDY)
    assert {v[0] for v in versions} == {r["run_id"] for r in rows}
    aliases = {
        a[0] for a in _query(server, "select alias from registered_model_aliases where name = %s", STUDY)
    }
    assert {f"pareto-{i}" for i in range(1, len(rows) + 1)} <= aliases
    from study.tracking import load_registered_model

    model = load_registered_model(STUDY, f"pareto-{1}", server.uri)
    assert not model.training

    # report: written locally and logged under the parent run through the server.
    assert main(["report", "--study", STUDY, "--tracking-uri", server.uri, "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert (tmp_path / "r" / "report.html").stat().st_size > 0
    (parent,) = [run_id for run_id, _, role in runs if role == "study"]
    assert (server.artifacts / str(exp_id) / parent / "artifacts" / "report" / "report.html").exists()

    # compare: two trials image by image, from the outcomes stored behind the server.
    base = _query(
        server,
        "select run_uuid from tags where key = %s and value = 'true' and run_uuid = any(%s)",
        M.TAG_BASELINE,
        list(trials),
    )[0][0]
    other = sorted(trials - {base})[0]
    argv = [
        "compare",
        base,
        other,
        "--study",
        STUDY,
        "--tracking-uri",
        server.uri,
        "--split",
        "val",
        "--json",
    ]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["run_a"], doc["run_b"], doc["split"]) == (base, other, "val")
    clean = {d["statistic"]: d for d in doc["differences"]}["clean_acc"]
    logged = dict(
        _query(
            server,
            "select run_uuid, value from latest_metrics where key = %s and run_uuid = any(%s)",
            M.VAL_CLEAN_ACC,
            [base, other],
        )
    )
    assert clean["diff"] == pytest.approx(logged[other] - logged[base], abs=1e-6)  # B - A, from PostgreSQL
    assert clean["ci_low"] <= clean["diff"] <= clean["ci_high"]
