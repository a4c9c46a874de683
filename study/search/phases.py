"""The phases of a study that need no Ray: its plan (resources, device, the configs
every trial starts from), its parent MLflow run, the console's opening line, the
libraries' quiet, each trial's record and the study's close.

``study.search.tune.run_study`` runs them around the Tuner, the one part that needs Ray.
Errors name the keyword a caller passed (:class:`study.errors.FieldError`); notes and
warnings go to the ``study.search`` logger, and the command decides what reaches the console.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from study.config import TrialConfig
from study.errors import FieldError, Stopped
from study.search.race_scores import RACE_SCORES
from study.search.spaces import BASELINE_FLAG, SearchSpace
from study.search.summary import StudySummary
from study.search.trials import TrialContext, device_for_resources

log = logging.getLogger(__name__)
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# Tune's documented switches for a quiet driver (``verbose=0``), set for the study's duration:
QUIET_TUNE_ENV = {
    # The legacy output engine prints nothing at verbose 0; the new one still prints its
    # configuration box, the experiment path, a TensorBoard hint and a final table.
    "RAY_AIR_NEW_OUTPUT": "0",
    # A crashed trial is one console line; its traceback stays in error.txt in its trial folder.
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",
    # Every epoch checkpoints by design; Tune would warn about the snapshots that follow.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}


@dataclass(frozen=True)
class StudyPlan:
    """A study's resources and the configs every trial starts from (phase 1 of :func:`run_study`)."""

    num_trials: int
    max_concurrent: int
    cpus: float
    gpus: float
    fixed: dict[str, Any]
    baseline: dict[str, Any]
    base_cfg: TrialConfig

    def context(
        self, space: SearchSpace, *, study: str, tracking_uri: str | None, parent_run_id: str | None
    ) -> TrialContext:
        """What every trial of the study shares (shipped to the workers)."""
        return TrialContext(
            study=study,
            fixed=self.fixed,
            baseline=self.baseline,
            objectives=space.objectives,
            tracking_uri=tracking_uri,
            parent_run_id=parent_run_id,
            gpus_per_trial=self.gpus,
            racing=space.racing,
        )


# The counts a resumed study takes from its stored settings (study.search.settings).
STORED_COUNTS = ("num_trials", "max_concurrent", "cpus_per_trial", "gpus_per_trial")


def plan_study(
    space: SearchSpace,
    study: str,
    *,
    resume: bool,
    data_dir: str | None,
    num_trials: int | None,
    max_concurrent: int | None,
    cpus_per_trial: float | None,
    gpus_per_trial: float | None,
) -> StudyPlan:
    """Resources (the space's unless overridden), the device, the data folder, all validated.

    Raises:
        FieldError: naming ``study``, ``num_trials``, ``max_concurrent``, ``cpus_per_trial``
            or ``gpus_per_trial``; ``ValueError`` from the trial config.
    """
    if not STUDY_NAME.match(study):
        raise FieldError(
            "study", f" {study!r}: use letters, digits, '_', '.', '-' (up to 100, starting alphanumeric)"
        )
    num_trials = space.num_trials if num_trials is None else num_trials
    max_concurrent = space.max_concurrent if max_concurrent is None else max_concurrent
    cpus = cpus_per_trial if cpus_per_trial is not None else space.cpus
    gpus = gpus_per_trial if gpus_per_trial is not None else space.gpus
    check_positive(num_trials=num_trials, max_concurrent=max_concurrent, cpus_per_trial=cpus)
    if gpus < 0:
        raise FieldError("gpus_per_trial", f" {gpus}: must be >= 0")
    fixed = dict(space.fixed)
    baseline = space.baseline_flat()
    if "device" not in {p.key for p in space.parameters}:
        for flat in (fixed, baseline):
            flat["device"] = device_for_resources(str(flat.get("device", "auto")), gpus)
    if data_dir:
        fixed["data.dir"] = baseline["data.dir"] = str(Path(data_dir).expanduser().resolve())
    base_cfg = TrialConfig.from_flat(fixed)
    TrialConfig.from_flat(baseline)
    return StudyPlan(num_trials, max_concurrent, cpus, gpus, fixed, baseline, base_cfg)


