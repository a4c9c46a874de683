"""What several tests need and production does not: reading a study back out of
MLflow and out of Tune's saved searcher, a trial function that fails on
purpose, and files whose loading would run code. Ray workers import this module
as ``tests.support`` (the repository root is on their path), so a failing trial
runs the real failure path."""

from __future__ import annotations

import json
import pathlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from study import metrics as M


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def count_study_runs(tracking_uri: str, study: str) -> int:
    """How many parent runs the study has (one, however often it was resumed)."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        return 0
    return len(
        client.search_runs(
            [exp.experiment_id], max_results=1000, filter_string=f"tags.`{M.TAG_ROLE}` = 'study'"
        )
    )


def trial_runs(
    tracking_uri: str, parent_run_id: str, *, with_artifacts: bool = False
) -> list[dict[str, Any]]:
    """The nested trial runs of a study.

    Each is ``{run_id, status, start_time, tags, metrics, params[, artifacts]}``.
    """
    client = _client(tracking_uri)
    parent = client.get_run(parent_run_id)
    out, token = [], None
    while True:
        page = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
            max_results=1000,
            page_token=token,
        )
        for r in page:
            row = {
                "run_id": r.info.run_id,
                "status": r.info.status,
                "start_time": r.info.start_time,
                "tags": dict(r.data.tags),
                "metrics": dict(r.data.metrics),
                "params": dict(r.data.params),
            }
            if with_artifacts:
                row["artifacts"] = [a.path for a in client.list_artifacts(r.info.run_id)]
            out.append(row)
        token = page.token
        if not token:
            return out


def tune_states(path: str | Path) -> dict[str, str]:
    """``{trial_id: status}`` from the newest Tune experiment state in ``path`` (what a resume
    reads); empty before the first one is written, or when it is caught mid-write."""
    files = sorted(Path(path).glob("experiment_state-*.json"))
    if not files:
        return {}
    try:
        data = json.loads(files[-1].read_text())
    except (json.JSONDecodeError, OSError):
        return {}
    return {json.loads(e[0])["trial_id"]: json.loads(e[0])["status"] for e in data["trial_data"]}


def ended_trials(path: str | Path) -> int:
    """How many trials the newest Tune experiment state in ``path`` records as TERMINATED."""
    return list(tune_states(path).values()).count("TERMINATED")


def run_then_kill(cmd: list[str], path: str, tmp_path: Path, *, terminated: int) -> set[str]:
    """Start a study driver (``cmd``, from the repository root), SIGKILL it once the Tune
    folder ``path`` records ``terminated`` trials as ended; their ids. Its console goes to
    ``tmp_path/driver.log`` (shown when it ends early), checked for tracebacks."""
    import signal
    import subprocess
    import time

    from tests.cli_runner import REPO, no_traceback

    log_path = tmp_path / "driver.log"
    log = open(log_path, "w")
    driver = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 400
        while time.time() < deadline and driver.poll() is None:
            if ended_trials(path) >= terminated:
                break
            time.sleep(1)
        assert driver.poll() is None, f"driver ended early: {log_path.read_text()[-3000:]}"
        done_before = {tid for tid, s in tune_states(path).items() if s == "TERMINATED"}
        assert len(done_before) >= terminated, log_path.read_text()[-3000:]
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    no_traceback(log_path.read_text(), cmd[3:])  # cmd[3:]: after python -m study.cli
    return done_before


def optuna_study(path: str):
    """The Optuna study the searcher of a Tune experiment saved (its values per trial)."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    limiter = ConcurrencyLimiter(OptunaSearch(), max_concurrent=1)
    limiter.restore_from_dir(path)
    return limiter.searcher._ot_study  # Ray keeps no public accessor for it


def fail_learned_mode(cfg, context, runtime, is_baseline):
    """The real tracked trial, except that every learned-mode trial raises after its
    first epoch (on every retry), before that epoch's checkpoint reaches the study."""
    from study.search.trials import tracked_trial

    class FailingRuntime:
        def __init__(self, inner):
            self.inner = inner
            self.trial_id, self.trial_name, self.tags = inner.trial_id, inner.trial_name, inner.tags

        def report(self, metrics, checkpoint_dir=None):
            if cfg.frequency.mode == "learned":
                raise RuntimeError("injected failure: frequency.mode=learned")
            self.inner.report(metrics, checkpoint_dir)

        def restore(self, into):
            return self.inner.restore(into)

    return tracked_trial(cfg, context, FailingRuntime(runtime), is_baseline)


