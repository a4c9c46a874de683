"""Studies: Ray Tune runs the trials, Optuna chooses the points, MLflow keeps them.

``run_study`` turns a validated search space (``study.search.spaces``) into a
``tune.Tuner`` whose searcher is ``OptunaSearch`` over the space's
define-by-run function, with every objective and direction at once, behind a
``ConcurrencyLimiter`` (or, with replicates, a ``RacingSearcher``). Each trial is one call of a trial function
(``study.search.trials.tracked_trial`` unless a benchmark or test passes its
own) inside a Ray worker, which talks to Tune through ``_TuneRuntime``: it
logs its own nested MLflow run straight to the tracking server (so trials on
other nodes work), reports to Tune once per epoch with a
checkpoint, and reports the objectives last. Trial 0 is the study's baseline
(free mode, sigma = 0). A trial that raises is retried from its last checkpoint
up to ``max_failures`` times and then recorded as failed; the study goes on.
A diverged trial is told to Optuna with each objective at its ``worst`` value
(0 for a maximised accuracy): it finished, and its region is bad, which is what
the sampler should learn. ``--resume`` restores the Tune experiment (searcher
state included) and never re-runs finished trials. This is the only module
that imports Ray, and it is over 500 lines as one concern: everything that talks to
Ray (searcher, Tuner, workers, callbacks, Ray's start-up) is here so no other module
needs Ray; the phases that need no Ray are ``study.search.phases``.

The console is ``study.search.console``, fed by a Tune ``Callback`` here:
one compact view of the trials and a line as each ends. Ray's own output
(configuration box, per-trial boxes and tables, log lines, workers' output),
Optuna's log and MLflow's per-run links are off unless ``verbose``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.repeater import TRIAL_INDEX

from study import metrics as M
from study.search.console import StudyConsole, error_line, short_config
from study.search.interrupt import watch_interrupt
from study.search.opening import open_study, steady_folder, tracking_setup, warn_loopback, worker_env
from study.search.phases import (
    StudyPlan,
    close_study,
    opening_line,
    quiet_libraries,
    start_parent_run,
    stop_on_sigterm,
    stop_study,
    stopped_in,
    trial_record,
)
from study.search.race_reporter import RaceReporter
from study.search.races import FINISHED, RaceBook, race_book
from study.search.racing import STOP
from study.search.samplers import define_by_run, make_sampler
from study.search.spaces import BASELINE_FLAG, SearchSpace
from study.search.summary import StudySummary
from study.search.trials import (
    REPLICATE_KEY,
    TrialContext,
    TrialFunction,
    cap_gpu_memory,
    replicate_tags,
    tracked_trial,
    trial_config,
)

# The seed index keeps the key Ray's Repeater set (studies started before racing read it).
assert TRIAL_INDEX == REPLICATE_KEY, "Ray renamed the Repeater's trial index"
assert Searcher.FINISHED == FINISHED, "Ray renamed the searcher's end"

# Retries of a crashed trial (from its last checkpoint) before it is recorded as failed.
log = logging.getLogger(__name__)
# Tune's strict check wants every objective in every report; ours are computed
# once, after the last epoch, so the per-epoch reports carry training metrics only.
STRICT_METRIC_ENV = "TUNE_DISABLE_STRICT_METRIC_CHECKING"


class RacingSearcher(Searcher):
    """Ray's side of a replicated study's races (``study.search.races.RaceBook``): every seed
    of every configuration is a Tune trial; the book says which seed or new configuration
    each trial is, decides as seeds end, and the configuration's mean objectives are told
    to the wrapped ``OptunaSearch`` when its race ends. Fixed replicates (``replicates: R``)
    are the race with min = max = R. Tune saves the book (plain data) with the searcher
    state, so ``--resume`` keeps every race whole; ``sink`` (this driver's
    ``study.search.race_reporter.RaceReporter``) is not saved.
    """

    def __init__(self, searcher: OptunaSearch, book: RaceBook):
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher, self.book, self.sink = searcher, book, None

    def __getstate__(self):
        return {**self.__dict__, "sink": None}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str):
        config = self.book.suggest(trial_id, self.searcher.suggest)
        self._tell(self.book.take_events())
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False, **kwargs):
        self._tell(self.book.end_seed(trial_id, result, error))

    def _tell(self, events) -> None:
        for e in events:
            if e.kind == STOP:
                told = self.book.told(e.race)
                self.searcher.on_trial_complete(e.race.config_id, result=told, error=told is None)
        if self.sink is not None and (events or self.book.untagged):
            self.sink(events, self.book)

    def get_state(self) -> dict:
        return {"book": self.book.to_dict()}

    def set_state(self, state: dict) -> None:  # Tune saves the wrapped OptunaSearch itself
        self.book = RaceBook.from_dict(state["book"])


def make_searcher(space: SearchSpace, *, max_concurrent: int, num_trials: int):
    """OptunaSearch over the space (all objectives at once), baseline enqueued first;
    with ``replicates`` > 1 (fixed or racing), every configuration (the baseline too) runs
    as several seeds (``RacingSearcher``). ``max_concurrent`` counts configurations in flight."""
    searcher = OptunaSearch(
        space=define_by_run(space),
        metric=space.metrics,
        mode=space.modes,
        sampler=make_sampler(space),
        # An enqueued (user-specified) first trial: GridSampler then leaves it out
        # of the grid, and the define-by-run function marks trial 0 as the baseline.
        points_to_evaluate=[{}] + [dict(p) for p in space.points],
    )
    if space.replicates <= 1:
        return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
    return RacingSearcher(searcher, race_book(space, num_trials=num_trials, max_concurrent=max_concurrent))


class _TuneRuntime:
    """The study as a trial sees it (``study.search.trials.TrialRuntime``), backed by Ray Tune."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        ctx = tune.get_context()
        self.trial_id, self.trial_name = ctx.get_trial_id(), ctx.get_trial_name()
        # Node id, not IP: the nodes of one machine (a local test cluster) share an IP.
        self.tags = {
            **replicate_tags(config, self.trial_id),
            M.TAG_NODE: ray.get_runtime_context().get_node_id(),
            "freqstudy.node_ip": ray.util.get_node_ip_address(),
        }

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None = None) -> None:
        checkpoint = None if checkpoint_dir is None else tune.Checkpoint.from_directory(checkpoint_dir)
        tune.report(dict(metrics), checkpoint=checkpoint)

    def restore(self, into: Path) -> Path | None:
        previous = tune.get_checkpoint()
        return None if previous is None else Path(previous.to_directory(str(into)))


