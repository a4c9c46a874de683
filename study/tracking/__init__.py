"""MLflow, and nothing else of freqstudy imports it: the local store and its
server (``server``), one run per trial (``runs``). Study-level queries and the
model registry live beside them."""

import os

# MLflow prints "🏃 View run ... / 🧪 View experiment ..." on stdout whenever a run ends (MLflow's
# documented switch below turns that off); freqstudy's commands say where their runs are
# themselves. Off unless the environment says otherwise; `freqstudy run --verbose` turns them on.
RUN_LINKS_ENV = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
os.environ.setdefault(RUN_LINKS_ENV, "true")

from study.tracking.models import load_logged_model  # noqa: E402
from study.tracking.registry import load_model as load_registered_model  # noqa: E402
from study.tracking.runs import TrackedTrial, run_tracked_trial  # noqa: E402
from study.tracking.server import bound_http, local_tracking_uri  # noqa: E402

# Every MLflow HTTP call of a process that uses freqstudy's tracking is bounded (timeout,
# retries, backoff: study.tracking.server.HTTP_BOUNDS); a user's own settings win.
bound_http()


def run_links_env(*, show: bool) -> dict[str, str]:
    """The environment that shows (or hides) MLflow's per-run links, for a process and its workers."""
    return {RUN_LINKS_ENV: "false" if show else "true"}


__all__ = [
    "RUN_LINKS_ENV",
    "TrackedTrial",
    "bound_http",
    "load_logged_model",
    "load_registered_model",
    "local_tracking_uri",
    "run_links_env",
    "run_tracked_trial",
]
