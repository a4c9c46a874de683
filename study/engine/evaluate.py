"""Clean and corrupted accuracy of a model, from device memory.

Images go to the device once as uint8 and are normalised there in large
batches (the same ``DeviceLoader`` path as training, so evaluation sees
exactly the training normalisation). Inference runs under
``torch.inference_mode`` (with bf16 autocast when asked); correct-prediction
counts stay on the device and come back to the host once per call, so a
CIFAR-10-C sweep of 19 corruptions x 5 severities costs 19 host syncs, not
one per batch. The per-image outcomes (correct or not) come back with them, so a
trial keeps every image's result without evaluating anything twice.
Accuracies are percent.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from study.cifar10c.layout import load_corrupted
from study.data.loader import DeviceLoader


@dataclass(frozen=True)
class EvalSettings:
    """How inference runs.

    Attributes:
        device: where the images and the model live.
        batch_size: images per forward pass; thousands keep a GPU busy.
        channels_last: NHWC memory format (faster convolutions on CUDA and oneDNN CPUs).
        amp_dtype: autocast dtype (``torch.bfloat16``) or None for full precision.
    """

    device: torch.device
    batch_size: int = 2000
    channels_last: bool = False
    amp_dtype: torch.dtype | None = None


def _autocast(settings: EvalSettings):
    if settings.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=settings.device.type, dtype=settings.amp_dtype)


def eval_loader(images: np.ndarray, labels: np.ndarray, settings: EvalSettings) -> DeviceLoader:
    """A non-shuffling, non-augmenting loader holding ``images`` on the device."""
    return DeviceLoader(
        images,
        labels,
        batch_size=settings.batch_size,
        device=settings.device,
        train=False,
        augment=False,
        channels_last=settings.channels_last,
    )


def correct_predictions(model: torch.nn.Module, loader: DeviceLoader, settings: EvalSettings) -> torch.Tensor:
    """``(N,)`` bool on the device: whether each image is classified correctly.

    Args:
        model: in eval mode, on ``settings.device``.
        loader: from :func:`eval_loader` (every image once, in order).
    """
    parts = []
    with torch.inference_mode(), _autocast(settings):
        for x, y in loader:
            parts.append(model(x).argmax(dim=1) == y)
    if not parts:
        return torch.zeros(0, dtype=torch.bool, device=settings.device)
    return torch.cat(parts)


def clean_accuracy(model: torch.nn.Module, loader: DeviceLoader, settings: EvalSettings) -> float:
    """Top-1 accuracy in percent over the loader's images (NaN for an empty set)."""
    correct = correct_predictions(model, loader, settings)
    if correct.numel() == 0:
        return float("nan")
    # float64, as the per-image outcomes are summarised: one accuracy, however it is computed.
    return float(correct.double().mean().item()) * 100.0


def corrupted_outcomes(
    model: torch.nn.Module,
    directory: str | os.PathLike,
    *,
    corruptions: Iterable[str],
    severities: Iterable[int],
    limit: int | None,
    settings: EvalSettings,
) -> dict[tuple[str, int], np.ndarray]:
    """Whether each image of each (corruption, severity) of a CIFAR-10-C folder is classified correctly.

    Args:
        directory: official layout (``<name>.npy`` severity-major and ``labels.npy``),
            official or generated.
        corruptions: names to evaluate (file stems).
        severities: 1..5.
        limit: images per corruption and severity (the first ``limit``), or None for all.

    Returns:
        ``{(name, severity): (n,) bool}`` on the host; row ``i`` is the corrupted
        version of source image ``i``. One device-to-host copy per corruption.
    """
    severities = tuple(int(s) for s in severities)
    out: dict[tuple[str, int], np.ndarray] = {}
    for name in corruptions:
        images, labels, sevs = load_corrupted(directory, name, severities=severities, limit=limit)
        correct = correct_predictions(model, eval_loader(images, labels, settings), settings).cpu().numpy()
        n = len(labels) // max(len(sevs), 1)
        # Rows are severity-major blocks of equal size n.
        for k, s in enumerate(sevs):
            out[(name, s)] = correct[k * n : (k + 1) * n]
    return out


def corrupted_accuracy(
    model: torch.nn.Module,
    directory: str | os.PathLike,
    *,  # the arguments of corrupted_outcomes, whose per-image results this averages
    settings: EvalSettings,
    corruptions: Iterable[str],
    severities: Iterable[int],
    limit: int | None,
) -> dict[tuple[str, int], float]:
    """Accuracy (percent) on each (corruption, severity) of a CIFAR-10-C folder: ``{(name, severity): %}``.

    See :func:`corrupted_outcomes` for the arguments.
    """
    outcomes = corrupted_outcomes(
        model, directory, corruptions=corruptions, severities=severities, limit=limit, settings=settings
    )
    return accuracy_of(outcomes)


def accuracy_of(outcomes: dict[tuple[str, int], np.ndarray]) -> dict[tuple[str, int], float]:
    """``{(name, severity): (n,) bool}`` -> ``{(name, severity): percent}`` (empty sets left out)."""
    return {k: float(v.mean(dtype=np.float64)) * 100.0 for k, v in outcomes.items() if len(v)}
