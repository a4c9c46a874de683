"""What one GPU trial sends its tracking server, built by the project's own code so the
load bench cannot drift from it: the ``paper`` space's learned-mode trial config (its params),
the per-epoch metric row ``study.engine.trial`` reports (the learned mode's nine keys, the
largest row), the final metrics ``study.metrics.summarize`` makes of a full evaluation (val and
test, all 19 corruptions x 5 severities, the Fourier bands, epochs and memory), its dataset
inputs (``study.tracking.datasets``), the artifacts ``study.reporting.trial_artifacts`` renders
(figures, filters, per-image outcomes of 10,000 + 950,000 test and 5,000 + 475,000 validation
images, the Fourier heat map) and the model folder ``study.engine.model_folder`` writes (a
width-64 ResNet-18: ~45 MB of safetensors). Values are random; sizes and counts are a real
trial's.

The rate is a GPU trial's: one epoch of the ``paper`` space (45,000 training images at 3.33
GFLOP each, 150 TFLOP) every ``epoch_seconds``. 5 s (:data:`GPU_TRIAL`) is ~30 TFLOP/s sustained,
about a quarter of an A10G-class card's bf16 tensor peak given to one trial, where the ``paper``
space packs two trials per A10G; real trials are slower, so the bench offers more load than a
cluster of that many trials would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from study import metrics as M


@dataclass(frozen=True)
class TrialShape:
    """How long a trial runs and how big it is (what sets its request rate and upload size)."""

    epochs: int  # epochs per trial: one log_batch each, then the end-of-trial burst
    epoch_seconds: float  # GPU time per epoch: the pause between two epoch logs
    width: int  # ResNet-18 width: the model folder's size (64: ~45 MB)
    eval_images: tuple[int, int]  # (validation, test) images evaluated: the outcomes' size


GPU_TRIAL = TrialShape(epochs=30, epoch_seconds=5.0, width=64, eval_images=(5000, 10000))
QUICK_TRIAL = TrialShape(epochs=3, epoch_seconds=1.0, width=8, eval_images=(200, 200))  # CI and --quick


@dataclass(frozen=True)
class TrialPayload:
    """A trial's tracking traffic, ready to send (picklable: it goes to the writer processes)."""

    flat_config: dict[str, Any]  # dotted config; tracking.experiment and run_name are set per trial
    epoch_keys: tuple[str, ...]
    final_metrics: dict[str, float]
    datasets: list  # mlflow DatasetInput
    fingerprint: str
    artifacts_dir: str  # the trial's rendered artifacts (logged at the run's root)
    model_dir: str  # the model folder (logged as model/ and as a logged model)
    shape: TrialShape

    def summary(self) -> dict[str, Any]:
        files = [p for p in Path(self.artifacts_dir).iterdir()]
        model = [p for p in Path(self.model_dir).iterdir()]
        mb = 1024 * 1024
        return {
            "epochs": self.shape.epochs,
            "epoch_seconds": self.shape.epoch_seconds,
            "width": self.shape.width,
            "params": len(self.flat_config),
            "metrics_per_epoch": len(self.epoch_keys),
            "final_metrics": len(self.final_metrics),
            "dataset_inputs": len(self.datasets),
            "artifact_files": len(files),
            "artifacts_mb": round(sum(p.stat().st_size for p in files) / mb, 2),
            "model_mb": round(sum(p.stat().st_size for p in model) / mb, 2),
        }


# The row study.engine.trial reports each epoch in learned mode (its largest row).
EPOCH_KEYS = (*M.EPOCH_KEYS, *M.LEARNED_EPOCH_KEYS)


def build_payload(folder: Path, shape: TrialShape, seed: int = 0) -> TrialPayload:
    """Render one trial's artifacts and model folder into ``folder`` and collect its metrics."""
    import torch

    from study.analysis.fourier import FOURIER_ERROR_HIGH, FOURIER_ERROR_LOW, FOURIER_ERROR_MIDDLE
    from study.analysis.outcomes import Outcomes, clean_key, corrupted_key
    from study.config import TrialConfig
    from study.engine.filters import filter_statistics
    from study.engine.model_folder import write_model
    from study.engine.trial import FINISHED, TrialResult, build_model
    from study.reporting.trial_artifacts import write_artifacts
    from study.search.space_parser import load_space
    from study.tracking.datasets import trial_datasets

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    space = load_space("paper")
    flat = {
        **space.fixed,
        "frequency.mode": "learned",
        "frequency.perturbation": 0.25,
        "model.width": shape.width,
        "train.epochs": shape.epochs,
        "device": "cpu",  # the config is only rendered here; the paper space's own says cuda
        "precision": "fp32",
    }
    config = TrialConfig.from_flat(flat)
    model = build_model(config).eval()
    accuracy: dict[str, dict[tuple[str, int], float]] = {}
    final: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {}
    fingerprints: dict[str, dict[str, str | int]] = {}
    for split, n in zip(("val", "test"), shape.eval_images):
        accuracy[split] = {
            (c, s): float(rng.uniform(20, 90)) for c in M.ALL_CORRUPTIONS for s in M.SEVERITIES
        }
        final.update(M.summarize(split, float(rng.uniform(60, 95)), accuracy[split]))
        arrays[clean_key(split)] = rng.random(n) < 0.8
        for c, s in accuracy[split]:
            arrays[corrupted_key(split, c, s)] = rng.random(n) < 0.6
        fingerprints[split] = {
            "source": f"{split}-{seed}",
            "n": n,
            "corruption_limit": 0,
            "corrupted_copy": "generated-v1",
            "corruption_seed": 0,
        }
    for key in (FOURIER_ERROR_LOW, FOURIER_ERROR_MIDDLE, FOURIER_ERROR_HIGH, M.PEAK_MEMORY_MB):
        final[key] = float(rng.uniform(1, 100))
    final[M.PEAK_MEMORY_RESERVED_MB] = final[M.PEAK_MEMORY_MB] * 1.2
    final[M.EPOCHS_COMPLETED] = float(shape.epochs)
    history = [
        {"epoch": e, **{k: float(rng.uniform(0, 1)) for k in EPOCH_KEYS}} for e in range(1, shape.epochs + 1)
    ]
    width = config.model.width
    result = TrialResult(
        status=FINISHED,
        reason=None,
        metrics=final,
        history=history,
        model=model,
        alpha_history=rng.uniform(0, 1, (shape.epochs, width)),
        fingerprint=f"bench-{seed}",
        corruption_accuracy=accuracy,
        filters=filter_statistics(model),
        outcomes=Outcomes(arrays=arrays, fingerprints=fingerprints),
        fourier=rng.uniform(0, 90, (32, 32)),
    )
    artifacts, model_dir = folder / "artifacts", folder / "model"
    write_artifacts(artifacts, config, result)
    write_model(model_dir, model, config)
    train = (np.zeros((8, 32, 32, 3), np.uint8), np.zeros(8, np.int64))  # its digest and row count only
    return TrialPayload(
        flat_config=config.to_flat(),
        epoch_keys=EPOCH_KEYS,
        final_metrics=final,
        datasets=trial_datasets(config, fingerprints, train),
        fingerprint=result.fingerprint,
        artifacts_dir=str(artifacts),
        model_dir=str(model_dir),
        shape=shape,
    )
