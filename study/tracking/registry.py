"""The MLflow Model Registry side of choosing models: one registered model per
study (named after it), one version per Pareto trial, aliases ``pareto-1``,
``pareto-2``, ... by robustness and ``champion``, the gains over the baseline
as version tags; and loading a registered model back by alias.

Registering is idempotent: a trial that already has a version under the study's
name keeps it (its tags and aliases are refreshed), and ``pareto-N`` aliases
left over from a larger earlier front are removed, so the aliases always
describe the latest ``freqstudy pareto --register``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from study.metrics import MODEL_ARTIFACT
from study.tracking.queries import client_for

PARETO_ALIAS = "pareto-{}"
CHAMPION_ALIAS = "champion"
_PARETO_RE = re.compile(r"^pareto-\d+$")


@dataclass(frozen=True)
class Registration:
    """What to register for one Pareto trial."""

    run_id: str
    aliases: tuple[str, ...]  # e.g. ("pareto-1", "champion")
    tags: Mapping[str, Any] = field(default_factory=dict)  # gains etc.; NaN values are skipped


def _model_source(client, run_id: str) -> tuple[str, str | None]:
    """``(source URI, logged model id)`` of the model a trial logged: its ``model/`` folder.

    The folder is checked first (``study.tracking.models.model_files``): only a freqstudy
    safetensors model is registered, never a pickle-format one. It is plain artifacts (no
    MLflow flavour, no logged-model entity), which the registry takes as they are. The
    source is the run's logged model of those files (``study.tracking.logged_models``) when it
    has one, else the folder's own location, not ``runs:/<id>/model``: MLflow 3 resolves that
    to a logged model named ``model`` when the run also has one, and would mix its files in.
    """
    from study.engine.model_folder import MODEL_FILES
    from study.tracking.models import model_files

    model_files(client, run_id)
    from study.tracking.logged_models import logged_model_of

    # The same files, as the logged model the Models tab lists.
    if (model_id := logged_model_of(client, run_id, MODEL_FILES)) is not None:
        return f"models:/{model_id}", model_id
    return f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT}", None


def _wait_ready(client, name: str, version: str, timeout_s: float = 300.0) -> str:
    """Block until a new model version leaves PENDING_REGISTRATION (it copies files)."""
    deadline = time.monotonic() + timeout_s
    while True:
        mv = client.get_model_version(name, version)
        if mv.status == "READY":
            return str(mv.version)
        if mv.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise RuntimeError(
                f"model {name!r} version {version}: registration {mv.status}: {mv.status_message}"
            )
        time.sleep(0.5)


def register_models(
    study: str, entries: Sequence[Registration], tracking_uri: str | None = None, client=None
) -> dict[str, str]:
    """Register each entry's model under ``study``; returns ``{run_id: version}``."""
    from mlflow.exceptions import MlflowException

    client = client or client_for(tracking_uri)
    try:
        client.get_registered_model(study)
    except MlflowException:
        client.create_registered_model(study, description=f"Pareto models of freqstudy study {study!r}")
    existing = {mv.run_id: mv.version for mv in client.search_model_versions(f"name = '{study}'")}
    versions: dict[str, str] = {}
    for e in entries:
        version = existing.get(e.run_id)
        if version is None:
            source, model_id = _model_source(client, e.run_id)
            mv = client.create_model_version(
                study, source, run_id=e.run_id, tags={"run_id": e.run_id}, model_id=model_id
            )
            version = _wait_ready(client, study, mv.version)
        versions[e.run_id] = str(version)
    for e in entries:
        version = versions[e.run_id]
        for key, value in e.tags.items():
            if isinstance(value, float) and math.isnan(value):
                continue
            client.set_model_version_tag(
                study, version, key, f"{value:.4f}" if isinstance(value, float) else str(value)
            )
        for alias in e.aliases:
            client.set_registered_model_alias(study, alias, version)
    # Aliases moved first, leftovers of an earlier, larger front removed after,
    # so a reader never finds pareto-1 or champion missing.
    wanted = {a for e in entries for a in e.aliases}
    for alias in client.get_registered_model(study).aliases:
        if (_PARETO_RE.match(alias) or alias == CHAMPION_ALIAS) and alias not in wanted:
            client.delete_registered_model_alias(study, alias)
    return versions


def version_by_alias(study: str, alias: str, tracking_uri: str | None = None, client=None) -> dict[str, Any]:
    """``{"version", "run_id", "tags", "aliases"}`` of the version an alias points at."""
    from mlflow.exceptions import MlflowException

    client = client or client_for(tracking_uri)
    try:
        mv = client.get_model_version_by_alias(study, alias)
    except MlflowException:
        try:
            aliases = sorted(client.get_registered_model(study).aliases)
        except MlflowException:
            raise ValueError(
                f"no registered model {study!r}; run `freqstudy pareto --study {study} --register`"
            ) from None
        raise ValueError(
            f"model {study!r} has no alias {alias!r}; aliases: {', '.join(aliases) or '(none)'}"
        ) from None
    run_id = mv.run_id or mv.tags.get("run_id")
    return {"version": str(mv.version), "run_id": run_id, "tags": dict(mv.tags), "aliases": list(mv.aliases)}


def load_model(study: str, alias: str = CHAMPION_ALIAS, tracking_uri: str | None = None, client=None):
    """The network registered under ``models:/<study>@<alias>``, on the CPU in eval mode.

    The alias is resolved to its version's run, and the run's model is loaded the one safe
    way (``study.tracking.models.load_logged_model``: safetensors weights into the network
    rebuilt from the run's config; a pickle-format model is refused, never unpickled).
    """
    from study.tracking.models import load_logged_model

    client = client or client_for(tracking_uri)
    info = version_by_alias(study, alias, client=client)  # a clear error first
    if not info["run_id"]:
        raise ValueError(f"model {study!r}@{alias}: version {info['version']} names no run to load from")
    return load_logged_model(info["run_id"], client=client)


load_registered_model = load_model
