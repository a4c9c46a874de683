"""Studies: Ray Tune runs the trials, Optuna chooses the points, MLflow keeps them.

``run_study`` turns a validated search space (``study.spaces``) into a
``tune.Tuner`` whose searcher is ``OptunaSearch`` over the space's
define-by-run function, with every objective and direction at once, behind a
``ConcurrencyLimiter``. Each trial is one call of ``study.tracking.run_tracked_trial``
inside a Ray worker: it logs its own nested MLflow run straight to the tracking
server (so trials on other nodes work), reports to Tune once per epoch with a
checkpoint, and reports the objectives last. Trial 0 is the study's baseline
(free mode, sigma = 0). A trial that raises is retried from its last checkpoint
up to ``max_failures`` times and then recorded as failed; the study goes on.
A diverged trial is told to Optuna with each objective at its ``worst`` value
(0 for a maximised accuracy): it finished, and its region is bad, which is what
the sampler should learn. ``--resume`` restores the Tune experiment (searcher
state included) and never re-runs finished trials. This is the only module
that imports Ray.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from study import metrics as M
from study.config import TrialConfig, default_home, parse_overrides
from study.spaces import BASELINE_FLAG, Objective, SearchSpace, define_by_run, load_space, make_sampler

DEFAULT_MAX_FAILURES = 2  # retries of a crashed trial (from its last checkpoint) before it is recorded as failed
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# Tune's strict check wants every objective in every report; ours are computed
# once, after the last epoch, so the per-epoch reports carry training metrics only.
STRICT_METRIC_ENV = "TUNE_DISABLE_STRICT_METRIC_CHECKING"
# Test-only fault injection, read inside the trainable: "frequency.mode=learned"
# makes every trial whose config has that value raise after its first epoch (on
# every retry), exercising the real failure path of the trial's MLflow run, Tune's
# retries and the searcher.
FAIL_WHEN_ENV = "FREQSTUDY_TEST_FAIL_WHEN"


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a study shares (shipped to workers by ``tune.with_parameters``)."""

    study: str
    fixed: dict[str, Any]  # dotted config values for every searched trial (space fixed + --set + data.dir)
    baseline: dict[str, Any]  # dotted config values of the baseline trial
    objectives: tuple[Objective, ...]
    tracking_uri: str | None  # None: no MLflow (the orchestration benchmark only)
    parent_run_id: str | None
    synthetic_seconds: float = 0.0  # > 0: a compute-only stand-in trial of this length (benchmark)
    gpus_per_trial: float = 0.0  # a fraction caps the trial's share of GPU memory (Ray does not)


@dataclass
class StudySummary:
    study: str
    experiment_path: str
    tracking_uri: str | None
    parent_run_id: str | None
    trials: list[dict[str, Any]] = field(default_factory=list)  # one per Tune trial: id, status, config, metrics
    wall_seconds: float = 0.0
    ray_start_seconds: float = 0.0  # joining or starting Ray (paid once per study)
    setup_seconds: float = 0.0  # before Ray: data and corruption caches, tracking server, parent run

    def count(self, status: str) -> int:
        return sum(1 for t in self.trials if t["status"] == status)

    def best(self, objective: Objective) -> dict[str, Any] | None:
        """The best finished trial with its full training budget, for one objective."""
        pool = [t for t in self.trials if t["status"] == "finished" and t.get("full_budget")
                and _finite(t["metrics"].get(objective.metric))]
        if not pool:
            return None
        sign = 1.0 if objective.direction == "maximize" else -1.0
        return max(pool, key=lambda t: sign * t["metrics"][objective.metric])


# -- the trial, inside a Ray worker ------------------------------------------------------


