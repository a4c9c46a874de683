"""CIFAR-10-C files: generate a corrupted copy of any image set in the official
layout, load official or generated copies through one interface, and cache
the copies a trial needs.

The official layout is one ``<corruption>.npy`` per corruption, uint8
``(S*N, 32, 32, 3)`` severity-major (row ``(s-1)*N + i`` is image ``i`` at
severity ``s``), and ``labels.npy``. Generated folders add ``manifest.json``
(sha256 of the source images and labels, generator version, seed,
severities), so a copy is never mixed with one of another source or seed.
The work is cut into (corruption, severity) units, each with its own
generator ``default_rng([seed, index in ALL_CORRUPTIONS, severity])``: the
bytes do not depend on the worker count or the order units run in. Units run
in spawned processes that read the source through a memory-mapped ``.npy``,
and every file is written to a uniquely named temporary and published with
``os.replace``, so an interrupted run resumes where it stopped, concurrent
runs into one folder are safe, and a partial file is never read as whole.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
import uuid
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from study.corruptions import GENERATOR_VERSION, corrupt
from study.metrics import ALL_CORRUPTIONS, SEVERITIES

MANIFEST = "manifest.json"
LABELS = "labels.npy"
UNITS = ".units"  # per-(corruption, severity) results until a corruption's file is assembled
# Manifest fields that identify a copy; a folder holding another value for any of them is refused.
IDENTITY = ("source_sha256", "labels_sha256", "generator_version", "seed", "n", "severities")
# Reference: the original generator, single process, 10,000 test images x 19 x 5 in ~19 minutes.
REFERENCE_IMAGES_PER_S = 10_000 * 19 * 5 / (19 * 60)


def _sha256(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _atomic_save(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a uniquely named temporary beside ``path``, then ``os.replace``."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def _check_source(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.ascontiguousarray(images)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"images: expected uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels: expected shape ({images.shape[0]},), got {labels.shape}")
    if images.shape[0] == 0:
        raise ValueError("images: empty; nothing to corrupt")
    return images, labels


def _read_manifest(out: Path) -> dict | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable manifest ({e}); delete the folder to regenerate") from None


def _claim(out: Path, identity: dict) -> dict:
    """The folder's manifest, written now if absent; ``ValueError`` if it belongs to another copy."""
    manifest = _read_manifest(out)
    if manifest is None:
        foreign = sorted(p.name for p in out.glob("*.npy"))
        if foreign:
            raise ValueError(
                f"{out}: holds {', '.join(foreign[:3])} but no {MANIFEST} (an official CIFAR-10-C folder?); "
                "generate into an empty folder"
            )
        manifest = {**identity, "corruptions": []}
        _atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
        return manifest
    differ = [k for k in IDENTITY if manifest.get(k) != identity[k]]
    if differ:
        detail = "; ".join(f"{k}: folder {manifest.get(k)!r}, asked {identity[k]!r}" for k in differ)
        raise ValueError(
            f"{out}: holds a CIFAR-10-C copy of a different source, seed or generator version ({detail}); "
            "use another folder or delete this one"
        )
    return manifest


def _is_whole(path: Path, rows: int) -> bool:
    """Whether ``path`` is a readable uint8 ``(rows, 32, 32, 3)`` ``.npy`` (header check, no data read)."""
    try:
        a = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return a.dtype == np.uint8 and a.shape == (rows, 32, 32, 3)


def _unit_path(units: Path, name: str, severity: int) -> Path:
    return units / f"{name}_s{severity}.npy"


def _corrupt_unit(images: np.ndarray, name: str, severity: int, seed: int, frost_dir: str | None) -> np.ndarray:
    """``(N, 32, 32, 3)`` uint8 -> the same corrupted at one severity, with the unit's own generator."""
    rng = np.random.default_rng([seed, ALL_CORRUPTIONS.index(name), severity])
    out = corrupt(name, images, severity, rng, frost_dir=frost_dir)
    if out.dtype != np.uint8 or out.shape != images.shape:
        raise ValueError(f"corruption {name} severity {severity}: returned {out.dtype} {out.shape}, expected uint8 {images.shape}")
    return out


