"""What a trial's size-like settings need, and what the machine could hold: the bounds
``study.config`` states in its errors.

Pure (``os`` only, no torch): the config validates with it before anything is built. Each
need is a *lower bound* — only what must certainly be in memory at once — so a setting is
refused only when it cannot fit, never because an estimate ran high:

- the network's weights: 4 bytes per parameter (fp32), with the parameter count of the CIFAR
  ResNet-18 in closed form (:func:`resnet18_parameters`, checked against the real network
  in the tests);
- training: weights, gradients and SGD momentum (12 bytes per parameter) plus, per image of
  a batch, the outputs of its convolutions kept for the backward pass, in bf16 (2 bytes);
- evaluation: per image of a batch, the normalised fp32 input and one first-stage activation.

The memory is this machine's (physical memory, or the cgroup limit when lower), or
``FREQSTUDY_MEMORY_GB`` when set: a driver that validates a study for bigger workers sets it
to theirs. Settings whose cost is time, not memory, have fixed ceilings (``MAX_EPOCHS``), and
settings that count images are bounded by CIFAR-10's own sizes.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = [
    "CIFAR10_TEST_IMAGES",
    "CIFAR10_TRAIN_IMAGES",
    "MAX_EPOCHS",
    "MEMORY_ENV",
    "eval_bytes_per_image",
    "format_bytes",
    "largest",
    "machine_memory_bytes",
    "memory_note",
    "resnet18_parameters",
    "train_bytes_per_image",
]

MEMORY_ENV = "FREQSTUDY_MEMORY_GB"
CIFAR10_TRAIN_IMAGES = 50_000
CIFAR10_TEST_IMAGES = 10_000
# 300x the default recipe's 30 epochs and 50x the longest usual CIFAR ResNet schedule (200):
# beyond it a trial is a typo (train.epochs=1000000000 would run for centuries on any GPU).
MAX_EPOCHS = 10_000

WEIGHT_BYTES = 4  # fp32 parameters
TRAIN_STATE_BYTES = 12  # fp32 weight + gradient + momentum buffer per parameter
ACTIVATION_BYTES = 2  # bf16 autocast: the smallest activation dtype a trial uses
IMAGE_PIXELS = 32 * 32
# Convolution outputs per image, in units of width x 32 x 32 elements: the stem (1), stage 1
# (4 convs at w channels, 32x32: 4), stage 2 (5 incl. the projection, 2w at 16x16: 2.5),
# stage 3 (5 at 4w, 8x8: 1.25), stage 4 (5 at 8w, 4x4: 0.625) = 9.375.
CONV_OUTPUTS_PER_WIDTH = 9.375 * IMAGE_PIXELS


def resnet18_parameters(width: int, stem_kernel: int, num_classes: int) -> int:
    """Parameters of ``models.resnet.build_resnet18`` in free mode (11,173,962 at 64, 3, 10).

    Stem ``3·w·k²``; BatchNorms 2 per channel; each stage ``i`` (``o = 2^i·w`` out, ``c`` in):
    two ``3×3`` convs per block, a ``1×1`` projection where the shape changes; fc ``8w·C + C``.
    """
    w, k, total = int(width), int(stem_kernel), 0
    total += 3 * w * k * k + 2 * w  # stem conv and its BatchNorm
    c = w
    for i in range(4):
        o = w * 2**i
        total += 9 * c * o + 2 * o + 9 * o * o + 2 * o  # block 1: two conv-BN
        if c != o:
            total += c * o + 2 * o  # its 1x1 projection and BN
        total += 2 * (9 * o * o + 2 * o)  # block 2
        c = o
    return total + c * int(num_classes) + int(num_classes)


def train_bytes_per_image(width: int) -> int:
    """The least a training batch holds per image: its convolution outputs, bf16."""
    return int(CONV_OUTPUTS_PER_WIDTH * int(width) * ACTIVATION_BYTES)


def eval_bytes_per_image(width: int) -> int:
    """The least an evaluation batch holds per image: the fp32 input and one stage-1 activation."""
    return 3 * IMAGE_PIXELS * 4 + int(width) * IMAGE_PIXELS * ACTIVATION_BYTES


@functools.lru_cache(maxsize=1)
def _physical_memory_bytes() -> int:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:  # a container's limit (cgroup v2), when it is lower than the host's memory
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if raw.isdigit():
            total = min(total, int(raw))
    except OSError:
        pass
    return total


def machine_memory_bytes() -> int:
    """``FREQSTUDY_MEMORY_GB`` (GiB) when set, else this machine's memory in bytes.

    Raises:
        ValueError: the variable is set but not a positive number.
    """
    raw = os.environ.get(MEMORY_ENV)
    if raw:
        try:
            gib = float(raw)
        except ValueError:
            gib = float("nan")
        if not gib > 0 or gib == float("inf"):
            raise ValueError(f"{MEMORY_ENV}={raw!r}: allowed a positive number of GiB, e.g. 80")
        return int(gib * 2**30)
    return _physical_memory_bytes()


def format_bytes(n: float) -> str:
    """``15.6 GB``, ``11.0 PB`` (powers of 1024, short)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def memory_note(memory: int) -> str:
    """Where the memory figure comes from, for an error message."""
    if os.environ.get(MEMORY_ENV):
        return f"{MEMORY_ENV} says {format_bytes(memory)}"
    return f"this machine has {format_bytes(memory)} of memory (set {MEMORY_ENV} to size for other workers)"


def largest(fits, hi: int) -> int:
    """The largest ``n`` in ``0..hi`` with ``fits(n)`` (``fits`` monotone, ``fits(0)`` assumed)."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