def trial_config(config: Mapping[str, Any], context: TrialContext, *, trial_name: str) -> TrialConfig:
    """The trial's full config from what Optuna suggested plus the study's context."""
    is_baseline = bool(config.get(BASELINE_FLAG))
    suggested = {k: v for k, v in config.items() if k != BASELINE_FLAG}
    flat = dict(context.baseline) if is_baseline else {**context.fixed, **suggested}
    flat["tracking.experiment"] = context.study
    flat["tracking.run_name"] = trial_name
    if context.tracking_uri:
        flat["tracking.uri"] = context.tracking_uri
    return TrialConfig.from_flat(flat)


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """The Tune function trainable: one tracked trial, reported per epoch."""
    tctx = tune.get_context()
    trial_id, trial_name = tctx.get_trial_id(), tctx.get_trial_name()
    is_baseline = bool(config.get(BASELINE_FLAG))
    cfg = trial_config(config, context, trial_name=f"{context.study}-{trial_name}")
    _cap_gpu_memory(context.gpus_per_trial)
    started = time.perf_counter()
    if context.synthetic_seconds > 0:
        final = _synthetic_trial(cfg, context)
    else:
        final = _tracked_trial(cfg, context, trial_id=trial_id, is_baseline=is_baseline)
    final["trial_seconds"] = time.perf_counter() - started
    final[BASELINE_FLAG] = is_baseline
    tune.report(final)


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
        raise ValueError(f"device {device!r} with 0 GPUs per trial: Ray would reserve none; set resources.gpus "
                         "in the space or --gpus-per-trial (e.g. 0.25 packs four trials per GPU), or device: cpu")
    return device


def _cap_gpu_memory(gpus_per_trial: float) -> None:
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


def _maybe_fail(cfg: TrialConfig) -> None:
    rule = os.environ.get(FAIL_WHEN_ENV, "")
    if "=" in rule:
        key, value = rule.split("=", 1)
        if str(cfg.to_flat().get(key.strip())) == value.strip():
            raise RuntimeError(f"injected failure: {key.strip()}={value.strip()} ({FAIL_WHEN_ENV})")


# Prepared data of this worker process, by data/eval settings: with reused actors a
# worker runs many trials, and loading CIFAR-10 once per worker, not per trial,
# is most of what a tiny trial would otherwise spend outside training.
_DATA_CACHE: dict[str, Any] = {}


def _prepared_data(cfg: TrialConfig):
    from study.trial import prepare_data

    key = repr((cfg.data, cfg.eval))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = prepare_data(cfg, workers=1)
    return _DATA_CACHE[key]


def _tracked_trial(cfg: TrialConfig, context: TrialContext, *, trial_id: str, is_baseline: bool) -> dict[str, Any]:
    from study.checkpoint import checkpoint_path, latest_checkpoint
    from study.tracking.runs import run_tracked_trial

    tags = {
        M.TAG_STUDY: context.study,
        M.TAG_ROLE: "trial",
        M.TAG_TRIAL_ID: trial_id,
        # Node id, not IP: the nodes of one machine (a local test cluster) share an IP.
        M.TAG_NODE: ray.get_runtime_context().get_node_id(),
        "freqstudy.node_ip": ray.util.get_node_ip_address(),
    }
    if is_baseline:
        tags[M.TAG_BASELINE] = "true"
    work = Path(tempfile.mkdtemp(prefix="freqstudy-trial-"))
    resume_from = None
    previous = tune.get_checkpoint()
    if previous is not None:
        # A retried (or resumed) trial continues from its last reported epoch.
        resume_from = latest_checkpoint(previous.to_directory(str(work / "restored")))

    def on_epoch(row: Mapping[str, Any]) -> None:
        _maybe_fail(cfg)  # before the checkpoint is handed to Tune, so a retry starts over
        report = {k: float(v) for k, v in row.items() if _finite(v) and k != "epoch"}
        report[M.EPOCHS_COMPLETED] = int(row["epoch"])
        report = progress_order(report, context.objectives)
        # <work>/checkpoints/<run_id>/epoch-NNNN.pt, when this epoch wrote one.
        newest = next((work / "checkpoints").glob(f"*/{checkpoint_path('.', int(row['epoch'])).name}"), None)
        if newest is None:
            tune.report(report)  # no checkpoint this epoch: Tune keeps the one it has
            return
        # Hand Tune a folder holding only this epoch's checkpoint.
        staged = work / f"report-{int(row['epoch']):04d}"
        staged.mkdir()
        os.link(newest, staged / newest.name)  # same folder tree: a hard link, no copy
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(str(staged)))
        shutil.rmtree(staged, ignore_errors=True)

    try:
        result = run_tracked_trial(cfg, tracking_uri=context.tracking_uri, parent_run_id=context.parent_run_id,
                                   tags=tags, on_epoch=on_epoch, checkpoint_dir=work / "checkpoints",
                                   resume_from=resume_from, data=_prepared_data(cfg))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    last_epoch = result.result.history[-1] if result.result is not None and result.result.history else {}
    metrics = {**{k: last_epoch[k] for k in (M.TRAIN_LOSS, M.FILTER_PROPORTION) if k in last_epoch}, **result.metrics}
    return final_report(metrics, context.objectives, status=result.status, run_id=result.run_id,
                        epochs=cfg.train.epochs)


