"""One trial: build the network from a config, train it, evaluate it clean and
corrupted, and report through a callback. No Ray and no MLflow in here.

The same function runs from ``freqstudy train`` and from a Ray Tune worker;
the caller decides where the per-epoch metrics go (``report``), whether to
stop early (``should_stop``) and where checkpoints live. Training data sits on
the device as uint8 and is augmented there (``study.data.loader.DeviceLoader``); the
loss is summed on the device and read once per epoch, so divergence is caught
at the epoch end without a host sync per step: a non-finite loss, a loss past
``train.divergence_factor`` times the first epoch's (or ln num_classes), or
non-finite first-layer statistics (``diverged_reason``) end the trial as
*diverged*, a result rather than an exception. On the CPU the trial is seeded
and deterministic, and a trial resumed from a checkpoint reproduces the
uninterrupted one exactly. Objectives come from the validation split and its
corrupted copy only; test numbers are reported, never selected on.
It is over 500 lines as one concern: the training loop of one trial, from its
config to its result, with the divergence, checkpoint and telemetry steps it
cannot be read without.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.resnet import build_resnet18
from study.analysis.fourier import (
    FOURIER_ERROR_HIGH,
    FOURIER_ERROR_LOW,
    FOURIER_ERROR_MIDDLE,
    band_errors,
    fourier_heatmap,
)
from study.analysis.outcomes import Outcomes, clean_key, corrupted_key
from study.config import TrialConfig
from study.corruptions import GENERATOR_VERSION
from study.data.cifar10 import fingerprint
from study.data.loader import DeviceLoader
from study.engine.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    load_model_state,
    restore_optimizer,
    restore_rng_state,
    save_checkpoint,
)
from study.engine.device import (
    amp_dtype_for,
    deterministic,
    peak_memory_mb,
    peak_memory_reserved_mb,
    resolve_device,
    seed_everything,
    uses_channels_last,
)
from study.engine.evaluate import (
    EvalSettings,
    accuracy_of,
    clean_accuracy,
    correct_predictions,
    corrupted_outcomes,
    eval_loader,
)
from study.engine.filters import filter_statistics
from study.engine.prepare import PreparedData, prepare_data
from study.metrics import (
    EPOCH_SECONDS,
    EPOCHS_COMPLETED,
    FILTER_ALPHA_PROPORTION,
    FILTER_ALPHA_STD,
    FILTER_CENTROID,
    FILTER_MEAN_ALPHA,
    FILTER_PROPORTION,
    PEAK_MEMORY_MB,
    PEAK_MEMORY_RESERVED_MB,
    TRAIN_LOSS,
    TRAIN_LR,
    VAL_CLEAN_ACC,
    summarize,
)

FINISHED = "finished"
DIVERGED = "diverged"
STOPPED = "stopped"  # should_stop() asked for it; evaluated, but short of the epoch budget

Report = Callable[[dict[str, float]], None]


# -- data ---------------------------------------------------------------------------


def build_model(config: TrialConfig) -> nn.Module:
    """The ResNet-18 of the config (its stem in the configured frequency mode)."""
    m = config.model
    return build_resnet18(
        width=m.width, stem_kernel=m.stem_kernel, num_classes=m.num_classes, frequency=config.frequency
    )


def build_optimizer(model: nn.Module, config: TrialConfig, device: torch.device) -> torch.optim.SGD:
    """SGD with momentum; weight decay on weight matrices and kernels only (the stem's V
    included), never on BatchNorm parameters, biases or the alpha logits (all 1-D). The
    alpha logits (learned mode) have their own group at ``lr × train.alpha_lr_multiplier``."""
    t = config.train
    alpha = getattr(model.stem, "alpha_logits", None) if hasattr(model, "stem") else None
    params = [p for p in model.parameters() if p.requires_grad and p is not alpha]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if alpha is not None and alpha.requires_grad:
        # LambdaLR scales every group's own initial lr, so the ratio holds along the schedule.
        groups.append({"params": [alpha], "weight_decay": 0.0, "lr": t.lr * t.alpha_lr_multiplier})
    return torch.optim.SGD(
        groups,
        lr=t.lr,
        momentum=t.momentum,
        nesterov=t.nesterov and t.momentum > 0,
        fused=device.type == "cuda" or None,
    )


def lr_factor(step: int, *, total_steps: int, schedule: str, warmup_fraction: float) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based).

    ``onecycle``: linear warm-up over ``warmup_fraction`` of the steps, then a
    cosine down to 0; ``cosine``: cosine from the peak at step 0.
    """
    warm = round(warmup_fraction * total_steps) if schedule == "onecycle" else 0
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def train_epoch(
    model: nn.Module,
    train_model: nn.Module,
    loader: DeviceLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    criterion: nn.Module,
    amp: torch.dtype | None,
) -> tuple[torch.Tensor, int]:
    """One pass over ``loader``: forward, loss (+ the stem's proportion loss), step.

    Args:
        model: the network (its ``stem`` gives the proportion loss).
        train_model: what runs the forward pass: ``model`` or its ``torch.compile`` wrapper.
        amp: autocast dtype, or None.

    Returns:
        ``(loss_sum, seen)``: the summed loss as a 0-d tensor still on the device
        (reading it is the caller's one host sync) and the number of images.
    """
    model.train()
    device_type = next(model.parameters()).device.type
    loss_sum = torch.zeros((), device=next(model.parameters()).device)
    seen = 0
    for x, y in loader:
        with torch.autocast(device_type=device_type, dtype=amp) if amp else contextlib.nullcontext():
            logits = train_model(x)
        loss = criterion(logits.float(), y) + model.stem.proportion_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach() * y.shape[0]
        seen += y.shape[0]
    return loss_sum, seen


