"""What runs inside a study's worker, without Ray: the trial's config from
Optuna's suggestion, the tracked trial itself, and its final report.

``study.search.tune`` calls a *trial function* ``fn(cfg, context, runtime,
is_baseline) -> final metrics`` in each Ray worker; ``tracked_trial`` is the
real one (an MLflow-tracked ``study.engine`` trial), and benchmarks and tests
pass their own. ``runtime`` is how a trial talks back to the study
(``report``, ``restore``, ``trial_id``, ``tags``), so nothing here
imports Ray.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from study import metrics as M
from study.config import TrialConfig
from study.objectives import Objective
from study.search.race_scores import RACE_SCORES, scores_from_outcomes
from study.search.spaces import BASELINE_FLAG


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a study shares (shipped to the workers with the trainable)."""

    study: str
    fixed: dict[str, Any]  # dotted config values for every searched trial (space fixed + --set + data.dir)
    baseline: dict[str, Any]  # dotted config values of the baseline trial
    objectives: tuple[Objective, ...]
    tracking_uri: str | None  # None: no MLflow (benchmarks)
    parent_run_id: str | None
    gpus_per_trial: float = 0.0  # a fraction caps the trial's share of GPU memory (Ray does not)
    racing: bool = False  # the final report carries the validation scores the racer reads

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]


class TrialRuntime(Protocol):
    """The study, as a trial sees it (Ray Tune's side lives in ``study.search.tune``)."""

    trial_id: str
    trial_name: str
    tags: dict[str, str]  # where the trial runs and which replicate of which configuration it is

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None = None) -> None:
        """One result (once per epoch, and the final one), optionally with a checkpoint folder."""

    def restore(self, into: Path) -> Path | None:
        """The folder of the checkpoint a retried or resumed trial continues from, else None."""


TrialFunction = Callable[[TrialConfig, TrialContext, TrialRuntime, bool], dict]

# Keys the study adds to a suggested config (never config keys): the replicate's index
# (Ray's Repeater names it) and the configuration's id.
REPLICATE_KEY = "__trial_index__"
CONFIG_ID_KEY = "freqstudy_config_id"


def config_replicate(config: Mapping[str, Any]) -> int:
    """The replicate index 0..R-1 of a suggested config (0 when not replicated)."""
    return int(config.get(REPLICATE_KEY, 0) or 0)


def replicate_tags(config: Mapping[str, Any], trial_id: str) -> dict[str, str]:
    """MLflow tags naming the configuration a trial replicates and its index."""
    return {
        M.TAG_CONFIG_ID: str(config.get(CONFIG_ID_KEY) or trial_id),
        M.TAG_REPLICATE: str(config_replicate(config)),
    }


def trial_config(config: Mapping[str, Any], context: TrialContext, *, trial_name: str) -> TrialConfig:
    """The trial's full config from what Optuna suggested plus the study's context.

    Replicate ``i`` of a configuration (``REPLICATE_KEY`` in the suggestion) runs at
    ``seed + i``, where ``seed`` is the study's (fixed or searched) base seed.
    """
    is_baseline = bool(config.get(BASELINE_FLAG))
    suggested = {k: v for k, v in config.items() if k not in (BASELINE_FLAG, REPLICATE_KEY, CONFIG_ID_KEY)}
    flat = dict(context.baseline) if is_baseline else {**context.fixed, **suggested}
    flat["seed"] = int(flat.get("seed", 0)) + config_replicate(config)
    flat["tracking.experiment"] = context.study
    flat["tracking.run_name"] = trial_name
    if context.tracking_uri:
        flat["tracking.uri"] = context.tracking_uri
    return TrialConfig.from_flat(flat)


def device_for_resources(device: str, gpus_per_trial: float) -> str:
    """The trial device that agrees with the GPUs Ray reserves for a trial.

    A trial given no GPU must not find one: Ray 2.x leaves ``CUDA_VISIBLE_DEVICES``
    alone for zero-GPU actors, so ``auto`` would put every concurrent trial on
    GPU 0, unscheduled and uncapped. ``auto`` becomes ``cpu`` there, and an
    explicit ``cuda`` with no GPU reserved is an error before Ray starts.
    """
    if gpus_per_trial > 0:
        return device
    if device == "auto":
        return "cpu"
    if device.startswith("cuda"):
        raise ValueError(
            f"device {device!r} with 0 GPUs per trial: Ray would reserve none; set resources.gpus "
            "in the space or --gpus-per-trial (e.g. 0.25 packs four trials per GPU), or device: cpu"
        )
    return device


def cap_gpu_memory(gpus_per_trial: float) -> None:
    """Hold a trial that shares a GPU to its share of the memory.

    Fractional GPUs are a scheduling unit only: Ray lets co-located trials
    allocate freely, and the first to grow starves the rest (out of memory
    mid-epoch). Capping the caching allocator at the trial's fraction (less a
    margin for the CUDA context) makes an oversized batch fail in its own trial,
    where it is recorded, instead of in a neighbour.
    """
    if not 0.0 < gpus_per_trial < 1.0:
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(max(0.05, gpus_per_trial * 0.95))


# Prepared data of this worker process, by data/eval settings: with reused actors a
# worker runs many trials, and loading CIFAR-10 once per worker, not per trial,
# is most of what a tiny trial would otherwise spend outside training.
_DATA_CACHE: dict[str, Any] = {}


