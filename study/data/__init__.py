"""CIFAR-10: files on disk (``cifar10``) and batches on the device (``loader``)."""

from study.data.cifar10 import (
    CLASSES,
    FOLDER,
    Cifar10,
    extract_archive,
    fingerprint,
    load_cifar10,
    read_batch,
    resolve_folder,
    stratified_split,
)
from study.data.loader import CIFAR10_MEAN, CIFAR10_STD, DeviceLoader

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CLASSES",
    "FOLDER",
    "Cifar10",
    "DeviceLoader",
    "extract_archive",
    "fingerprint",
    "load_cifar10",
    "read_batch",
    "resolve_folder",
    "stratified_split",
]
