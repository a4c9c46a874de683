"""The CIFAR-10-C file layout and its loader, for official and generated copies alike.

One ``<corruption>.npy`` per corruption, uint8 ``(S*N, 32, 32, 3)``
severity-major (row ``(s-1)*N + i`` is image ``i`` at severity ``s``), and
``labels.npy``. Generated folders add ``manifest.json`` (sha256 of the source
images and labels, generator version, seed, severities), so a copy is never
mixed with one of another source or seed. Official folders have no manifest
and hold severities 1..5 of N = rows/5 images.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from study.metrics import ALL_CORRUPTIONS, SEVERITIES

MANIFEST = "manifest.json"


LABELS = "labels.npy"
NUM_CLASSES = 10  # CIFAR-10: labels.npy holds integers 0..9


def check_corruptions(names: Iterable[str]) -> tuple[str, ...]:
    """The names in canonical order; ``ValueError`` naming any that is not a CIFAR-10-C corruption."""
    names = tuple(names)
    bad = [n for n in names if n not in ALL_CORRUPTIONS]
    if bad:
        raise ValueError(f"corruptions: unknown {', '.join(bad)}; allowed {', '.join(ALL_CORRUPTIONS)}")
    if not names:
        raise ValueError("corruptions: empty; give at least one of " + ", ".join(ALL_CORRUPTIONS))
    return tuple(n for n in ALL_CORRUPTIONS if n in names)


def check_severities(severities: Iterable[int]) -> tuple[int, ...]:
    """Sorted, unique severities; ``ValueError`` unless each is an integer in 1..5."""
    sevs = tuple(severities)
    if not sevs or any(isinstance(s, bool) or int(s) != s or s not in SEVERITIES for s in sevs):
        raise ValueError(f"severities: {list(sevs)} invalid; allowed a non-empty subset of 1..5")
    return tuple(sorted({int(s) for s in sevs}))


def read_manifest(out: Path) -> dict | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, RecursionError) as e:  # RecursionError: '[[[[...' too deep
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path}: unreadable manifest ({reason}); delete the folder to regenerate") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: not a manifest (a JSON object expected); delete the folder to regenerate")
    return manifest


def load_corrupted(
    dir: str | os.PathLike,
    name: str,
    *,
    severities: Iterable[int] | None = None,
    limit: int | None = None,
    num_classes: int = NUM_CLASSES,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """One corruption of an official or generated CIFAR-10-C folder.

    Official folders have no manifest and hold severities 1..5 of N = rows/5
    images; generated ones say their severities and N in ``manifest.json``.

    Args:
        dir: the folder holding ``<name>.npy`` and ``labels.npy``.
        name: a corruption from ``ALL_CORRUPTIONS``.
        severities: which to return (default all in the file).
        limit: only the first ``limit`` images of each severity block.
        num_classes: labels must be integers in ``0..num_classes-1``.

    Returns:
        ``(images (S*n, 32, 32, 3) uint8, labels (S*n,) int64, severities)``,
        severity-major, ``n = min(N, limit)``.

    Raises:
        ValueError: naming the file, when a file is truncated or of the wrong dtype or
            shape, or a label is not an integer in ``0..num_classes-1``.
    """
    folder = Path(dir)
    (name,) = check_corruptions([name])
    path = folder / f"{name}.npy"
    if not path.is_file():
        have = (
            sorted(p.stem for p in folder.glob("*.npy") if p.stem in ALL_CORRUPTIONS)
            if folder.is_dir()
            else []
        )
        raise FileNotFoundError(f"{path}: not found (folder has: {', '.join(have) or 'no corruption files'})")
    manifest = read_manifest(folder)
    try:
        arr = np.load(path, mmap_mode="r")
        lab = np.load(folder / LABELS, mmap_mode="r")
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder / LABELS}: not found beside {path.name}") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} or {LABELS}: unreadable or truncated .npy ({e})") from None
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (32, 32, 3):
        raise ValueError(f"{path}: expected uint8 (rows, 32, 32, 3), got {arr.dtype} {arr.shape}")
    if manifest is None:
        file_sevs = SEVERITIES
        if arr.shape[0] % len(file_sevs):
            raise ValueError(
                f"{path}: {arr.shape[0]} rows is not 5 severity blocks (official files have 50000)"
            )
        n = arr.shape[0] // len(file_sevs)
    else:
        try:
            file_sevs, n = tuple(manifest["severities"]), int(manifest["n"])
            if check_severities(file_sevs) != file_sevs:  # the generator writes them ascending, once each
                raise ValueError(file_sevs)
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{folder / MANIFEST}: 'severities' (a subset of 1..5) and 'n' (an integer) unreadable; "
                "delete the folder to regenerate"
            ) from None
        if arr.shape[0] != len(file_sevs) * n:
            raise ValueError(
                f"{path}: {arr.shape[0]} rows, manifest says {len(file_sevs)} severities x {n} images"
            )
    if lab.shape != (arr.shape[0],) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(
            f"{folder / LABELS}: expected integer labels of shape ({arr.shape[0]},), "
            f"got {lab.dtype} {lab.shape}"
        )
    if lab.size and (int(lab.min()) < 0 or int(lab.max()) >= num_classes):
        # Out-of-range labels would score every image wrong: a silent 0 % rather than an error.
        raise ValueError(
            f"{folder / LABELS}: labels {int(lab.min())}..{int(lab.max())}; "
            f"allowed integers 0..{num_classes - 1}"
        )
    want = file_sevs if severities is None else check_severities(severities)
    missing = [s for s in want if s not in file_sevs]
    if missing:
        raise ValueError(f"{path}: severities {missing} not in the file (it has {list(file_sevs)})")
    if limit is not None and limit < 1:
        raise ValueError(f"limit: {limit} must be >= 1 or None")
    m = n if limit is None else min(n, int(limit))
    blocks = [slice(file_sevs.index(s) * n, file_sevs.index(s) * n + m) for s in want]
    images = np.concatenate([arr[b] for b in blocks])  # reads only these rows of the map
    labels = np.concatenate([lab[b] for b in blocks]).astype(np.int64)
    return images, labels, tuple(want)
