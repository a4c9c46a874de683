"""Benchmarks of the trial engine, each beside a plain PyTorch baseline in the same run.

``bench_train``: training images/s of the engine (device-resident uint8 data,
augmentation on the device, channels_last; bf16 autocast and fused SGD on
CUDA) against a ``DataLoader`` with per-sample transforms, fp32, on the same
model and batch. ``bench_eval``: evaluation images/s from device memory and
from official-layout files, and the implied CIFAR-10-C + clean pass time.
``mfu``: model FLOPs utilisation on a GPU. Random uint8 images: no dataset needed.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from study.cifar10c.layout import LABELS
from study.config import TrialConfig
from study.data.loader import CIFAR10_MEAN, CIFAR10_STD, DeviceLoader
from study.engine.device import (
    amp_dtype_for,
    uses_channels_last,
)
from study.engine.evaluate import EvalSettings, correct_predictions, corrupted_accuracy, eval_loader
from study.engine.trial import build_model, build_optimizer, train_epoch
from study.metrics import BENCHMARK_CORRUPTIONS, SEVERITIES

TRAIN_GFLOP_PER_IMAGE = 3.33  # forward + backward of CIFAR ResNet-18 at width 64


CIFAR10C_PASS_IMAGES = 15 * 5 * 10_000 + 10_000  # benchmark corruptions x severities + clean


# Dense bf16 tensor-core peaks (FLOP/s) by device-name fragment, for MFU.
BF16_PEAK_FLOPS = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10": 125e12,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _eval_model(width: int, device: str):
    """``(config, model, channels_last)``: a fresh evaluation model on ``device``, in the memory
    format a trial would use there."""
    config = _config(width, 128, device)
    model = build_model(config).to(device).eval()
    channels_last = uses_channels_last(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return config, model, channels_last


def _random_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, size=n).astype(
        np.int64
    )


class _PerSampleDataset(torch.utils.data.Dataset):
    """The usual hand-written pipeline: one image at a time, crop, flip, normalise."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels
        self.mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CIFAR10_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1).float().div(255)  # (3, 32, 32)
        x = nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
        dy, dx = np.random.randint(0, 9, size=2)
        x = x[:, dy : dy + 32, dx : dx + 32]
        if np.random.rand() < 0.5:
            x = x.flip(2)
        return (x - self.mean) / self.std, int(self.labels[i])


def _config(width: int, batch_size: int, device: torch.device) -> TrialConfig:
    return TrialConfig.from_flat(
        {
            "model.width": width,
            "train.batch_size": batch_size,
            "train.epochs": 1,
            "device": device.type if device.type == "cpu" else str(device),
        }
    )