def progress_order(report: Mapping[str, Any], objectives: tuple[Objective, ...]) -> dict[str, Any]:
    """The report with the objectives first, then loss and p-hat: Ray's progress
    table shows the first few metrics it meets, and these are the ones to watch
    (not the per-corruption details, which MLflow holds)."""
    first = [o.metric for o in objectives] + [M.FILTER_PROPORTION, M.TRAIN_LOSS, M.EPOCHS_COMPLETED]
    ordered = {k: report[k] for k in first if k in report}
    ordered.update((k, v) for k, v in report.items() if k not in ordered)
    return ordered


def final_report(metrics: Mapping[str, Any], objectives: tuple[Objective, ...], *, status: str,
                 run_id: str | None, epochs: int) -> dict[str, Any]:
    """The last result of a trial: every objective (worst-case when diverged or missing)."""
    out: dict[str, Any] = {k: float(v) for k, v in metrics.items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for o in objectives:
        value = out.get(o.metric)
        if status != "finished" or not _finite(value):
            out[o.metric] = o.worst
    out["trial_status"] = status
    out["run_id"] = run_id or ""
    out["full_budget"] = status == "finished" and int(out.get(M.EPOCHS_COMPLETED, epochs)) >= epochs
    return progress_order(out, objectives)


def _synthetic_trial(cfg: TrialConfig, context: TrialContext) -> dict[str, Any]:
    """A compute-only trial of a fixed length, reported per epoch with a checkpoint,
    for measuring what the orchestration around a trial costs."""
    import numpy as np

    per_epoch = context.synthetic_seconds / cfg.train.epochs
    rng = np.random.default_rng(cfg.seed)
    a = rng.standard_normal((64, 64))
    with tempfile.TemporaryDirectory(prefix="freqstudy-bench-") as ckpt:
        for epoch in range(1, cfg.train.epochs + 1):
            end = time.perf_counter() + per_epoch
            while time.perf_counter() < end:
                a = np.tanh(a @ a.T / 64.0)
            np.save(Path(ckpt) / "state.npy", a)
            tune.report({"train/loss": float(np.abs(a).mean()), M.EPOCHS_COMPLETED: epoch},
                        checkpoint=tune.Checkpoint.from_directory(ckpt))
    metrics = {o.metric: float(rng.uniform(10, 90)) for o in context.objectives}
    metrics[M.EPOCHS_COMPLETED] = cfg.train.epochs
    return final_report(metrics, context.objectives, status="finished", run_id=None, epochs=cfg.train.epochs)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# -- the driver ---------------------------------------------------------------------------


def experiment_path(storage: str | None, study: str) -> str:
    """Where Tune keeps the study: ``<storage>/<study>`` (a folder or a URI)."""
    root = storage or str(default_home() / "studies")
    if "://" in root:
        return root.rstrip("/") + "/" + study
    return str(Path(root).expanduser().resolve() / study)


def make_searcher(space: SearchSpace, *, max_concurrent: int) -> ConcurrencyLimiter:
    """OptunaSearch over the space (all objectives at once), baseline enqueued first."""
    searcher = OptunaSearch(
        space=define_by_run(space),
        metric=space.metrics,
        mode=space.modes,
        sampler=make_sampler(space),
        # An enqueued (user-specified) first trial: GridSampler then leaves it out
        # of the grid, and the define-by-run function marks trial 0 as the baseline.
        points_to_evaluate=[{}],
    )
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)


