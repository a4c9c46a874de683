"""The cache of generated CIFAR-10-C copies that trials read.

Copies live under ``<FREQSTUDY_HOME>/cache/cifar10c``, one folder per split,
image fingerprint, generator version, seed and severities, shared by every
trial on a machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from study.cifar10c.generate import GENERATOR_VERSION, check_source, completed, generate
from study.cifar10c.layout import check_corruptions, check_severities
from study.config import default_home
from study.files import digest


def corruption_cache_root() -> Path:
    """``<FREQSTUDY_HOME>/cache/cifar10c``: generated corrupted copies, shared by all trials."""
    return default_home() / "cache" / "cifar10c"


def ensure_corrupted_copy(
    images: np.ndarray,
    labels: np.ndarray,
    cache_root: str | os.PathLike,
    *,
    split_name: str,
    corruptions: Iterable[str],
    severities: Iterable[int],
    seed: int,
    frost_dir: str | os.PathLike | None = None,
    workers: int = 0,
    limit: int | None = None,
) -> Path:
    """A cached CIFAR-10-C copy of the first ``limit`` images, generated if not yet complete.

    The folder under ``cache_root`` is named for the split, a fingerprint of
    the (limited) images and labels, the generator version, the seed and the
    severities, so distinct copies never share a folder; the corruptions may
    grow across calls (missing ones are added).
    """
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit: {limit} must be >= 1 or None")
        images, labels = images[:limit], labels[:limit]
    images, labels = check_source(images, labels)
    names, sevs = check_corruptions(corruptions), check_severities(severities)
    tag = f"{digest(images)[:8]}{digest(labels)[:8]}"
    folder = Path(cache_root) / (
        f"{split_name}-{tag}-v{GENERATOR_VERSION}-seed{int(seed)}"
        f"-n{images.shape[0]}-s{''.join(map(str, sevs))}"
    )
    if completed(folder, names, sevs, images.shape[0]):
        return folder
    return generate(
        images,
        labels,
        folder,
        corruptions=names,
        severities=sevs,
        seed=seed,
        workers=workers,
        frost_dir=frost_dir,
        source_name=split_name,
        progress=True,
    )