def bench_train(
    device: torch.device, *, width: int, batch_size: int, steps: int, warmup: int, compile: bool = False
) -> dict[str, float]:
    """Training images/s of the engine and of the plain baseline, same model and batch.

    With ``compile``, the engine is also timed through ``torch.compile`` (as
    ``train.compile=true`` runs it): ``compiled_img_s`` after a warm-up that pays
    the compilation, whose wall time is ``compile_s``.
    """
    n = batch_size * (steps + warmup)
    images, labels = _random_images(n)
    config = _config(width, batch_size, device)
    channels_last = uses_channels_last(device)
    amp = amp_dtype_for(config, device)
    criterion = nn.CrossEntropyLoss()
    warm = DeviceLoader(
        images[: batch_size * warmup],
        labels[: batch_size * warmup],
        batch_size=batch_size,
        device=device,
        train=True,
        seed=0,
        channels_last=channels_last,
    )
    timed = DeviceLoader(
        images[batch_size * warmup :],
        labels[batch_size * warmup :],
        batch_size=batch_size,
        device=device,
        train=True,
        seed=1,
        channels_last=channels_last,
    )
    timed_steps = len(timed)

    def engine(compiled: bool) -> tuple[float, float]:
        """(images/s, warm-up seconds) of the trial's own epoch function on device-resident data."""
        torch.manual_seed(0)
        model = build_model(config).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = build_optimizer(model, config, device)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        if compiled:
            torch._dynamo.reset()
        train_model = torch.compile(model) if compiled else model
        t0 = time.perf_counter()
        float(train_epoch(model, train_model, warm, opt, sched, criterion, amp)[0])
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        loss_sum, _ = train_epoch(model, train_model, timed, opt, sched, criterion, amp)
        float(loss_sum)  # one host sync, at the end
        return timed_steps * batch_size / (time.perf_counter() - t0), warm_s

    engine_img_s, _ = engine(compiled=False)
    compiled_img_s, compile_s = engine(compiled=True) if compile else (None, None)

    # The baseline: per-sample Dataset, DataLoader, fp32, default layout, plain SGD.
    torch.manual_seed(0)
    base = build_model(config).to(device)
    base_opt = torch.optim.SGD(base.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    dl = torch.utils.data.DataLoader(
        _PerSampleDataset(images, labels),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )

    def base_epoch(limit: int) -> int:
        done = 0
        for x, y in dl:
            if done == limit:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = criterion(base(x), y)
            base_opt.zero_grad(set_to_none=True)
            loss.backward()
            base_opt.step()
            done += 1
        return done

    base.train()
    base_epoch(warmup)
    _sync(device)
    t0 = time.perf_counter()
    done = base_epoch(timed_steps)
    _sync(device)
    baseline_s = time.perf_counter() - t0
    baseline_img_s = done * batch_size / baseline_s
    out = {
        "engine_img_s": engine_img_s,
        "baseline_img_s": baseline_img_s,
        "ratio": engine_img_s / baseline_img_s,
        "width": width,
        "batch_size": batch_size,
        "steps": timed_steps,
        "epoch_s_50k": 50_000 / engine_img_s,
    }
    if compile:
        out.update(
            compiled_img_s=compiled_img_s,
            compiled_ratio=compiled_img_s / baseline_img_s,
            compile_s=compile_s,
            compiled_epoch_s_50k=50_000 / compiled_img_s,
        )
    return out


def bench_eval(
    device: torch.device,
    *,
    width: int,
    batch_size: int,
    n_images: int,
    disk_corruptions: int = 0,
    disk_n: int = 0,
) -> dict[str, float]:
    """Evaluation images/s (inference mode, large batches, counts on the device).

    ``img_s`` times inference on images already on the device. With
    ``disk_corruptions`` > 0 it also times what a trial runs at its end,
    :func:`study.engine.evaluate.corrupted_accuracy` over a folder in the official
    layout (``disk_corruptions`` files of 5 x ``disk_n`` images, page cache warm):
    reading, the transfer and the per-severity counts included (``from_disk_img_s``).
    """
    images, labels = _random_images(n_images, seed=1)
    config, model, channels_last = _eval_model(width, device)
    settings = EvalSettings(
        device=device,
        batch_size=batch_size,
        channels_last=channels_last,
        amp_dtype=amp_dtype_for(config, device),
    )
    loader = eval_loader(images, labels, settings)
    correct_predictions(model, loader, settings)  # warm-up (cudnn autotune, allocator)
    _sync(device)
    t0 = time.perf_counter()
    correct = correct_predictions(model, loader, settings)
    int(correct.sum())  # the host sync that ends the timed region
    seconds = time.perf_counter() - t0
    img_s = n_images / seconds
    out = {
        "img_s": img_s,
        "cifar10c_pass_s": CIFAR10C_PASS_IMAGES / img_s,
        "width": width,
        "batch_size": batch_size,
    }
    if disk_corruptions:
        from_disk = _eval_from_disk(model, settings, disk_corruptions, disk_n)
        out.update(from_disk_img_s=from_disk, cifar10c_pass_from_disk_s=CIFAR10C_PASS_IMAGES / from_disk)
    return out


def bench_fourier(
    device: torch.device, *, width: int, n_images: int, batch_size: int, eval_images: int
) -> dict[str, float]:
    """Cost of a Fourier heat map (``study.analysis.fourier.fourier_heatmap``) beside evaluation.

    Times one map over ``n_images`` random images (514 frequencies: ``514 · n_images``
    perturbed images, perturbation, clipping and normalisation on the device included)
    and, on the same model, batch size and precision, the clean evaluation rate of
    :func:`bench_eval` over ``eval_images`` images. ``images_per_s`` is perturbed images
    per second; ``ratio`` = ``images_per_s / eval_img_s`` (1.0: a map costs exactly
    514 evaluations of its images); ``map_s_1000`` is the implied time of the
    1000-image map the GPU search spaces ask for (``eval.fourier_images: 1000``).
    """
    from study.analysis.fourier import conjugate_pairs, fourier_heatmap

    images, labels = _random_images(n_images, seed=2)
    config, model, channels_last = _eval_model(width, device)
    amp = amp_dtype_for(config, device)
    frequencies = len(conjugate_pairs(32))
    # Warm-up at the map's batch shapes (cudnn autotune, allocator): whole groups of frequencies
    # and the last, partial group (see fourier._error_counts).
    if n_images <= batch_size:
        group = batch_size // n_images
        shapes = {group * n_images, (frequencies % group or group) * n_images}
    else:
        shapes = {batch_size, n_images % batch_size or batch_size}
    with torch.inference_mode(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        for b in shapes:
            x = torch.zeros(b, 3, 32, 32, device=device)
            model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
    _sync(device)
    t0 = time.perf_counter()
    fourier_heatmap(
        model, images, labels, 4.0, batch_size=batch_size, amp_dtype=amp, channels_last=channels_last
    )  # ends with the one host read of the counts
    seconds = time.perf_counter() - t0
    images_per_s = frequencies * n_images / seconds
    eval_img_s = bench_eval(device, width=width, batch_size=batch_size, n_images=eval_images)["img_s"]
    return {
        "images_per_s": images_per_s,
        "eval_img_s": eval_img_s,
        "ratio": images_per_s / eval_img_s,
        "map_s": seconds,
        "map_s_1000": frequencies * 1000 / images_per_s,
        "images": n_images,
        "frequencies": frequencies,
        "width": width,
        "batch_size": batch_size,
    }


def _eval_from_disk(model: nn.Module, settings: EvalSettings, n_files: int, n: int) -> float:
    """Images/s of ``corrupted_accuracy`` over ``n_files`` official-layout files of 5 x ``n`` images."""
    names = BENCHMARK_CORRUPTIONS[:n_files]
    with tempfile.TemporaryDirectory(prefix="freqstudy-bench-") as folder:
        for i, name in enumerate(names):
            images, labels = _random_images(5 * n, seed=10 + i)
            np.save(os.path.join(folder, f"{name}.npy"), images)
        np.save(os.path.join(folder, LABELS), labels)
        kw = dict(corruptions=names[:1], severities=SEVERITIES, limit=None, settings=settings)
        corrupted_accuracy(model, folder, **kw)  # warm-up: page cache, allocator, kernels
        _sync(settings.device)
        t0 = time.perf_counter()
        corrupted_accuracy(model, folder, **{**kw, "corruptions": names})  # ends with a host read
        return len(names) * 5 * n / (time.perf_counter() - t0)


def mfu(device: torch.device, engine_img_s: float, width: int) -> dict[str, Any] | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    peak = next((v for k, v in BF16_PEAK_FLOPS.items() if k in name), None)
    flops = engine_img_s * TRAIN_GFLOP_PER_IMAGE * 1e9 * (width / 64) ** 2
    return {
        "device_name": name,
        "achieved_tflops": flops / 1e12,
        "peak_tflops": None if peak is None else peak / 1e12,
        "mfu": None if peak is None else flops / peak,
    }
