"""Benchmark: what the orchestration around a trial costs (Ray Tune, Optuna,
checkpoints, storage), measured with compute-only trials of known length."""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path
from typing import Any

from study import metrics as M
from study.config import TrialConfig
from study.objectives import Objective
from study.search.space_parser import load_space
from study.search.spaces import SearchSpace
from study.search.trials import TrialContext, TrialRuntime, final_report
from study.search.tune import run_study  # Ray: an ImportError here tells the bench to skip this section


def synthetic_trial(
    cfg: TrialConfig, context: TrialContext, runtime: TrialRuntime, is_baseline: bool, *, seconds: float
) -> dict[str, Any]:
    """A compute-only trial of ``seconds``, reported per epoch with a checkpoint."""
    import numpy as np

    per_epoch = seconds / cfg.train.epochs
    rng = np.random.default_rng(cfg.seed)
    a = rng.standard_normal((64, 64))
    with tempfile.TemporaryDirectory(prefix="freqstudy-bench-") as ckpt:
        for epoch in range(1, cfg.train.epochs + 1):
            end = time.perf_counter() + per_epoch
            while time.perf_counter() < end:
                a = np.tanh(a @ a.T / 64.0)
            np.save(Path(ckpt) / "state.npy", a)
            runtime.report(
                {"train/loss": float(np.abs(a).mean()), M.EPOCHS_COMPLETED: epoch}, checkpoint_dir=ckpt
            )
    metrics = {o.metric: float(rng.uniform(10, 90)) for o in context.objectives}
    metrics[M.EPOCHS_COMPLETED] = cfg.train.epochs
    return final_report(metrics, context.objectives, status="finished", run_id=None, epochs=cfg.train.epochs)


def bench_orchestration(n_trials: int = 8, quick: bool = False) -> dict[str, Any]:
    """Per-trial orchestration cost of a study of tiny trials on this machine.

    Runs ``n_trials`` compute-only trials (``trial_seconds`` each, 2 epochs, a
    checkpoint per epoch) one at a time through the same Tuner, OptunaSearch,
    concurrency limiter, storage and checkpointing as a real study, and charges
    everything that is not the trials' own compute to orchestration:
    ``(study wall time - sum of trial compute) / n_trials``. Ray's start and
    stop are included (a study pays them once). Goal: <= 2 s per trial.

    Returns:
        ``{"n_trials", "trial_seconds", "wall_s", "compute_s", "ray_start_s", "per_trial_overhead_s",
        "per_trial_overhead_without_ray_start_s", "goal_s", "meets_goal"}`` (seconds).
    """
    trial_seconds = 0.2 if quick else 0.5
    space = SearchSpace(
        path="<bench>",
        objectives=(Objective("val/clean_acc", "maximize"), Objective("val/corruption_acc", "maximize")),
        sampler=load_space("smoke").sampler,
        fixed={"train.epochs": 2},
        parameters=load_space("smoke").parameters,
        num_trials=n_trials,
        max_concurrent=1,
    )
    with tempfile.TemporaryDirectory(prefix="freqstudy-bench-") as storage:
        summary = run_study(
            space,
            study="bench",
            storage=storage,
            max_concurrent=1,
            cpus_per_trial=1,
            verbose=0,
            trial_fn=functools.partial(synthetic_trial, seconds=trial_seconds),
            tracking=False,
            console=False,
        )
    compute = sum(float(t["metrics"].get("trial_seconds", 0.0)) for t in summary.trials)
    n = max(1, len(summary.trials))
    per_trial = (summary.wall_seconds - compute) / n
    return {
        "n_trials": len(summary.trials),
        "trial_seconds": trial_seconds,
        "wall_s": round(summary.wall_seconds, 2),
        "compute_s": round(compute, 2),
        "ray_start_s": round(summary.ray_start_seconds, 2),
        "per_trial_overhead_s": round(per_trial, 3),
        "per_trial_overhead_without_ray_start_s": round(per_trial - summary.ray_start_seconds / n, 3),
        "goal_s": 2.0,
        "meets_goal": per_trial <= 2.0,
    }