class Payload:
    """Unpickling it touches ``marker``: a stand-in for ``os.system`` in a file that a loader
    must never unpickle. A test that refuses such a file also shows the payload is real."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def pickled_payload(marker: Path) -> bytes:
    """A bare pickle that touches ``marker`` when loaded (``np.load(allow_pickle=True)`` loads it)."""
    return pickle.dumps(Payload(marker))


def object_array_npy(path: Path, marker: Path) -> Path:
    """A well-formed ``.npy`` of dtype object whose element touches ``marker`` when loaded."""
    np.save(path, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    return path


def coin_outcomes(rng, p_clean: float, p_corrupt: float, *, n: int, seed_sd: float = 0.0):
    """One run's per-image outcomes (``study.analysis.outcomes.Outcomes``) on the same ``n``
    images of the test and val splits: each clean image right with probability ``p_clean``,
    each image of every benchmark corruption at severity 3 with ``p_corrupt``, both shifted
    by the seed's luck (normal, sd ``seed_sd``, shared by all the run's images)."""
    from study.analysis.outcomes import Outcomes

    shift = rng.normal(0.0, seed_sd) if seed_sd else 0.0
    arrays = {}
    for split in ("test", "val"):
        arrays[f"{split}/clean"] = rng.random(n) < p_clean + shift
        for c in M.BENCHMARK_CORRUPTIONS:
            arrays[f"{split}/{c}/3"] = rng.random(n) < p_corrupt + shift
    fp = {
        "source": "x",
        "n": n,
        "corruption_limit": 0,
        "corrupted_copy": "generated-v2",
        "corruption_seed": 0,
    }
    return Outcomes(arrays=arrays, fingerprints={"test": fp, "val": dict(fp)})


# A smoke study's settings cut to seconds per trial: what the integration studies run.
TINY_STUDY: dict[str, Any] = {
    "train.epochs": 1,
    "data.train_limit": 500,
    "train.batch_size": 128,
    "eval.corruption_limit": 5,
    "eval.corruptions": ["gaussian_noise", "contrast"],
    "eval.severities": [1, 3],
    "eval.test": False,
}


# One tracked `freqstudy train` cut to seconds: two corruptions, 20 images per severity.
QUICK_TRAIN: dict[str, Any] = {
    "data.train_limit": 1000,
    "train.batch_size": 100,
    "data.download": False,
    "eval.corruptions": ["gaussian_noise", "fog"],
    "eval.corruption_limit": 20,
    "eval.batch_size": 500,
}


def set_flags(settings: dict[str, Any]) -> list[str]:
    """``--set KEY=VALUE`` for each setting, the value written as JSON (which ``--set`` reads)."""
    return [arg for k, v in settings.items() for arg in ("--set", f"{k}={json.dumps(v)}")]


def simulated_study(seed: int, *, configurations: int, seeds: int, regime=None):
    """A harness problem, its runs as the harness keeps them, and the same runs' per-image
    validation scores ``(J, K, S, n_j)`` (one array per objective): what a test trainable
    reports for seed ``s`` of configuration ``k``, so that a study driven seed by seed sees
    exactly the runs the in-process harness sees."""
    from study.analysis import simulate
    from study.search import harness as H

    regime = regime or simulate.SEED_DOMINATED
    rng = np.random.default_rng(seed)
    problem = H.draw_problem(rng, regime, configurations=configurations)
    state = rng.bit_generator.state
    runs = H.draw_runs(rng, regime, problem, seeds)
    again = np.random.default_rng()
    again.bit_generator.state = state
    sim = simulate.simulate(again, regime, problem.shift, seeds, clean_shift=problem.clean_shift)
    sc = simulate.scores(sim)
    ys = [sc[o][0] for o in H.OBJECTIVES]  # (K, S, n) each
    for j, y in enumerate(ys):  # the same draws as the harness's runs
        assert np.array_equal(y.mean(axis=-1), runs.run_means[j])
    return problem, runs, ys


class SimulatedTrial:
    """A trial function (``study.search.trials.TrialFunction``) that trains nothing: the
    configuration is the index of ``train.lr`` in ``lrs`` (the baseline is 0), the seed
    index is ``cfg.seed``, and it reports that simulated run's objectives and validation
    scores, as a tracked trial of a racing study does."""

    def __init__(self, ys, lrs):
        self.ys = ys
        self.lrs = list(lrs)

    def result(self, config: int, seed: int) -> dict:
        from study.search.harness import OBJECTIVES
        from study.search.race_scores import RACE_SCORES, encode_scores

        scores = {f"val/{o}": self.ys[j][config, seed] for j, o in enumerate(OBJECTIVES)}
        out = {m: 100.0 * float(y.mean()) for m, y in scores.items()}
        return {**out, RACE_SCORES: encode_scores(scores), "trial_status": "finished", "run_id": ""}

    def __call__(self, cfg, context, runtime, is_baseline):
        config = 0 if is_baseline else 1 + self.lrs.index(cfg.train.lr)
        return self.result(config, int(cfg.seed))


def race_book(path: str):
    """The race book a racing study's searcher saved in its Tune folder (Tune's own pickle of
    the searcher wrappers' states; the book inside is plain data)."""
    import glob
    import os

    import ray.cloudpickle as cloudpickle

    from study.search.races import RaceBook

    newest = max(glob.glob(os.path.join(path, "search_gen_state-*.json")))
    with open(newest, "rb") as f:
        state = cloudpickle.load(f)
    return RaceBook.from_dict(state["name:RacingSearcher"]["book"])