def _run_unit(source: str, units: str, name: str, severity: int, seed: int, frost_dir: str | None) -> tuple[str, int, float]:
    """Corrupt the memory-mapped source at one (name, severity) and publish the unit file.

    Top level so that spawned workers can unpickle it. Returns ``(name, severity, seconds)``.
    """
    t0 = time.perf_counter()
    images = np.array(np.load(source, mmap_mode="r"))  # (N, 32, 32, 3) uint8, read once per unit
    _atomic_save(_unit_path(Path(units), name, severity), _corrupt_unit(images, name, severity, seed, frost_dir))
    return name, severity, time.perf_counter() - t0


def _assemble(out: Path, name: str, severities: Sequence[int], n: int) -> None:
    """Publish ``<name>.npy`` from its unit files, then drop them."""
    final = out / f"{name}.npy"
    units = out / UNITS
    try:
        parts = [np.load(_unit_path(units, name, s)) for s in severities]
    except FileNotFoundError:
        if not _is_whole(final, len(severities) * n):
            raise
        parts = None  # a concurrent run assembled it first
    if parts is not None:
        _atomic_save(final, np.concatenate(parts))  # (S*N, 32, 32, 3), severity-major
    for s in severities:
        _unit_path(units, name, s).unlink(missing_ok=True)