def _run_trial_in_worker(config: dict[str, Any], context: TrialContext, trial_fn: TrialFunction) -> None:
    """The Tune function trainable: the study's trial function, then its final report."""
    runtime = _TuneRuntime(config)
    is_baseline = bool(config.get(BASELINE_FLAG))
    cfg = trial_config(config, context, trial_name=short_config(config))  # as the console names it
    cap_gpu_memory(context.gpus_per_trial)
    started = time.perf_counter()
    final = trial_fn(cfg, context, runtime, is_baseline)
    final["trial_seconds"] = time.perf_counter() - started
    final[BASELINE_FLAG] = is_baseline
    tune.report(final)


class _ConsoleCallback(tune.Callback):
    """Tune's trial events, forwarded to the study's console (``study.search.console``).

    Tune stores its callbacks with the experiment; this one holds only the
    console's plain state, and ``--resume`` puts a fresh one in its place.
    """

    def __init__(self, console: StudyConsole) -> None:
        self.console = console

    def on_trial_start(self, iteration, trials, trial, **info):
        self.console.started(trial.trial_id, dict(trial.config or {}))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.console.result(trial.trial_id, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.console.ended(trial.trial_id, dict(trial.last_result or {}))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.console.retrying(trial.trial_id, error_line(trial.error_file))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.console.failed(trial.trial_id, error_line(trial.error_file))

    def on_step_end(self, iteration, trials, **info):
        self.console.refresh()


def _use_output(tuner: tune.Tuner, callback: _ConsoleCallback | None, verbose: int, sink: RaceReporter):
    """Give a restored Tuner this driver's console, verbosity and race reporter.

    ``Tuner.restore`` brings back the run config and searcher the study started with (its
    callbacks and verbosity) and takes no new ones; they are reached through the
    Tuner's internals, and left alone if a Ray version moves them.
    """
    internal = getattr(tuner, "_local_tuner", None)
    searcher = getattr(getattr(internal, "_tune_config", None), "search_alg", None)
    if isinstance(searcher, RacingSearcher):
        searcher.sink = sink
    run_config = internal.get_run_config() if internal is not None else None
    if run_config is None:
        return
    kept = [c for c in (run_config.callbacks or []) if not isinstance(c, _ConsoleCallback)]
    run_config.callbacks = kept + ([callback] if callback is not None else [])
    run_config.verbose = verbose


def _trainable(context: TrialContext, trial_fn: TrialFunction, cpus: float, gpus: float):
    resources = {"cpu": cpus, "gpu": gpus} if gpus else {"cpu": cpus}
    return tune.with_resources(
        tune.with_parameters(_run_trial_in_worker, context=context, trial_fn=trial_fn), resources
    )


def run_study(
    space: SearchSpace | None,
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
    max_failures: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    verbose: int = 0,
    trial_fn: TrialFunction = tracked_trial,
    tracking: bool = True,
    console: bool = True,
    on_stop: Callable[[], None] | None = None,
) -> StudySummary:
    """Run (or, with ``resume``, continue) a study; returns what happened to every trial.

    Args:
        space: a validated search space (``study.search.space_parser.load_space``); with
            ``resume``, None takes the study's own (``study.search.settings``), and a given one
            must equal it.
        study: study name: MLflow experiment and Tune experiment folder.
        data_dir: folder holding ``cifar-10-batches-py/`` (sets ``data.dir`` for every trial).
        tracking_uri: MLflow server; None starts the local one for the study's duration.
        storage: folder or URI for Tune's experiment state; default ``<FREQSTUDY_HOME>/studies``.
            Several nodes need storage they all reach (NFS or a bucket).
        address: a Ray cluster to join; None starts a local Ray on this machine's cores.
        num_trials, max_concurrent, cpus_per_trial, gpus_per_trial: override the space's defaults
            (with ``resume``: must equal the study's, which a resume keeps).
        max_failures: retries of a crashed trial before it is recorded as failed (default
            ``DEFAULT_MAX_FAILURES``).
        overrides: fixed trial-config values on top of the space's (``freqstudy run --set``);
            with ``resume``, each must equal the study's.
        verbose: 0 = the compact console only; 1 = also Ray's output (per-trial boxes and
            tables, workers' output, log lines), Optuna's log and MLflow's per-run links;
            2 = Tune's per-result boxes too.
        trial_fn: what runs in each worker (``study.search.trials.TrialFunction``); benchmarks
            and tests pass their own.
        tracking: False runs without MLflow (benchmarks of the orchestration alone).
        console: False prints nothing of the trials (benchmarks); the console otherwise.
        on_stop: called on SIGTERM once the study's runs are closed as KILLED, before Ray's own
            clean-up (``ray job stop`` kills the driver 3 s after SIGTERM); the study then
            raises :class:`study.errors.Stopped`.
    """
    counts = {
        "num_trials": num_trials,
        "max_concurrent": max_concurrent,
        "cpus_per_trial": cpus_per_trial,
        "gpus_per_trial": gpus_per_trial,
    }
    space, plan, max_failures, path, lease = open_study(
        space,
        study,
        storage=storage,
        resume=resume,
        can_restore=tune.Tuner.can_restore,
        overrides=overrides,
        counts=counts,
        max_failures=max_failures,
        data_dir=data_dir,
        tracking=tracking,
        tracking_uri=tracking_uri,
    )
    try:
        with steady_folder():  # paths are resolved by now; a Ray job's folder can vanish
            return _run_opened(
                space,
                plan,
                path,
                study=study,
                tracking_uri=tracking_uri,
                address=address,
                resume=resume,
                max_failures=max_failures,
                verbose=verbose,
                trial_fn=trial_fn,
                tracking=tracking,
                console=console,
                on_stop=on_stop,
            )
    finally:
        lease.release()


def _run_opened(
    space: SearchSpace,
    plan: StudyPlan,
    path: str,
    *,
    study: str,
    tracking_uri: str | None,
    address: str | None,
    resume: bool,
    max_failures: int,
    verbose: int,
    trial_fn: TrialFunction,
    tracking: bool,
    console: bool,
    on_stop: Callable[[], None] | None = None,
) -> StudySummary:
    """Phases 3 to 5 of :func:`run_study`, with the study's folder open and its lease held."""

    started = time.perf_counter()
    links_env: dict[str, str] = {STRICT_METRIC_ENV: "1"}  # set for the study only, like the rest
    links_env, uri_context = tracking_setup(
        plan, tracking=tracking, tracking_uri=tracking_uri, verbose=verbose, env=links_env
    )
    view = StudyConsole(
        study,
        [o.metric for o in space.objectives],
        plan.base_cfg.train.epochs,
        plan.num_trials,
        live=None if not verbose else False,  # Ray's own lines would break a redrawn block
    )
    callback = _ConsoleCallback(view) if console else None

    with uri_context as uri, quiet_libraries(verbose, links_env):
        parent_run_id = (
            start_parent_run(
                uri, space, plan, study=study, path=path, resume=resume, max_failures=max_failures
            )
            if tracking
            else None
        )
        warn_loopback(address, uri)
        context = plan.context(space, study=study, tracking_uri=uri, parent_run_id=parent_run_id)
        setup_seconds = time.perf_counter() - started
        ray_started_at = time.perf_counter()
        started_ray = _init_ray(address, verbose=verbose, env=links_env)
        ray_start_seconds = time.perf_counter() - ray_started_at
        if console:
            view.begin(opening_line(space, plan, study=study, resume=resume))
        try:
            trainable = _trainable(context, trial_fn, plan.cpus, plan.gpus)
            sink = RaceReporter(view if console else None, study=study, tracking_uri=context.tracking_uri)
            tuner = _make_tuner(
                trainable,
                space,
                plan,
                path=path,
                study=study,
                resume=resume,
                callback=callback,
                sink=sink,
                verbose=verbose,
                max_failures=max_failures,
            )

            def close_stopped() -> None:  # in the SIGTERM handler, before Tune stops its trials
                view.close()
                if tracking and parent_run_id:
                    stop_study(uri, parent_run_id, study=study)
                if on_stop is not None:
                    on_stop()

            # Tune stops on Ctrl+C and returns what it has; SIGTERM (ray job stop) raises Stopped.
            with watch_interrupt() as sigint, stop_on_sigterm(close_stopped):
                try:
                    results = tuner.fit()
                except BaseException as e:
                    stopped = stopped_in(e)
                    if stopped is None:
                        raise
                    raise stopped from None
            sink.flush()  # tags a server that was away at a race's end missed
        finally:
            view.close()
            if started_ray:
                ray.shutdown()
        summary = StudySummary(
            interrupted=sigint.interrupted,
            planned=space.planned_seeds(plan.num_trials),
            study=study,
            experiment_path=path,
            tracking_uri=uri if tracking else None,
            parent_run_id=parent_run_id,
            wall_seconds=time.perf_counter() - started,
            ray_start_seconds=ray_start_seconds,
            setup_seconds=setup_seconds,
            local_store=tracking and tracking_uri is None,
            space=space,
        )
        for r in results:
            summary.trials.append(trial_record(r))
        if tracking:
            close_study(summary, space, uri, tracking_uri)
    return summary


def _make_tuner(
    trainable,
    space: SearchSpace,
    plan: StudyPlan,
    *,
    path: str,
    study: str,
    resume: bool,
    callback: _ConsoleCallback | None,
    sink: RaceReporter,
    verbose: int,
    max_failures: int,
) -> tune.Tuner:
    """The Tuner (phase 4): restored with this driver's console, or new with the searcher."""
    if resume:
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
        _use_output(tuner, callback, verbose, sink)
        return tuner
    storage_path, name = path.rsplit("/", 1) if "://" in path else (str(Path(path).parent), study)
    searcher = make_searcher(space, max_concurrent=plan.max_concurrent, num_trials=plan.num_trials)
    if isinstance(searcher, RacingSearcher):
        searcher.sink = sink
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            # Seeds per configuration are the races' to decide: the searcher ends the study
            # (Searcher.FINISHED) once num_trials configurations have ended their races.
            num_samples=-1 if isinstance(searcher, RacingSearcher) else plan.num_trials,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            verbose=verbose,
            callbacks=[callback] if callback is not None else [],
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )


def _init_ray(address: str | None, *, verbose: int = 0, env: Mapping[str, str] | None = None) -> bool:
    """Join or start Ray; True when this call started it (and must shut it down).

    Workers get :func:`worker_env` (the checkout's root on PYTHONPATH, the driver's
    code version, and ``env``).
    Unless ``verbose``, the workers' output stays in Ray's log files instead of
    reaching the driver's console, and the ``ray`` logger shows errors only. A study
    passes, in ``env``, MLflow's link switch and its bounded HTTP settings
    (``study.tracking.server.HTTP_BOUNDS``), so trials on every node inherit them.
    A local Ray (no ``address``) listens on loopback only.
    """
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")  # set for a driver submitted as a Ray job
    runtime_env = {"env_vars": worker_env(env)}
    output = {"log_to_driver": bool(verbose), "logging_level": logging.INFO if verbose else logging.ERROR}
    if not verbose:
        _quiet_raylet_messages()
    if address:
        ray.init(address=address, runtime_env=runtime_env, **output)
    else:
        # A Ray of its own ("local": never a `ray start` cluster that happens to run on the
        # machine), on loopback only (_loopback_node), without the dashboard.
        with _loopback_node():
            ray.init(
                address="local",
                _node_ip_address=LOOPBACK,
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                runtime_env=runtime_env,
                **output,
            )
    return True