def diverged_reason(
    epoch: int,
    loss: float,
    first_loss: float | None,
    stats: Mapping[str, Any] | None,
    *,
    factor: float,
    num_classes: int,
) -> str | None:
    """Why training counts as diverged after ``epoch``, in one line; None while it does not.

    Diverged, checked in this order, when the epoch's mean training loss

    - is not finite, or
    - exceeds ``factor × max(first_loss, ln num_classes)``: ``first_loss`` is the
      first epoch's mean loss (None in the first epoch itself, where the bound is
      ``factor × ln num_classes``, about what a fresh network starts at; with the
      default factor 1000 and 10 classes, 2303);

    or when the first-layer statistics (``filter_statistics``: effective weight,
    alpha, p̂, centroid) hold a non-finite value, which no trained layer has.

    Args:
        epoch: 1-based.
        stats: ``filter_statistics`` of the model after the epoch, or None (not checked).
        factor: ``train.divergence_factor``.
    """
    if not math.isfinite(loss):
        return f"training loss became non-finite ({loss}) in epoch {epoch}"
    floor = math.log(num_classes)
    reference = floor if first_loss is None else max(first_loss, floor)
    bound = factor * reference
    if loss > bound:
        which = (
            f"ln {num_classes}"
            if first_loss is None
            else f"first-epoch loss {first_loss:.4g}, ln {num_classes}"
        )
        return (
            f"training loss {loss:.4g} exceeded the divergence bound {bound:.4g} "
            f"(train.divergence_factor {factor:g} x max({which})) in epoch {epoch}"
        )
    if stats is None:
        return None
    bad = []
    for name, label in (("proportion", "p̂"), ("centroid", "centroid")):
        value = stats.get(name)
        if value is not None and not math.isfinite(value):
            bad.append(f"{label} {value}")
    for name, label in (("weights", "effective weight"), ("alpha", "alpha")):
        value = stats.get(name)
        if value is not None:
            n = int(np.size(value) - np.isfinite(value).sum())
            if n:
                bad.append(f"{label} has {n} non-finite values")
    if bad:
        return f"first-layer statistics became non-finite ({', '.join(bad)}) in epoch {epoch}"
    return None


