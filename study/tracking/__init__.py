"""MLflow, and nothing else of freqstudy imports it: the local store and its
server (``server``), one run per trial (``runs``). Study-level queries and the
model registry live beside them."""

from study.tracking.runs import TrackedTrial, load_logged_model, run_tracked_trial
from study.tracking.server import local_tracking_uri

__all__ = ["TrackedTrial", "load_logged_model", "local_tracking_uri", "run_tracked_trial"]
