"""One trial, without Ray or MLflow: the device (``device``), the data it reads
(``prepare``), training (``trial``), evaluation (``evaluate``), checkpoints
(``checkpoint``) and the first layer's statistics (``filters``)."""

from study.engine.trial import DIVERGED, FINISHED, STOPPED, TrialResult, build_model, run_trial

__all__ = ["DIVERGED", "FINISHED", "STOPPED", "TrialResult", "build_model", "run_trial"]