def optuna_study(path: str):
    """The Optuna study the searcher of a Tune experiment recorded (values per trial).

    Reads the searcher state Tune saved in the experiment folder.
    """
    searcher = OptunaSearch()
    limiter = ConcurrencyLimiter(searcher, max_concurrent=1)
    limiter.restore_from_dir(path)
    return limiter.searcher._ot_study  # Ray keeps no public accessor for it


def _trainable(context: TrialContext, space: SearchSpace, cpus: float, gpus: float):
    resources = {"cpu": cpus, "gpu": gpus} if gpus else {"cpu": cpus}
    return tune.with_resources(tune.with_parameters(run_trial, context=context), resources)


def run_study(
    space: SearchSpace,
    *,
    study: str,
    data_dir: str | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
    address: str | None = None,
    resume: bool = False,
    num_trials: int | None = None,
    max_concurrent: int | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    max_failures: int = DEFAULT_MAX_FAILURES,
    verbose: int = 1,
    synthetic_seconds: float = 0.0,
) -> StudySummary:
    """Run (or, with ``resume``, continue) a study; returns what happened to every trial.

    Args:
        space: a validated search space (``study.spaces.load_space``).
        study: study name: MLflow experiment and Tune experiment folder.
        data_dir: folder holding ``cifar-10-batches-py/`` (sets ``data.dir`` for every trial).
        tracking_uri: MLflow server; None starts the local one for the study's duration.
        storage: folder or URI for Tune's experiment state; default ``<FREQSTUDY_HOME>/studies``.
            Several nodes need storage they all reach (NFS or a bucket).
        address: a Ray cluster to join; None starts a local Ray on this machine's cores.
        num_trials, max_concurrent, cpus_per_trial, gpus_per_trial: override the space's defaults.
        max_failures: retries of a crashed trial before it is recorded as failed.
        synthetic_seconds: > 0 runs compute-only stand-in trials without MLflow (benchmark).
    """
    if not STUDY_NAME.match(study):
        raise ValueError(f"--study {study!r}: use letters, digits, '_', '.', '-' (up to 100, starting alphanumeric)")
    if resume and any(v is not None for v in (num_trials, max_concurrent, cpus_per_trial, gpus_per_trial)):
        print("freqstudy run: note: --resume continues with the study's original trial count, "
              "concurrency and resources; the flags given now are ignored")
    num_trials = space.num_trials if num_trials is None else num_trials
    max_concurrent = space.max_concurrent if max_concurrent is None else max_concurrent
    cpus = cpus_per_trial if cpus_per_trial is not None else space.cpus
    gpus = gpus_per_trial if gpus_per_trial is not None else space.gpus
    _check_positive(num_trials=num_trials, max_concurrent=max_concurrent, cpus_per_trial=cpus)
    if gpus < 0:
        raise ValueError(f"--gpus-per-trial {gpus}: must be >= 0")
    fixed = dict(space.fixed)
    baseline = space.baseline_flat()
    if "device" not in {p.key for p in space.parameters}:
        for flat in (fixed, baseline):
            flat["device"] = device_for_resources(str(flat.get("device", "auto")), gpus)
    if data_dir:
        fixed["data.dir"] = baseline["data.dir"] = str(Path(data_dir).expanduser().resolve())
    base_cfg = TrialConfig.from_flat(fixed)
    TrialConfig.from_flat(baseline)

    path = experiment_path(storage, study)
    exists = tune.Tuner.can_restore(path)
    if resume and not exists:
        raise ValueError(f"--resume: no study {study!r} at {path}; start it without --resume")
    if not resume and exists:
        raise ValueError(f"study {study!r} already exists at {path}; continue it with --resume or pick another --study")

    os.environ[STRICT_METRIC_ENV] = "1"
    started = time.perf_counter()
    tracking = synthetic_seconds <= 0
    if tracking:
        from study.tracking.server import local_tracking_uri
        from study.trial import prepare_data

        prepare_data(base_cfg)  # warm the data and corrupted-copy caches once, not per trial
        uri_context = local_tracking_uri(tracking_uri)
    else:
        uri_context = _nullcontext(None)

    with uri_context as uri:
        parent_run_id = None
        if tracking:
            from study.tracking.study_runs import start_study_run

            parent_run_id = start_study_run(
                uri, study, space_path=space.path, resume=resume,
                tags={M.TAG_CODE_VERSION: code_version(), "freqstudy.space": Path(space.path).name,
                      "freqstudy.sampler": space.sampler.name, "freqstudy.experiment_path": path},
                params={"study.space": space.path, "study.num_trials": num_trials,
                        "study.max_concurrent": max_concurrent, "study.cpus_per_trial": cpus,
                        "study.gpus_per_trial": gpus, "study.max_failures": max_failures,
                        "study.sampler": space.sampler.name, "study.sampler_seed": space.sampler.seed,
                        "study.objectives": ",".join(f"{o.metric}:{o.direction}" for o in space.objectives),
                        "study.parameters": ",".join(p.key for p in space.parameters)},
            )
        if address and uri and re.match(r"^https?://(127\.|localhost|\[::1\])", uri):
            print(f"freqstudy run: warning: tracking URI {uri} is a loopback address; trials on other "
                  "machines cannot reach it (pass --tracking-uri with the head node's address)")
        context = TrialContext(study=study, fixed=fixed, baseline=baseline, objectives=space.objectives,
                               tracking_uri=uri, parent_run_id=parent_run_id,
                               synthetic_seconds=synthetic_seconds, gpus_per_trial=gpus)
        setup_seconds = time.perf_counter() - started
        ray_started_at = time.perf_counter()
        started_ray = _init_ray(address)
        ray_start_seconds = time.perf_counter() - ray_started_at
        try:
            trainable = _trainable(context, space, cpus, gpus)
            if resume:
                tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
            else:
                storage_path, name = path.rsplit("/", 1) if "://" in path else (str(Path(path).parent), study)
                tuner = tune.Tuner(
                    trainable,
                    tune_config=tune.TuneConfig(search_alg=make_searcher(space, max_concurrent=max_concurrent),
                                                num_samples=num_trials, reuse_actors=True),
                    run_config=tune.RunConfig(
                        name=name, storage_path=storage_path, verbose=verbose,
                        failure_config=tune.FailureConfig(max_failures=max_failures),
                        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    ),
                )
            results = tuner.fit()
        finally:
            if started_ray:
                ray.shutdown()
        summary = StudySummary(study=study, experiment_path=path, tracking_uri=uri if tracking else None,
                               parent_run_id=parent_run_id, wall_seconds=time.perf_counter() - started,
                               ray_start_seconds=ray_start_seconds, setup_seconds=setup_seconds)
        for r in results:
            summary.trials.append(_trial_record(r))
        if tracking:
            from study.tracking.study_runs import finish_study_run

            finish_study_run(uri, parent_run_id, counts={
                "trials_finished": summary.count("finished"), "trials_diverged": summary.count("diverged"),
                "trials_failed": summary.count("failed"), "trials_total": len(summary.trials)})
    return summary


