"""CIFAR-10-C: the official layout and its loader (``layout``), generation with
workers and locks (``generate``), and the cache of copies trials read (``cache``)."""

from study.cifar10c.cache import corruption_cache_root, ensure_corrupted_copy
from study.cifar10c.generate import completed, generate
from study.cifar10c.layout import LABELS, MANIFEST, check_corruptions, check_severities, load_corrupted

__all__ = [
    "LABELS",
    "MANIFEST",
    "check_corruptions",
    "check_severities",
    "completed",
    "corruption_cache_root",
    "ensure_corrupted_copy",
    "generate",
    "load_corrupted",
]
