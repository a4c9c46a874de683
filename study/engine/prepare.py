"""The data a trial reads: CIFAR-10 split into train and validation, and the
corrupted copies of the validation split and the test set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from study.cifar10c.cache import corruption_cache_root, ensure_corrupted_copy
from study.config import TrialConfig
from study.data.cifar10 import fingerprint, load_cifar10, stratified_split


@dataclass(frozen=True)
class PreparedData:
    """Everything a trial reads, in host memory, with the corrupted copies on disk.

    Attributes:
        train_images, val_images, test_images: (N, 32, 32, 3) uint8 HWC.
        train_labels, val_labels, test_labels: (N,) int64.
        val_corrupted_dir: generated CIFAR-10-C copy of the validation split, or None
            when no corruption is evaluated.
        test_corrupted_dir: official CIFAR-10-C folder when configured, else a
            generated copy of the test set; None when test metrics are off.
        fingerprint: 16 hex digits over the images and labels of all three splits.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    val_corrupted_dir: Path | None
    test_corrupted_dir: Path | None
    fingerprint: str


def check_data(config: TrialConfig, *labels: np.ndarray) -> None:
    """``ValueError`` naming the key when the config cannot train on data with these labels.

    A network with fewer outputs than the data has classes fails deep inside the
    loss ("Target 9 is out of bounds"); this says which key and what is allowed.
    """
    top = max((int(lb.max()) for lb in labels if lb.size), default=-1)
    lo = min((int(lb.min()) for lb in labels if lb.size), default=0)
    if top >= config.model.num_classes:
        raise ValueError(
            f"config model.num_classes: {config.model.num_classes}, but the data has labels {lo}..{top}; "
            f"allowed >= {top + 1}"
        )


def prepare_data(config: TrialConfig, *, workers: int = 0) -> PreparedData:
    """Load CIFAR-10, split off validation, and make sure the corrupted copies exist.

    Call it once before launching many trials on a machine so they all find the
    cache warm; concurrent callers are safe (copies are published atomically).

    Args:
        config: reads ``data.*`` and ``eval.*``.
        workers: processes generating corruptions; 0 = one per core.
    """
    cifar = load_cifar10(config.data.dir, download=config.data.download)
    check_data(config, cifar.train_labels, cifar.test_labels)  # before any corrupted copy is made
    images, labels = cifar.train_images, cifar.train_labels
    if config.data.train_limit is not None:
        images, labels = images[: config.data.train_limit], labels[: config.data.train_limit]
    train_idx, val_idx = stratified_split(labels, config.data.val_fraction, config.data.split_seed)
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise ValueError(
            f"config data.val_fraction: {config.data.val_fraction} "
            f"leaves an empty split of {len(labels)} images"
        )
    ev = config.eval
    common = dict(
        corruptions=ev.corruptions,
        severities=ev.severities,
        seed=ev.corruption_seed,
        frost_dir=ev.frost_dir,
        workers=workers,
        limit=ev.corruption_limit,
    )
    val_dir = test_dir = None
    if ev.corruptions:
        val_dir = ensure_corrupted_copy(
            images[val_idx], labels[val_idx], corruption_cache_root(), split_name="val", **common
        )
        if ev.test:
            if ev.cifar10c_dir is not None:
                test_dir = Path(ev.cifar10c_dir)
                if not test_dir.is_dir():
                    raise ValueError(f"config eval.cifar10c_dir: {test_dir} is not a folder")
            else:
                test_dir = ensure_corrupted_copy(
                    cifar.test_images, cifar.test_labels, corruption_cache_root(), split_name="test", **common
                )
    return PreparedData(
        train_images=images[train_idx],
        train_labels=labels[train_idx],
        val_images=images[val_idx],
        val_labels=labels[val_idx],
        test_images=cifar.test_images,
        test_labels=cifar.test_labels,
        val_corrupted_dir=val_dir,
        test_corrupted_dir=test_dir,
        fingerprint=fingerprint(images, labels, cifar.test_images, cifar.test_labels),
    )


# -- the pieces of a training run --------------------------------------------------------