def resume_plan(
    path: str,
    space: SearchSpace | None,
    study: str,
    *,
    overrides: Mapping[str, Any],
    counts: Mapping[str, float | None],
    max_failures: int | None,
    data_dir: str | None,
) -> tuple[SearchSpace, StudyPlan, int]:
    """A resumed study's space, plan and retries: its own, as stored when it started
    (``study.search.settings``), after checking what was given again against them.

    A study started before freqstudy stored its settings resumes with what is given, as then.

    Raises:
        FieldError: naming the first given value that differs from the study's.
    """
    from study.search.settings import check_resume, load_settings

    stored = load_settings(path)
    if stored is None:
        if space is None:
            raise FieldError(
                "space", f": study {study!r} at {path} keeps no settings (an older study); give it"
            )
        log.info(
            "study %s keeps no settings (started by an older freqstudy); resuming with those given", study
        )
        space = space.with_fixed(dict(overrides))
        plan = plan_study(space, study, resume=True, data_dir=data_dir, **counts)  # type: ignore[arg-type]
        return space, plan, max_failures if max_failures is not None else 2
    given = dict(counts, max_failures=max_failures)
    resolved = str(Path(data_dir).expanduser().resolve()) if data_dir else None
    space = check_resume(stored, space=space, overrides=dict(overrides), counts=given, data_dir=resolved)
    own: dict[str, Any] = {k: getattr(stored, k) for k in STORED_COUNTS}  # the study's, not the flags'
    plan = plan_study(space, study, resume=True, data_dir=stored.data_dir, **own)
    return space, plan, stored.max_failures


def start_parent_run(
    uri: str, space: SearchSpace, plan: StudyPlan, *, study: str, path: str, resume: bool, max_failures: int
) -> str:
    """The study's parent MLflow run (phase 3), with the study's settings as params."""
    from study.tracking.server import logging_to
    from study.tracking.study_runs import start_study_run

    with logging_to(uri, f"starting study {study}"):
        return start_study_run(
            uri,
            study,
            space_path=space.path,
            resume=resume,
            tags={
                "freqstudy.space": Path(space.path).name,
                "freqstudy.sampler": space.sampler.name,
                "freqstudy.experiment_path": path,
            },
            params={
                "study.space": space.path,
                "study.num_trials": plan.num_trials,
                "study.max_concurrent": plan.max_concurrent,
                "study.cpus_per_trial": plan.cpus,
                "study.gpus_per_trial": plan.gpus,
                "study.max_failures": max_failures,
                "study.sampler": space.sampler.name,
                "study.sampler_seed": space.sampler.seed,
                "study.objectives": ",".join(f"{o.metric}:{o.short}" for o in space.objectives),
                "study.parameters": ",".join(p.key for p in space.parameters),
            },
        )


def opening_line(space: SearchSpace, plan: StudyPlan, *, study: str, resume: bool) -> str:
    cpus, gpus = plan.cpus, plan.gpus
    return (
        f"study {study}: {'resumed, ' if resume else ''}{plan.num_trials} "
        + (
            f"configurations racing {space.min_seeds}-{space.replicates} seeds each, "
            if space.racing
            else f"configurations x {space.replicates} seeds, "
            if space.replicates > 1
            else "trials, "
        )
        + (f"at most {space.max_seeds} trainings, " if space.max_seeds is not None else "")
        + f"{plan.max_concurrent} at a time, {cpus:g} CPU{'' if cpus == 1 else 's'}"
        f"{f' and {gpus:g} GPU' if gpus else ''} each; objectives "
        + ", ".join(f"{o.metric} ({o.short})" for o in space.objectives)
    )


def close_study(summary: StudySummary, space: SearchSpace, uri: str, given_uri: str | None = None) -> None:
    """Gains and counts to MLflow, the parent run closed; a server gone by now is one line on
    stderr (the trials' results are in the summary) instead of a traceback."""
    from study.search.summary import format_summary
    from study.tracking.gains import annotate_study
    from study.tracking.links import browse_line
    from study.tracking.server import TrackingServerLost, logging_to
    from study.tracking.study_runs import describe_study_run, finish_study_run

    assert summary.parent_run_id is not None, "a tracked study has a parent run"
    try:
        with logging_to(uri, f"closing study {summary.study}"):
            summary.gains_logged = annotate_study(summary.study, space.objectives, tracking_uri=uri)
            finish_study_run(
                uri,
                summary.parent_run_id,
                counts={
                    "trials_finished": summary.count("finished"),
                    "trials_diverged": summary.count("diverged"),
                    "trials_failed": summary.count("failed"),
                    "trials_total": len(summary.trials),
                },
            )
            summary.browse = browse_line(given_uri, uri, summary.study)
            describe_study_run(uri, summary.parent_run_id, format_summary(summary, space))
    except TrackingServerLost as e:
        summary.gains_logged = "the tracking server was unreachable"
        log.warning(
            "%s; the study's gains and counts are not logged "
            "(with the server back, a resume reruns the failed trials and closes their runs)",
            e,
        )


