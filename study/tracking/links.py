"""The addresses a person opens in the MLflow UI, and the runs-table view they land on.

MLflow 3 opens an experiment in the workspace the browser last used, and a new browser's
default is the GenAI one (an "Overview" of traces a study never has). The runs view is
reached by ``#/experiments/<id>/runs?workflowType=machine_learning``, so every address
freqstudy prints has that form.

The runs table's columns are part of the view too. MLflow keeps a shared view of the table
as an experiment tag ``mlflow.sharedViewState.<key>`` (a JSON document of the table's
state), opened by ``viewStateShareKey=<key>`` in the address: the UI's own "share" button
writes the same tag. :func:`set_default_view` writes one that shows what a study is read
by (mode, p, σ, p̂, the objectives, the gains with their bounds), and :func:`experiment_url`
adds its key, so the printed address opens the table with those columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from study import metrics as M

WORKFLOW_QUERY = "workflowType=machine_learning"
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # the MLflow UI's shared runs-table views
DEFAULT_VIEW = "freqstudy"  # the key of the default view freqstudy writes on each study
VIEW_QUERY = "viewStateShareKey"

# On each trial run: MLflow's runs table opens a parent run's nested runs when one of them is
# tagged as an evaluation run (its only use of this tag in 3.17), so a study's trials are listed
# under it instead of one click away behind a collapsed parent row.
EXPANDS_PARENT = {"mlflow.runType": "evaluation"}

# What a study is read by, in the order the table shows it.
VIEW_PARAMS = ("frequency.mode", "frequency.proportion", "frequency.perturbation", "frequency.cutoff")
VIEW_METRICS = (
    M.FILTER_PROPORTION,
    M.VAL_CLEAN_ACC,
    M.VAL_CORRUPTION_ACC,
    M.TEST_CLEAN_ACC,
    M.TEST_CORRUPTION_ACC,
    *(
        f"{M.GAIN_PREFIX}{split}/{name}{bound}"
        for split in ("val", "test")
        for name in ("robustness", "clean_drop")
        for bound in ("", "_ci_low", "_ci_high")
    ),
)
# MLflow's own columns worth keeping: the datasets and the models of each run.
VIEW_ATTRIBUTES = ("Dataset", "Models")


def browser_base(tracking_uri: str | None) -> str | None:
    """The UI's address for a tracking server (``http(s)://...``); None for a file or database
    store, which has no UI of its own."""
    if not tracking_uri or not tracking_uri.startswith(("http://", "https://")):
        return None
    return tracking_uri.rstrip("/")


def experiment_url(tracking_uri: str | None, experiment_id: str, *, view: bool = True) -> str | None:
    """The runs view of an experiment: ``<base>/#/experiments/<id>/runs?workflowType=machine_learning``
    (and the default view's key when ``view``); None when the store has no UI address."""
    base = browser_base(tracking_uri)
    if base is None:
        return None
    query = WORKFLOW_QUERY + (f"&{VIEW_QUERY}={DEFAULT_VIEW}" if view else "")
    return f"{base}/#/experiments/{quote(str(experiment_id))}/runs?{query}"


def run_url(tracking_uri: str | None, experiment_id: str, run_id: str) -> str | None:
    """A run's own page, in the model-training workspace."""
    base = browser_base(tracking_uri)
    if base is None:
        return None
    return f"{base}/#/experiments/{quote(str(experiment_id))}/runs/{quote(run_id)}?{WORKFLOW_QUERY}"


def has_default_view(experiment) -> bool:
    """Whether :func:`set_default_view` wrote its view on this MLflow experiment."""
    return SHARED_VIEW_TAG_PREFIX + DEFAULT_VIEW in experiment.tags


def study_url(tracking_uri: str | None, study: str, client=None) -> str | None:
    """The runs view of study (= experiment) ``study``; None when it does not exist or the
    store has no UI address. A view that was never written is left out of the address."""
    if browser_base(tracking_uri) is None:
        return None
    from mlflow import MlflowClient

    client = client or MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        return None
    return experiment_url(tracking_uri, exp.experiment_id, view=has_default_view(exp))


# Where `freqstudy ui` serves the local store by default (its --host and --port): a command that
# used the local store stopped its own short-lived server when it ended.
LOCAL_UI = "http://127.0.0.1:5000"


def browse_line(given_uri: str | None, used_uri: str, study: str, client=None) -> str | None:
    """``browse the runs: <url>`` for a study, or None (no such experiment, or no UI address).

    ``given_uri`` is what the user passed (None: the local store, whose server ends with the
    command; the address is then ``freqstudy ui``'s, and the line says to start it).
    """
    from mlflow import MlflowClient

    client = client or MlflowClient(tracking_uri=used_uri)
    url = study_url(given_uri or LOCAL_UI, study, client=client)
    if url is None:
        return None
    return f"browse the runs: {url}" + ("" if given_uri else " (with `freqstudy ui` running)")


def study_links(tracking_uri: str | None, client=None, limit: int = 20) -> list[tuple[str, str | None]]:
    """``(study, runs view address)`` of the store's studies, newest first, at most ``limit``."""
    if browser_base(tracking_uri) is None:
        return []
    from mlflow import MlflowClient

    client = client or MlflowClient(tracking_uri=tracking_uri)
    found = client.search_experiments(
        filter_string=f"tags.`{M.TAG_STUDY}` != ''", max_results=limit, order_by=["creation_time DESC"]
    )
    return [
        (
            e.name,
            experiment_url(tracking_uri, e.experiment_id, view=has_default_view(e)),
        )
        for e in found
    ]


def column_keys(params: Iterable[str], metrics: Iterable[str], attributes: Iterable[str]) -> list[str]:
    """The UI's column ids: ``params.`key```, ``metrics.`key```, ``attributes.`Name```."""
    return (
        [f"attributes.`{a}`" for a in attributes]
        + [f"params.`{p}`" for p in params]
        + [f"metrics.`{m}`" for m in metrics]
    )


def default_view_state(metrics: Sequence[str] = VIEW_METRICS) -> dict:
    """The shared-view document of the runs table: its columns, the list shown beside the charts."""
    columns = column_keys(VIEW_PARAMS, metrics, VIEW_ATTRIBUTES)
    return {
        "selectedColumns": columns,
        "columnOrder": ["tags.`mlflow.runName`", *columns],  # else metrics come first, by name
        "runListHidden": False,
        "viewMaximized": False,
    }


def set_default_view(client, experiment_id: str, objectives: Sequence[str] = ()) -> None:
    """Write the default runs-table view on the experiment (``objectives`` first among the metrics)."""
    metrics = list(dict.fromkeys([M.FILTER_PROPORTION, *objectives, *VIEW_METRICS]))
    client.set_experiment_tag(
        experiment_id, SHARED_VIEW_TAG_PREFIX + DEFAULT_VIEW, json.dumps(default_view_state(metrics))
    )