@dataclass
class TrialResult:
    """What a trial leaves behind.

    Attributes:
        status: ``finished``, ``diverged`` (see :func:`diverged_reason`; no final evaluation)
            or ``stopped`` (``should_stop`` said so; evaluated after fewer epochs).
        reason: one line when not finished, else None.
        metrics: final metrics: ``val/...`` and ``test/...`` from ``metrics.summarize``,
            ``epochs_completed``, peak memory (MiB).
        history: the per-epoch metric dicts, in order (as reported).
        model: the trained network, eval mode, on the CPU.
        alpha_history: (E, O) alpha after each epoch in learned mode, else None.
        fingerprint: the data fingerprint.
        corruption_accuracy: ``{"val": {(name, severity): %}, "test": {...}}``.
        filters: :func:`filter_statistics` of the final model.
        outcomes: per-image correctness on every evaluated image set
            (``study.analysis.outcomes.Outcomes``); None when diverged.
        fourier: (32, 32) Fourier heat map (percent error, fftshift layout) on the first
            ``eval.fourier_images`` test images, or None (off, or diverged).
    """

    status: str
    reason: str | None
    metrics: dict[str, float]
    history: list[dict[str, float]]
    model: nn.Module
    alpha_history: np.ndarray | None
    fingerprint: str
    corruption_accuracy: dict[str, dict[tuple[str, int], float]] = field(default_factory=dict)
    filters: dict[str, Any] = field(default_factory=dict)
    outcomes: Outcomes | None = None
    fourier: np.ndarray | None = None


def run_trial(
    config: TrialConfig,
    *,
    report: Report | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    data: PreparedData | None = None,
    keep_checkpoints: int | None = 1,
) -> TrialResult:
    """Train and evaluate one configuration.

    Args:
        config: the trial.
        report: called once per epoch with ``epoch`` and the per-epoch keys of
            ``study.metrics`` (train/loss, train/lr, val/clean_acc, filters/proportion,
            filters/centroid, train/epoch_seconds; in learned mode filters/mean_alpha,
            filters/alpha_std and filters/alpha_proportion, p̂ read from α).
        checkpoint_dir: where ``epoch-NNNN.pt`` go every ``train.checkpoint_every``
            epochs once ``train.checkpoint_min_seconds`` have passed since the
            last one, and after the last epoch; None = no checkpoints.
        resume_from: a checkpoint file; training continues at the epoch after it.
        should_stop: asked after each epoch; True ends training there (status ``stopped``).
        data: already prepared data (else :func:`prepare_data` is called).
        keep_checkpoints: newest checkpoints kept in ``checkpoint_dir`` (a full
            ResNet-18 one is ~90 MB); None keeps all.

    Exceptions other than divergence propagate to the caller, which records them.
    """
    device = resolve_device(config.device)
    with deterministic(device.type == "cpu"):
        return _run(config, device, report, checkpoint_dir, resume_from, should_stop, data, keep_checkpoints)