def trial_record(result) -> dict[str, Any]:
    # The validation scores a racing trial reports are the searcher's, not the study's record.
    metrics = {k: v for k, v in (result.metrics or {}).items() if k != RACE_SCORES}
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


class DropMessages(logging.Filter):
    """Drops log records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


@contextlib.contextmanager
def quiet_libraries(verbose: int, extra_env: Mapping[str, str]):
    """Ray, Tune and Optuna as quiet as the console wants them, for the study's duration.

    ``verbose=0``: Tune's quiet switches (``QUIET_TUNE_ENV``), the ``ray`` logger at
    ERROR (no token or start notices, no snapshot warnings, no INFO lines) and
    Optuna at WARNING. ``extra_env`` (MLflow's link switch) applies either way.
    Everything is put back afterwards.
    """
    env = {**(QUIET_TUNE_ENV if not verbose else {}), **extra_env}
    saved_env = {k: os.environ.get(k) for k in env}
    ray_logger = logging.getLogger("ray")
    saved_ray_level = ray_logger.level
    saved_optuna = optuna.logging.get_verbosity()
    os.environ.update(env)
    # The console has a line for each failed trial, and the summary lists them again.
    unfinished = DropMessages("Trials did not complete")
    if not verbose:
        ray_logger.setLevel(logging.ERROR)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        logging.getLogger("ray.tune.tune").addFilter(unfinished)
    try:
        yield
    finally:
        logging.getLogger("ray.tune.tune").removeFilter(unfinished)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        ray_logger.setLevel(saved_ray_level)
        optuna.logging.set_verbosity(saved_optuna)


def check_positive(**values: float) -> None:
    for name, v in values.items():
        if v is None or v <= 0:
            raise FieldError(name, f" {v}: must be > 0")


@contextlib.contextmanager
def stop_on_sigterm(on_stop: Callable[[], None] | None = None):
    """SIGTERM raises :class:`study.errors.Stopped` in the driver while the trials run.

    ``ray.init`` installs a SIGTERM handler that exits with Ray's stack dump and leaves the
    study's runs RUNNING; this one ends the study the way an interrupt does (its runs closed
    as KILLED, its lease released, one line). ``on_stop`` runs first, in the handler: Tune
    then stops its trials for up to 15 s before the error reaches the driver, and
    ``ray job stop`` sends SIGKILL 3 s after SIGTERM, so what must happen (the runs closed,
    the line said) cannot wait for that. Only the main thread can set a handler; the
    previous one is put back afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, lambda *_: None)  # once: a second SIGTERM adds nothing
        if on_stop is not None:
            on_stop()
        raise Stopped(signum)

    saved = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, saved)


def stopped_in(error: BaseException) -> Stopped | None:
    """The :class:`Stopped` behind ``error``, or None. The handler raises it wherever the signal
    lands; inside Ray's compiled code (``check_signals`` during ``ray.wait``) it comes back as
    the cause of a ``SystemError``."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        if isinstance(e, Stopped):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def stop_study(uri: str, parent_run_id: str, *, study: str) -> None:
    """A stopped study's MLflow side: trial runs still RUNNING and the parent run closed as
    KILLED (a resume reopens the parent and reruns those trials). Quick, since ``ray job
    stop`` follows SIGTERM with SIGKILL a few seconds later; a server gone is left alone."""
    from study.tracking.server import TrackingServerLost, logging_to
    from study.tracking.study_runs import finish_study_run

    try:
        with logging_to(uri, f"stopping study {study}"):
            finish_study_run(uri, parent_run_id, counts={}, status="KILLED", reason=STOPPED_REASON)
    except (TrackingServerLost, OSError) as e:
        log.warning("study %s: its runs could not be closed (%s)", study, e)


STOPPED_REASON = "killed: the study's driver was stopped (SIGTERM); --resume reruns the trial"