def _trial_record(result) -> dict[str, Any]:
    metrics = dict(result.metrics or {})
    config = dict(result.config or {})
    if result.error is not None:
        status = "failed"
    else:
        status = str(metrics.get("trial_status", "unknown"))
    return {
        "trial_id": metrics.get("trial_id") or config.get("trial_id"),
        "status": status,
        "baseline": bool(config.get(BASELINE_FLAG)),
        "config": {k: v for k, v in config.items() if k != BASELINE_FLAG},
        "metrics": metrics,
        "full_budget": bool(metrics.get("full_budget")),
        "error": None if result.error is None else str(result.error).strip().splitlines()[-1][:300],
        "path": result.path,
    }


def _init_ray(address: str | None) -> bool:
    """Join or start Ray; True when this call started it (and must shut it down).

    Workers get the folder holding this package on PYTHONPATH: a driver started
    from elsewhere with an uninstalled checkout would otherwise leave them unable
    to import ``study`` (an installed package is found either way).
    """
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")  # set for a driver submitted as a Ray job
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    runtime_env = {"env_vars": {"PYTHONPATH": path}}
    if address:
        ray.init(address=address, runtime_env=runtime_env)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, runtime_env=runtime_env)
    return True


def _check_positive(**values: float) -> None:
    for name, v in values.items():
        if v is None or v <= 0:
            raise ValueError(f"--{name.replace('_', '-')} {v}: must be > 0")


