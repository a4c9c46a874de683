"""Opening a study (phases 1 and 2 of ``study.search.tune.run_study``), without Ray.

Finds or creates the study's Tune folder, takes its lease (one live driver per study),
and settles the plan: a new study's settings are written beside Tune's state; a resumed
one's are read back and the given flags checked against them. Ray's own restore check
(``tune.Tuner.can_restore``) is passed in, so this module imports no Ray.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from study.config import default_home
from study.errors import FieldError
from study.provenance import CODE_VERSION_ENV, code_version
from study.search.lease import StudyLease
from study.search.phases import StudyPlan, plan_study, resume_plan
from study.search.settings import save_settings, settings_for
from study.search.spaces import SearchSpace
from study.search.storage import check_resumable, create_private, is_uri, storage_problem

DEFAULT_MAX_FAILURES = 2
log = logging.getLogger(__name__)


def experiment_path(storage: str | None, study: str) -> str:
    """Where Tune keeps the study: ``<storage>/<study>`` (a folder or a URI)."""
    root = storage or str(default_home() / "studies")
    if "://" in root:
        return root.rstrip("/") + "/" + study
    return str(Path(root).expanduser().resolve() / study)


def open_storage(storage: str | None, study: str, *, resume: bool, can_restore: Callable[[str], bool]) -> str:
    """The study's Tune folder (phase 2): an existing one to resume, checked to be trusted
    state (Ray unpickles it), or a new private one; returns its path or URI.

    Raises:
        FieldError: ``resume`` without a study there, or one others could have written to;
            ``study`` when a new study's folder already exists.
    """
    path = experiment_path(storage, study)
    exists = can_restore(path)
    if resume and not exists:
        raise FieldError("resume", f": no study {study!r} at {path}; start it without resume")
    if not resume and exists:
        raise FieldError(
            "study", f" {study!r} already exists at {path}; continue it with resume or pick another study"
        )
    if resume:
        note = check_resumable(path)
        if note:
            log.info("%s", note)
    else:
        create_private(path)
        problem = None if is_uri(path) else storage_problem(path)
        if problem:
            log.warning("%s; a resume will refuse this study as it is", problem)
    return path


def _check_tracking(tracking: bool, tracking_uri: str | None) -> None:
    if tracking:
        from study.tracking.server import check_server

        check_server(tracking_uri)  # a given server that does not answer: one line, before any work


def open_study(
    space: SearchSpace | None,
    study: str,
    *,
    storage: str | None,
    resume: bool,
    can_restore: Callable[[str], bool],
    overrides: Mapping[str, Any] | None,
    counts: dict[str, Any],
    max_failures: int | None,
    data_dir: str | None,
    tracking: bool,
    tracking_uri: str | None,
) -> tuple[SearchSpace, StudyPlan, int, str, StudyLease]:
    """Phases 1 and 2: the space, plan, retry count, Tune folder and the held lease.

    The caller releases the lease (``lease.release()``) when the study ends; on an error
    here it is released before the error propagates.
    """
    if resume:
        path = open_storage(storage, study, resume=True, can_restore=can_restore)
        lease = StudyLease(path, study)
        lease.acquire()  # a live driver of this study: one line naming it
        try:
            space, plan, max_failures = resume_plan(
                path,
                space,
                study,
                overrides=dict(overrides or {}),
                counts=counts,
                max_failures=max_failures,
                data_dir=data_dir,
            )
            _check_tracking(tracking, tracking_uri)
        except BaseException:
            lease.release()
            raise
        return space, plan, max_failures, path, lease
    if space is None:
        raise FieldError("space", ": a new study needs a search space")
    space = space.with_fixed(dict(overrides or {}))
    plan = plan_study(space, study, resume=False, data_dir=data_dir, **counts)
    max_failures = DEFAULT_MAX_FAILURES if max_failures is None else max_failures
    _check_tracking(tracking, tracking_uri)
    path = open_storage(storage, study, resume=False, can_restore=can_restore)
    lease = StudyLease(path, study)
    lease.acquire()
    try:
        save_settings(
            path,
            settings_for(
                space,
                num_trials=plan.num_trials,
                max_concurrent=plan.max_concurrent,
                cpus=plan.cpus,
                gpus=plan.gpus,
                max_failures=max_failures,
                data_dir=plan.fixed.get("data.dir"),
                code_version=code_version(),
            ),
        )
    except BaseException:
        lease.release()
        raise
    return space, plan, max_failures, path, lease


def tracking_setup(
    plan: StudyPlan, *, tracking: bool, tracking_uri: str | None, verbose: int, env: dict[str, str]
):
    """Phase 3's tracking side: ``env`` with MLflow's per-run links and bounded HTTP settings
    added (for the driver and the workers), the data caches warmed, and the context giving
    the tracking URI (a local server for the study's duration when none is given)."""
    if not tracking:
        return env, contextlib.nullcontext(None)
    # Imported now, not at the study's end: a Ray job's working directory (this
    # package's folder, maybe) can be unpacked again under a running driver. Never
    # `import study.tracking.gains` here: it would rebind the name `study`.
    from study.engine.prepare import prepare_data
    from study.tracking import gains as _gains  # noqa: F401
    from study.tracking import run_links_env
    from study.tracking.server import http_bounds_env, local_tracking_uri

    env.update({**run_links_env(show=verbose > 0), **http_bounds_env()})
    prepare_data(plan.base_cfg)  # warm the data and corrupted-copy caches once, not per trial
    return env, local_tracking_uri(tracking_uri)


@contextlib.contextmanager
def steady_folder() -> Iterator[None]:
    """Run the study from ``FREQSTUDY_HOME``, a folder that stays, and go back after.

    A driver submitted with ``ray job submit --working-dir`` starts in the job's unpacked
    package (``<session>/runtime_resources/working_dir_files/_ray_pkg_<hash>``). Ray unpacks
    it with ``overwrite=True``: the runtime-env agent of each node that starts the job's first
    worker deletes that folder and unpacks it afresh. Nodes sharing one disk (several nodes
    on one machine, as in a local multi-node cluster) share the folder, so the driver's
    current folder is deleted under it, and every ``os.getcwd()`` then raises
    ``FileNotFoundError: [Errno 2] No such file or directory``; Tune calls it as ``fit``
    ends (``os.path.relpath`` when it lists the study's folder), so all trials finished
    and the study failed with its parent run left RUNNING. Every path the study uses is
    resolved when it opens (storage, data folder, space), so after that the driver needs
    no particular folder, only one that cannot vanish.
    """
    try:
        before: str | None = os.getcwd()
    except FileNotFoundError:
        before = None
    home = default_home()
    home.mkdir(parents=True, exist_ok=True)
    os.chdir(home)
    try:
        yield
    finally:
        if before is not None:
            with contextlib.suppress(OSError):  # the folder is gone (or new): stay where it is steady
                os.chdir(before)


def warn_loopback(address: str | None, uri: str | None) -> None:
    """Trials on other machines cannot reach a loopback tracking URI: say so."""
    if address and uri and re.match(r"^https?://(127\.|localhost|\[::1\])", uri):
        log.warning(
            "tracking URI %s is a loopback address; trials on other machines cannot reach it "
            "(give tracking_uri the head node's address)",
            uri,
        )


def worker_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a study's workers get: ``env``, the driver's code version (nodes
    without ``.git`` tag their runs with it, ``study.provenance``), and ``PYTHONPATH`` with
    the folder that holds the ``study`` package first, so ``import study`` works from an
    uninstalled checkout. That folder is the checkout's root, never ``study/`` itself,
    whose modules (``metrics``, ``config``, ``files``) would shadow top-level ones. A variable
    the Ray job this driver runs as sets itself is left out (:func:`job_env_vars`)."""
    root = str(Path(__file__).resolve().parents[2])  # .../<root>/study/search/opening.py
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    wanted = {"PYTHONPATH": path, CODE_VERSION_ENV: code_version(), **(env or {})}
    # A driver submitted as a Ray job: Ray refuses a driver's runtime env that names a variable
    # the job's names too (`ray job submit --runtime-env-json '{"env_vars": ...}'`), even with
    # the same value. The job's variables reach every worker of the job already, so they win.
    given = job_env_vars()
    return {k: v for k, v in wanted.items() if k not in given}


# Where Ray hands a job's driver its job config, the runtime env included (Ray's name for it,
# ``ray._private.runtime_env.constants.RAY_JOB_CONFIG_JSON_ENV_VAR``; read here without Ray).
RAY_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def job_env_vars() -> dict[str, str]:
    """The environment variables of the Ray job this driver runs as (none outside a job)."""
    try:
        config = json.loads(os.environ.get(RAY_JOB_CONFIG_ENV) or "{}")
        found = (config.get("runtime_env") or {}).get("env_vars") or {}
    except (ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