def completed(out_dir: str | os.PathLike, corruptions: Iterable[str], severities: Iterable[int], n: int) -> bool:
    """Whether ``out_dir`` holds whole files for every corruption (and the labels) at these severities."""
    out = Path(out_dir)
    sevs = check_severities(severities)
    rows = len(sevs) * n
    manifest = _read_manifest(out) if out.is_dir() else None
    if manifest is None or manifest.get("severities") != list(sevs):
        return False
    try:
        labels = np.load(out / LABELS, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return labels.shape == (rows,) and all(_is_whole(out / f"{c}.npy", rows) for c in check_corruptions(corruptions))


def generate(images: np.ndarray, labels: np.ndarray, out_dir: str | os.PathLike, *,
             corruptions: Iterable[str] = ALL_CORRUPTIONS, severities: Iterable[int] = SEVERITIES,
             seed: int = 0, workers: int = 0, frost_dir: str | os.PathLike | None = None,
             source_name: str = "test", progress: bool = True) -> Path:
    """Write a CIFAR-10-C copy of ``images`` into ``out_dir`` in the official layout.

    Args:
        images: ``(N, 32, 32, 3)`` uint8 clean images.
        labels: ``(N,)`` integer labels.
        out_dir: created if absent; may hold an unfinished copy of the same
            source, seed and version, which is resumed.
        corruptions: names from ``ALL_CORRUPTIONS``.
        severities: subset of 1..5.
        seed: random corruptions follow it; files are byte-identical for a seed.
        workers: processes; 0 = ``os.cpu_count()``, 1 = in this process.
        frost_dir: folder with the frost textures (frost corruption).
        source_name: recorded in the manifest (``test``, ``val``...).
        progress: show a progress bar over units.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ValueError: bad arguments, or ``out_dir`` belongs to another source, seed
            or generator version, or holds official files.
    """
    images, labels = _check_source(images, labels)
    names, sevs = check_corruptions(corruptions), check_severities(severities)
    if workers < 0:
        raise ValueError(f"workers: {workers} must be >= 0 (0 = one per core)")
    n = images.shape[0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    identity = {
        "source_sha256": _sha256(images), "labels_sha256": _sha256(labels),
        "generator_version": GENERATOR_VERSION, "seed": int(seed), "n": n, "severities": list(sevs),
        "source_name": source_name,
    }
    _claim(out, identity)
    if not (out / LABELS).exists():
        _atomic_save(out / LABELS, np.tile(labels, len(sevs)))  # (S*N,), repeated per severity
    todo = [c for c in names if not _is_whole(out / f"{c}.npy", len(sevs) * n)]
    units = out / UNITS
    units.mkdir(exist_ok=True)
    pending = [(c, s) for c in todo for s in sevs if not _unit_path(units, c, s).exists()]
    frost = None if frost_dir is None else str(frost_dir)
    n_workers = min(workers or os.cpu_count() or 1, max(len(pending), 1))
    bar = tqdm(total=len(pending), desc=f"CIFAR-10-C {source_name}", unit="unit", disable=not progress)
    source = out / f".source-{os.getpid()}-{uuid.uuid4().hex[:8]}.npy"
    try:
        if n_workers <= 1:
            for c, s in pending:
                _atomic_save(_unit_path(units, c, s), _corrupt_unit(images, c, s, int(seed), frost))
                bar.update(1)
        elif pending:
            # Workers map the source from disk instead of receiving it pickled per task.
            _atomic_save(source, images)
            ctx = multiprocessing.get_context("spawn")  # fork is unsafe under torch/Ray threads
            with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
                futures = {pool.submit(_run_unit, str(source), str(units), c, s, int(seed), frost) for c, s in pending}
                while futures:
                    done, futures = wait(futures, return_when=FIRST_EXCEPTION)
                    for f in done:
                        f.result()  # re-raises a worker's error here
                        bar.update(1)
    finally:
        bar.close()
        source.unlink(missing_ok=True)
    for c in todo:
        _assemble(out, c, sevs, n)
    with_files = [c for c in ALL_CORRUPTIONS if _is_whole(out / f"{c}.npy", len(sevs) * n)]
    # Files on disk are the truth; the list is for people reading the manifest.
    manifest = {**identity, "corruptions": with_files}
    _atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    try:
        units.rmdir()
    except OSError:
        pass  # unit files of a concurrent run, or stale temporaries of a killed one
    return out


def load_corrupted(dir: str | os.PathLike, name: str, *, severities: Iterable[int] | None = None,
                   limit: int | None = None) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """One corruption of an official or generated CIFAR-10-C folder.

    Official folders have no manifest and hold severities 1..5 of N = rows/5
    images; generated ones say their severities and N in ``manifest.json``.

    Args:
        dir: the folder holding ``<name>.npy`` and ``labels.npy``.
        name: a corruption from ``ALL_CORRUPTIONS``.
        severities: which to return (default all in the file).
        limit: only the first ``limit`` images of each severity block.

    Returns:
        ``(images (S*n, 32, 32, 3) uint8, labels (S*n,) int64, severities)``,
        severity-major, ``n = min(N, limit)``.
    """
    folder = Path(dir)
    (name,) = check_corruptions([name])
    path = folder / f"{name}.npy"
    if not path.is_file():
        have = sorted(p.stem for p in folder.glob("*.npy") if p.stem in ALL_CORRUPTIONS) if folder.is_dir() else []
        raise FileNotFoundError(f"{path}: not found (folder has: {', '.join(have) or 'no corruption files'})")
    manifest = _read_manifest(folder)
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
            raise ValueError(f"{path}: {arr.shape[0]} rows is not 5 severity blocks (official files have 50000)")
        n = arr.shape[0] // len(file_sevs)
    else:
        file_sevs, n = tuple(manifest["severities"]), int(manifest["n"])
        if arr.shape[0] != len(file_sevs) * n:
            raise ValueError(f"{path}: {arr.shape[0]} rows, manifest says {len(file_sevs)} severities x {n} images")
    if lab.shape != (arr.shape[0],) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"{folder / LABELS}: expected integer labels of shape ({arr.shape[0]},), got {lab.dtype} {lab.shape}")
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


def ensure_corrupted_copy(images: np.ndarray, labels: np.ndarray, cache_root: str | os.PathLike, *,
                          split_name: str, corruptions: Iterable[str], severities: Iterable[int], seed: int,
                          frost_dir: str | os.PathLike | None = None, workers: int = 0,
                          limit: int | None = None) -> Path:
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
    images, labels = _check_source(images, labels)
    names, sevs = check_corruptions(corruptions), check_severities(severities)
    tag = f"{_sha256(images)[:8]}{_sha256(labels)[:8]}"
    folder = Path(cache_root) / (
        f"{split_name}-{tag}-v{GENERATOR_VERSION}-seed{int(seed)}-n{images.shape[0]}-s{''.join(map(str, sevs))}"
    )
    if completed(folder, names, sevs, images.shape[0]):
        return folder
    return generate(images, labels, folder, corruptions=names, severities=sevs, seed=seed, workers=workers,
                    frost_dir=frost_dir, source_name=split_name, progress=True)


def _parse_list(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"--{what}: empty list")
    return items


def cmd_corrupt(args) -> int:
    """``freqstudy corrupt``: write a CIFAR-10-C copy of the test set or the validation split."""
    names = check_corruptions(_parse_list(args.corruptions, "corruptions") or ALL_CORRUPTIONS)
    sev_text = _parse_list(args.severities, "severities")
    try:
        sevs = check_severities([int(s) for s in sev_text] if sev_text else SEVERITIES)
    except ValueError:
        raise ValueError(f"--severities: {args.severities!r} invalid; allowed comma-separated integers in 1..5") from None
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit: {args.limit} must be >= 1")
    # Imported here, after the cheap checks: spawned generation workers import
    # this module and need no torch, which study.data loads.
    from study.data import load_cifar10, stratified_split

    data = load_cifar10(args.data_dir, download=True)
    if args.split == "test":
        images, labels = data.test_images, data.test_labels
    else:
        if not 0.0 < args.val_fraction < 1.0:
            raise ValueError(f"--val-fraction: {args.val_fraction} is out of range; allowed (0, 1)")
        _, val_idx = stratified_split(data.train_labels, args.val_fraction, args.split_seed)
        images, labels = data.train_images[val_idx], data.train_labels[val_idx]
    if args.limit is not None:
        images, labels = images[: args.limit], labels[: args.limit]
    t0 = time.perf_counter()
    out = generate(images, labels, args.out, corruptions=names, severities=sevs, seed=args.seed,
                   workers=args.workers, frost_dir=args.frost_dir, source_name=args.split)
    seconds = time.perf_counter() - t0
    print(f"{out}: {len(names)} corruptions x {len(sevs)} severities x {len(images)} {args.split} images "
          f"in {seconds:.1f} s")
    return 0


def _synthetic_images(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 32, 32, 3)`` uint8 images with smooth structure and texture, so filters do real work."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 8, 8, 3)).astype(np.float32)
    smooth = coarse.repeat(4, axis=1).repeat(4, axis=2)  # (n, 8, 8, 3) -> (n, 32, 32, 3)
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench_corruption_generation(n_images: int, workers: int, quick: bool) -> dict:
    """Time generating all 19 corruptions x 5 severities of ``n_images`` synthetic images.

    Args:
        n_images: clean images (capped at 200 when ``quick``).
        workers: processes, as for ``generate`` (0 = one per core).
        quick: a small run, well under a minute.

    Returns:
        ``images_per_s`` (corrupted images written per wall second, all 95
        units), the reference's figure beside it and their ratio, the
        projected seconds for the full 10,000 test images, and
        ``images_per_cpu_s`` (per CPU second of this process and its workers).
    """
    n = min(n_images, 200) if quick else n_images
    images = _synthetic_images(n)
    labels = np.arange(n, dtype=np.int64) % 10
    root = Path(tempfile.mkdtemp(prefix="freqstudy-bench-corrupt-"))
    try:
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        # Frost textures are found as study.corruptions resolves them ($FREQSTUDY_FROST_DIR, cache, download).
        generate(images, labels, root / "c", workers=workers, source_name="bench", progress=False)
        seconds = time.perf_counter() - t0
        cpu_seconds = _cpu_seconds() - cpu0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    units = len(ALL_CORRUPTIONS) * len(SEVERITIES)
    rate = n * units / seconds
    return {
        "n_images": n,
        "workers": workers or os.cpu_count(),
        "units": units,
        "seconds": seconds,
        "images_per_s": rate,
        # CPU time of this process and its (joined) workers: robust to other load on a shared machine.
        "cpu_seconds": cpu_seconds,
        "images_per_cpu_s": n * units / cpu_seconds,
        "reference_images_per_s": REFERENCE_IMAGES_PER_S,
        "speedup_vs_reference": rate / REFERENCE_IMAGES_PER_S,
        "projected_full_test_seconds": 10_000 * units / rate,
    }