class _nullcontext:
    def __init__(self, value):
        self.value = value

    def __enter__(self):
        return self.value

    def __exit__(self, *exc):
        return False


def code_version() -> str:
    """``<package version>+<git commit>[.dirty]`` of the code running the study."""
    from importlib import metadata

    try:
        version = metadata.version("freqstudy")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    repo = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return version
    return f"{version}+{sha}{'.dirty' if dirty else ''}" if sha else version


def format_summary(summary: StudySummary, space: SearchSpace) -> str:
    """The end-of-study text: counts, best per objective, where to browse."""
    lines = [f"study {summary.study}: {len(summary.trials)} trials in {summary.wall_seconds:.0f} s: "
             f"{summary.count('finished')} finished, {summary.count('diverged')} diverged, "
             f"{summary.count('failed')} failed"]
    for o in space.objectives:
        best = summary.best(o)
        if best is None:
            lines.append(f"  best {o.metric} ({o.direction}): no finished trial with its full budget")
            continue
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(best["config"].items())) or "baseline"
        lines.append(f"  best {o.metric} ({o.direction}): {best['metrics'][o.metric]:.2f}  "
                     f"[{'baseline' if best['baseline'] else params}]  run {best['metrics'].get('run_id', '')}")
    for t in summary.trials:
        if t["status"] == "failed":
            lines.append(f"  failed {t['trial_id']}: {t['error']}")
    lines.append(f"  Tune experiment: {summary.experiment_path}")
    if summary.tracking_uri:
        lines.append(f"  MLflow: {summary.tracking_uri} (experiment {summary.study!r}, parent run {summary.parent_run_id})")
        lines.append("  browse the local store any time with: freqstudy ui")
    return "\n".join(lines)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def cmd_run(args) -> int:
    """``freqstudy run``: validate the space, run or resume the study, print the summary."""
    space = load_space(args.space).with_fixed(parse_overrides(args.overrides or []))
    summary = run_study(
        space, study=args.study, data_dir=args.data_dir, tracking_uri=args.tracking_uri, storage=args.storage,
        address=args.address, resume=args.resume, num_trials=args.num_trials, max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
    )
    print(format_summary(summary, space))
    return 0 if summary.count("failed") < len(summary.trials) else 1


# -- orchestration benchmark --------------------------------------------------------------


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
        path="<bench>", objectives=(Objective("val/clean_acc", "maximize", 0.0),
                                    Objective("val/corruption_acc", "maximize", 0.0)),
        sampler=load_space("smoke").sampler, fixed={"train.epochs": 2},
        parameters=load_space("smoke").parameters, num_trials=n_trials, max_concurrent=1)
    with tempfile.TemporaryDirectory(prefix="freqstudy-bench-") as storage:
        summary = run_study(space, study="bench", storage=storage, max_concurrent=1, cpus_per_trial=1,
                            verbose=0, synthetic_seconds=trial_seconds)
    compute = sum(float(t["metrics"].get("trial_seconds", 0.0)) for t in summary.trials)
    n = max(1, len(summary.trials))
    per_trial = (summary.wall_seconds - compute) / n
    return {"n_trials": len(summary.trials), "trial_seconds": trial_seconds, "wall_s": round(summary.wall_seconds, 2),
            "compute_s": round(compute, 2), "ray_start_s": round(summary.ray_start_seconds, 2),
            "per_trial_overhead_s": round(per_trial, 3),
            "per_trial_overhead_without_ray_start_s": round(per_trial - summary.ray_start_seconds / n, 3),
            "goal_s": 2.0, "meets_goal": per_trial <= 2.0}
