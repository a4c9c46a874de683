"""CIFAR-10-C: the official layout and its loader (``layout``), generation with
workers and locks (``generate``), what a worker runs (``worker``), and the cache
of copies trials read (``cache``).

A spawned generation worker imports this package on its way to ``worker``, so
it holds only what is light: ``cache`` (which reads the trial config) is loaded
on first use of its names (PEP 562).
"""

from __future__ import annotations

from study.cifar10c.generate import completed, generate
from study.cifar10c.layout import LABELS, MANIFEST, check_corruptions, check_severities, load_corrupted

_LAZY = {"corruption_cache_root", "ensure_corrupted_copy"}  # from study.cifar10c.cache

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


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'study.cifar10c' has no attribute {name!r}")
    from study.cifar10c import cache

    return getattr(cache, name)
