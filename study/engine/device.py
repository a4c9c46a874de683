"""Where and how a trial computes: the device, its precision and memory layout,
seeding, deterministic kernels on the CPU, and peak memory."""

from __future__ import annotations

import contextlib
import random
import resource

import numpy as np
import torch

from study.config import TrialConfig


def resolve_device(name: str, *, field: str = "config device") -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without CUDA is an error.

    A CUDA device always comes back with its index (``cuda`` -> ``cuda:<current>``):
    ``torch.cuda.set_device`` refuses an index-less device, and memory statistics
    and RNG states are per index.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{field}: {name!r} asked for, but CUDA is not available; allowed here: auto, cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"{field}: {name!r}, but this process sees {torch.cuda.device_count()} GPU(s); "
            f"allowed here: cuda:0 to cuda:{torch.cuda.device_count() - 1}, cuda, auto, cpu"
        )
    return device


def uses_channels_last(device: torch.device) -> bool:
    """NHWC everywhere: cuDNN's tensor-core kernels want it on a GPU, and oneDNN's
    convolutions on a CPU ran ~20% faster in training with it (ResNet-18, widths
    16 and 64, on the 2-core CI machine). Same math, another memory order."""
    return device.type in ("cuda", "cpu")


def amp_dtype_for(config: TrialConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA by default (and when asked), full precision otherwise."""
    if config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory allocated (CUDA), else the process's peak resident size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def peak_memory_reserved_mb(device: torch.device) -> float:
    """Peak memory the CUDA caching allocator reserved (what a memory-fraction cap limits)."""
    return torch.cuda.max_memory_reserved(device) / 2**20


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic(enabled: bool):
    """Deterministic kernels for the duration of a CPU trial; the caller's setting after."""
    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    before_fill = torch.utils.deterministic.fill_uninitialized_memory
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Filling every new buffer with NaN costs ~20% of a CPU step and adds nothing
        # to reproducibility here: every buffer a trial reads it has written.
        torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)
        torch.utils.deterministic.fill_uninitialized_memory = before_fill


# -- the trial ------------------------------------------------------------------------------