def _prepared_data(cfg: TrialConfig):
    from study.engine.prepare import prepare_data

    key = repr((cfg.data, cfg.eval))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = prepare_data(cfg, workers=1)
    return _DATA_CACHE[key]


def tracked_trial(
    cfg: TrialConfig, context: TrialContext, runtime: TrialRuntime, is_baseline: bool
) -> dict[str, Any]:
    """The real trial: an MLflow-tracked ``study.engine`` trial, reported per epoch with its checkpoint."""
    from study.engine.checkpoint import checkpoint_path, latest_checkpoint
    from study.tracking.runs import finished_run_of, run_tracked_trial

    if context.tracking_uri:
        # This trial, or this seed of its configuration under another trial id (a seed Tune
        # started again after a driver was killed before its checkpoint recorded the seed).
        done = finished_run_of(
            context.tracking_uri,
            cfg.tracking.experiment,
            runtime.trial_id,
            config_id=runtime.tags.get(M.TAG_CONFIG_ID),
            replicate=runtime.tags.get(M.TAG_REPLICATE),
        )
        if done is not None:  # finished before a driver was killed: report it, never run it twice
            run_id, metrics = done
            report = final_report(
                metrics, context.objectives, status="finished", run_id=run_id, epochs=cfg.train.epochs
            )
            if context.racing:
                from study.tracking.queries import load_outcomes

                scores = scores_from_outcomes(load_outcomes(run_id, context.tracking_uri), context.metrics)
                report.update({RACE_SCORES: scores} if scores else {})
            return report

    tags = {
        M.TAG_STUDY: context.study,
        M.TAG_ROLE: "trial",
        M.TAG_TRIAL_ID: runtime.trial_id,
        **runtime.tags,
    }
    if is_baseline:
        tags[M.TAG_BASELINE] = "true"
    work = Path(tempfile.mkdtemp(prefix="freqstudy-trial-"))

    def on_epoch(row: Mapping[str, Any]) -> None:
        report = {k: float(v) for k, v in row.items() if M.is_finite_number(v) and k != "epoch"}
        report[M.EPOCHS_COMPLETED] = int(row["epoch"])
        report = progress_order(report, context.objectives)
        # <work>/checkpoints/<run_id>/epoch-NNNN.pt, when this epoch wrote one.
        newest = next((work / "checkpoints").glob(f"*/{checkpoint_path('.', int(row['epoch'])).name}"), None)
        if newest is None:
            runtime.report(report)  # no checkpoint this epoch: the study keeps the one it has
            return
        # Hand the study a folder holding only this epoch's checkpoint.
        staged = work / f"report-{int(row['epoch']):04d}"
        staged.mkdir()
        os.link(newest, staged / newest.name)  # same folder tree: a hard link, no copy
        runtime.report(report, checkpoint_dir=str(staged))
        shutil.rmtree(staged, ignore_errors=True)

    try:
        restored = runtime.restore(work / "restored")
        # A retried (or resumed) trial continues from its last reported epoch.
        resume_from = None if restored is None else latest_checkpoint(restored)
        result = run_tracked_trial(
            cfg,
            tracking_uri=context.tracking_uri,
            parent_run_id=context.parent_run_id,
            tags=tags,
            on_epoch=on_epoch,
            checkpoint_dir=work / "checkpoints",
            resume_from=resume_from,
            data=_prepared_data(cfg),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    last_epoch = result.result.history[-1] if result.result is not None and result.result.history else {}
    metrics = {
        **{k: last_epoch[k] for k in (M.TRAIN_LOSS, M.FILTER_PROPORTION) if k in last_epoch},
        **result.metrics,
    }
    report = final_report(
        metrics, context.objectives, status=result.status, run_id=result.run_id, epochs=cfg.train.epochs
    )
    if context.racing and result.result is not None:
        scores = scores_from_outcomes(result.result.outcomes, context.metrics)
        report.update({RACE_SCORES: scores} if scores else {})
    return report


def progress_order(report: Mapping[str, Any], objectives: tuple[Objective, ...]) -> dict[str, Any]:
    """The report with the objectives first, then loss and p-hat: Ray's progress
    table shows the first few metrics it meets, and these are the ones to watch
    (not the per-corruption details, which MLflow holds)."""
    first = [o.metric for o in objectives] + [M.FILTER_PROPORTION, M.TRAIN_LOSS, M.EPOCHS_COMPLETED]
    ordered = {k: report[k] for k in first if k in report}
    ordered.update((k, v) for k, v in report.items() if k not in ordered)
    return ordered


def final_report(
    metrics: Mapping[str, Any],
    objectives: tuple[Objective, ...],
    *,
    status: str,
    run_id: str | None,
    epochs: int,
) -> dict[str, Any]:
    """The last result of a trial: every objective (worst-case when diverged or missing)."""
    out: dict[str, Any] = {
        k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    for o in objectives:
        value = out.get(o.metric)
        if status != "finished" or not M.is_finite_number(value):
            out[o.metric] = o.worst
    out["trial_status"] = status
    out["run_id"] = run_id or ""
    out["full_budget"] = status == "finished" and int(out.get(M.EPOCHS_COMPLETED, epochs)) >= epochs
    return progress_order(out, objectives)


# -- the driver ---------------------------------------------------------------------------