LOOPBACK = "127.0.0.1"


def _quiet_raylet_messages() -> None:
    """Keep the error messages Ray's GCS publishes to every driver (a lost node's raylet state
    dump, ~20 lines each, twice) out of the compact console: they go to this module's logger
    at DEBUG (``freqstudy --debug`` shows them); the console says what happened to the trial.

    Ray prints them from its driver thread ``listen_error_messages`` through the module function
    ``ray._private.worker.print_to_stdstream``, looked up at each call, with the pid ``raylet``;
    that function is wrapped here, and left alone if a Ray version moves it.
    """
    from ray._private import worker as ray_worker

    printer = getattr(ray_worker, "print_to_stdstream", None)
    if printer is None or getattr(printer, "_freqstudy_quiet", False):
        return

    def print_to_stdstream(data, *args, **kwargs):
        if isinstance(data, dict) and data.get("pid") == "raylet":
            for line in data.get("lines") or []:
                log.debug("ray: %s", line)
            return None
        return printer(data, *args, **kwargs)

    print_to_stdstream._freqstudy_quiet = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = print_to_stdstream


@contextlib.contextmanager
def _loopback_node():
    """Make ``ray.init`` keep a node IP of 127.0.0.1 while it starts a local Ray.

    Ray binds its servers (GCS, raylet, the driver's and workers' gRPC, the runtime-env
    agent) to loopback only when the node IP is 127.0.0.1, but ``ray.init`` replaces a
    loopback ``_node_ip_address`` with the machine's outward address unless Ray clusters
    are off: ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``, which Ray reads once from
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` at import and which is False on macOS and Windows
    for this very purpose. It is False only while the local node starts; a Ray without the
    switch starts as it would otherwise (the test of the listening sockets says so).
    """
    from ray._private import ray_constants

    if not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        yield
        return
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