def _run(
    config, device, report, checkpoint_dir, resume_from, should_stop, data, keep_checkpoints
) -> TrialResult:
    t = config.train
    amp = amp_dtype_for(config, device)
    channels_last = uses_channels_last(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.set_device(device)  # cuda:N: initialise CUDA there before touching its stats
        torch.cuda.reset_peak_memory_stats(device)
    seed_everything(config.seed)
    data = data or prepare_data(config)

    model = build_model(config).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config, device)
    loader = DeviceLoader(
        data.train_images,
        data.train_labels,
        batch_size=t.batch_size,
        device=device,
        train=True,
        augment=config.data.augment,
        seed=config.seed,
        channels_last=channels_last,
    )
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(
            f"config train.batch_size: {t.batch_size} "
            f"is larger than the {len(data.train_labels)} training images"
        )
    total_steps = steps_per_epoch * t.epochs
    factor = partial(
        lr_factor, total_steps=total_steps, schedule=t.schedule, warmup_fraction=t.warmup_fraction
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    settings = EvalSettings(
        device=device, batch_size=config.eval.batch_size, channels_last=channels_last, amp_dtype=amp
    )
    val_loader = eval_loader(data.val_images, data.val_labels, settings)
    criterion = nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)

    history: list[dict[str, float]] = []
    alphas: list[np.ndarray] = []
    start = 1
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from)
        load_model_state(model, ckpt["model"], resume_from)
        restore_optimizer(optimizer, ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        history = list(ckpt["history"])
        alphas = [np.asarray(a) for a in ckpt["extra"].get("alpha_history", [])]
        start = ckpt["epoch"] + 1
        restore_rng_state(ckpt["rng"], device)
    if t.compile:
        # A reused Ray worker compiles one new model per trial; without a reset it
        # reaches dynamo's recompile limit and silently falls back to eager.
        torch._dynamo.reset()
    train_model = torch.compile(model) if t.compile else model

    status, reason = FINISHED, None
    last_checkpoint = time.perf_counter()
    for epoch in range(start, t.epochs + 1):
        started = time.perf_counter()
        loader.set_epoch(epoch)
        loss_sum, seen = train_epoch(model, train_model, loader, optimizer, scheduler, criterion, amp)
        mean_loss = float((loss_sum / seen).item())  # the epoch's one host sync
        model.eval()
        stats = filter_statistics(model)
        diverged = diverged_reason(
            epoch,
            mean_loss,
            history[0][TRAIN_LOSS] if history else None,
            stats,
            factor=t.divergence_factor,
            num_classes=config.model.num_classes,
        )
        if diverged is not None:
            status, reason = DIVERGED, f"{diverged} at lr {t.lr:g}"
            break
        row = {
            "epoch": epoch,
            TRAIN_LOSS: mean_loss,
            TRAIN_LR: t.lr * factor(epoch * steps_per_epoch - 1),  # of the epoch's last step
            VAL_CLEAN_ACC: clean_accuracy(model, val_loader, settings),
            FILTER_PROPORTION: stats["proportion"],
            FILTER_CENTROID: stats["centroid"],
        }
        if stats["alpha"] is not None:
            row[FILTER_MEAN_ALPHA] = float(stats["alpha"].mean())
            row[FILTER_ALPHA_STD] = float(stats["alpha"].std())
            row[FILTER_ALPHA_PROPORTION] = stats["alpha_proportion"]
            alphas.append(stats["alpha"])
        row[EPOCH_SECONDS] = time.perf_counter() - started
        history.append(row)
        if (
            checkpoint_dir is not None
            and t.checkpoint_every
            and (
                epoch == t.epochs
                or (
                    epoch % t.checkpoint_every == 0
                    and time.perf_counter() - last_checkpoint >= t.checkpoint_min_seconds
                )
            )
        ):
            last_checkpoint = time.perf_counter()
            save_checkpoint(
                checkpoint_path(checkpoint_dir, epoch),
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                epoch=epoch,
                history=history,
                extra={"alpha_history": [a.tolist() for a in alphas]},
            )
            if keep_checkpoints is not None:
                for old in sorted(Path(checkpoint_dir).glob("epoch-*.pt"))[: -max(1, keep_checkpoints)]:
                    old.unlink(missing_ok=True)
        if report is not None:
            report(dict(row))
        if should_stop is not None and epoch < t.epochs and should_stop():
            status, reason = STOPPED, f"stopped after epoch {epoch} of {t.epochs}"
            break

    model.eval()
    metrics: dict[str, float] = {}
    accuracy: dict[str, dict[tuple[str, int], float]] = {}
    outcomes = None
    if status != DIVERGED:
        metrics, accuracy, outcomes = _final_evaluation(model, config, data, settings, val_loader)
    fourier = _fourier_evaluation(model, config, data, settings, metrics) if status != DIVERGED else None
    metrics[EPOCHS_COMPLETED] = float(len(history))
    metrics[PEAK_MEMORY_MB] = peak_memory_mb(device)
    if device.type == "cuda":
        metrics[PEAK_MEMORY_RESERVED_MB] = peak_memory_reserved_mb(device)
    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    return TrialResult(
        status=status,
        reason=reason,
        metrics=metrics,
        history=history,
        model=model,
        alpha_history=np.stack(alphas) if alphas else None,
        fingerprint=data.fingerprint,
        corruption_accuracy=accuracy,
        filters=filter_statistics(model) if status != DIVERGED else {},
        outcomes=outcomes,
        fourier=fourier,
    )


def _fourier_evaluation(model, config, data, settings, metrics) -> np.ndarray | None:
    """The Fourier heat map of the trained model, when ``eval.fourier_images`` asks for one.

    Measured on the first ``eval.fourier_images`` test images (all of them when the test
    split is smaller) at ``eval.fourier_eps``, with the evaluation's device, batch size,
    memory layout and autocast, and the signs' default seed, so every trial of a study
    sees the same images and signs. Adds the band means (``fourier/error_low``,
    ``fourier/error_middle``, ``fourier/error_high``) to ``metrics``.

    Returns:
        (32, 32) percent error, fftshift layout; None when off (0 images, or no test split).
    """
    ev = config.eval
    n = min(ev.fourier_images, len(data.test_labels)) if ev.test else 0
    if n <= 0:
        return None
    heatmap = fourier_heatmap(
        model,
        data.test_images[:n],
        data.test_labels[:n],
        ev.fourier_eps,
        batch_size=settings.batch_size,
        device=settings.device,
        amp_dtype=settings.amp_dtype,
        channels_last=settings.channels_last,
    )
    bands = band_errors(heatmap)
    metrics[FOURIER_ERROR_LOW] = bands["low"]
    metrics[FOURIER_ERROR_MIDDLE] = bands["middle"]
    metrics[FOURIER_ERROR_HIGH] = bands["high"]
    return heatmap


def _final_evaluation(model, config, data, settings, val_loader):
    """Final metrics and per-image outcomes of the validation split (and the test set when on)."""
    ev = config.eval
    kw = dict(
        corruptions=ev.corruptions, severities=ev.severities, limit=ev.corruption_limit, settings=settings
    )
    arrays: dict[str, np.ndarray] = {}
    fingerprints: dict[str, dict[str, str | int]] = {}
    accuracy: dict[str, dict[tuple[str, int], float]] = {}
    metrics: dict[str, float] = {}
    splits = [("val", data.val_images, data.val_labels, data.val_corrupted_dir, val_loader)]
    if ev.test:
        test_loader = eval_loader(data.test_images, data.test_labels, settings)
        splits.append(("test", data.test_images, data.test_labels, data.test_corrupted_dir, test_loader))
    for split, images, labels, corrupted_dir, loader in splits:
        clean = correct_predictions(model, loader, settings).cpu().numpy()
        corrupted = corrupted_outcomes(model, corrupted_dir, **kw) if corrupted_dir else {}
        accuracy[split] = accuracy_of(corrupted)
        clean_acc = float(clean.mean(dtype=np.float64)) * 100.0 if len(clean) else math.nan
        metrics.update(summarize(split, clean_acc, accuracy[split]))
        arrays[clean_key(split)] = clean
        arrays.update({corrupted_key(split, name, sev): v for (name, sev), v in corrupted.items()})
        official = corrupted_dir is not None and split == "test" and ev.cifar10c_dir is not None
        fingerprints[split] = {
            "source": fingerprint(images, labels),  # the clean images and labels of this split
            "n": len(labels),
            "corruption_limit": ev.corruption_limit or 0,
            # Official files were made once, unseeded; generated copies follow the seed and version.
            "corrupted_copy": "none"
            if corrupted_dir is None
            else ("official" if official else f"generated-v{GENERATOR_VERSION}"),
            "corruption_seed": -1 if official or corrupted_dir is None else ev.corruption_seed,
        }
    return metrics, accuracy, Outcomes(arrays=arrays, fingerprints=fingerprints)
