"""The files a trial leaves behind, rendered: ``metrics.json``, ``config.yaml``, the
per-image outcomes, the first-layer figures and filters, the corruption heat map and the
Fourier heat map.

Pure rendering into a folder (matplotlib through :mod:`study.reporting.figures_trial`);
``study.tracking.runs`` logs the folder to the trial's MLflow run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.spectral import radial_power_profile
from models.stem import initial_alpha
from study.analysis.fourier import FOURIER_HEATMAP_NPY, FOURIER_HEATMAP_PNG
from study.analysis.outcomes import OUTCOMES_ARTIFACT
from study.analysis.outcomes import encode as encode_outcomes
from study.config import TrialConfig
from study.engine.trial import TrialResult
from study.files import write_bytes_atomic, write_text_atomic
from study.metrics import finite_or_none
from study.reporting import figures_trial as figures
from study.reporting.fourier_figures import heatmap_png

ARTIFACTS = (
    "filters.png",
    "spectra.png",
    "radial_profile.png",
    "corruption_heatmap.png",
    "proportion_history.png",
    "filters.npy",
    "config.yaml",
    "metrics.json",
)
# ...and, for every trial that was evaluated (not diverged):
OUTCOMES_ARTIFACTS = (OUTCOMES_ARTIFACT,)
# ...and, when the config asks for the Fourier heat map (eval.fourier_images > 0) and it was measured:
FOURIER_ARTIFACTS = (FOURIER_HEATMAP_NPY, FOURIER_HEATMAP_PNG)


def metrics_document(config: TrialConfig, result: TrialResult) -> dict[str, Any]:
    """The ``metrics.json`` object: status, reason, final metrics and per-epoch history."""

    return {
        "status": result.status,
        "reason": result.reason,
        "epochs": config.train.epochs,
        "data_fingerprint": result.fingerprint,
        "metrics": {k: finite_or_none(v) for k, v in sorted(result.metrics.items())},
        "history": [{k: finite_or_none(v) for k, v in row.items()} for row in result.history],
        # (E, O): each filter's alpha after each epoch, learned mode only.
        "alpha_history": None if result.alpha_history is None else np.asarray(result.alpha_history).tolist(),
    }


def write_artifacts(out: Path, config: TrialConfig, result: TrialResult) -> list[Path]:
    """Write the trial's artifacts into ``out``; returns the paths written.

    ``config.yaml`` and ``metrics.json`` always; ``outcomes.npz`` when the trial was
    evaluated; the filter figures, ``filters.npy``
    and the history figure when the weights are finite (not after divergence);
    the heatmap when corruptions were evaluated; the Fourier heat map (``.npy``, float64
    (32, 32) percent error in fftshift layout, and its figure) when it was measured.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = [
        write_text_atomic(out / "config.yaml", config.to_yaml()),
        write_text_atomic(out / "metrics.json", json.dumps(metrics_document(config, result), indent=2)),
    ]
    if result.outcomes is not None:
        # Which image each evaluation got right: what paired intervals and tests are computed from.
        written.append(write_bytes_atomic(out / OUTCOMES_ARTIFACT, encode_outcomes(result.outcomes)))
    stats = result.filters
    if stats and np.isfinite(stats["weights"]).all():
        f = config.frequency
        np.save(out / "filters.npy", stats["weights"])
        written.append(out / "filters.npy")
        written.append(
            figures.save_figure(
                figures.plot_filters(stats["weights"], stats["classes"], stats["alpha"]), out / "filters.png"
            )
        )
        written.append(
            figures.save_figure(
                figures.plot_spectra(stats["weights"], stats["classes"], f.cutoff), out / "spectra.png"
            )
        )
        radii, profile = radial_power_profile(torch.from_numpy(stats["weights"]))
        written.append(
            figures.save_figure(
                figures.plot_radial_profile(
                    radii.numpy(), np.nan_to_num(profile.numpy()), stats["classes"], f.cutoff
                ),
                out / "radial_profile.png",
            )
        )
    if result.history:
        f = config.frequency
        pulled = f.mode == "fixed" or (f.mode == "learned" and f.proportion_weight > 0)
        alpha_history = result.alpha_history
        written.append(
            figures.save_figure(
                figures.plot_proportion_history(
                    result.history,
                    result.alpha_history,
                    f.proportion if pulled else None,
                    alpha_start=None
                    if alpha_history is None
                    else initial_alpha(alpha_history.shape[1]).numpy(),
                    threshold=None if alpha_history is None else f.threshold,
                ),
                out / "proportion_history.png",
            )
        )
    acc = result.corruption_accuracy.get("test") or result.corruption_accuracy.get("val")
    if acc:
        split = "test" if result.corruption_accuracy.get("test") else "val"
        written.append(
            figures.save_figure(
                figures.plot_corruption_heatmap(acc, title=f"{split} accuracy (%)"),
                out / "corruption_heatmap.png",
            )
        )
    if result.fourier is not None:
        fourier = np.asarray(result.fourier, dtype=np.float64)
        np.save(out / FOURIER_HEATMAP_NPY, fourier, allow_pickle=False)
        written.append(out / FOURIER_HEATMAP_NPY)
        title = f"error (%) under a Fourier-basis perturbation, ε = {config.eval.fourier_eps:g}"
        written.append(write_bytes_atomic(out / FOURIER_HEATMAP_PNG, heatmap_png(fourier, title)))
    return written
