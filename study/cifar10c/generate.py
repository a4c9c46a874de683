"""Generate a CIFAR-10-C copy of any image set in the official layout.

The work is cut into (corruption, severity) units, each with its own
generator ``default_rng([seed, index in ALL_CORRUPTIONS, severity])``: the
bytes do not depend on the worker count or the order units run in. Units run
in spawned processes (math libraries on one thread each) that read the source
through a memory-mapped ``.npy`` and write their block straight into a
preallocated, memory-mapped partial file of their corruption under
``.partial/``, then drop a marker for the block. Partials get their disk blocks
when they are made, so a full disk is one ``OSError`` naming the file before any
work, never a SIGBUS in a process writing through a map. A run holds an ``flock`` on
each partial it fills and publishes it with ``os.replace`` once every block
is marked, so a partial file is never read as whole; the next run resumes a
dead run's partial (its lock is gone) from its markers, and deletes the dead
run's leftovers; concurrent runs into one folder each fill their own. The
layout itself is ``study.cifar10c.layout``.

A spawned worker first re-runs the main module's top-level code. Called from a
plain script's top level with no ``if __name__ == "__main__":`` guard (a
trial started from a notebook-style script), workers would start the pool
again and die; the units then run in this process instead, with one note on
stderr saying what to add for parallel workers.
It is over 500 lines as one concern: making a corrupted copy, from the work
units to the locks, workers and the files they leave, which fail together.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from study.cifar10c.layout import (
    LABELS,
    MANIFEST,
    NUM_CLASSES,
    check_corruptions,
    check_severities,
    read_manifest,
)
from study.cifar10c.pool import note_in_process, spawn_reruns_caller, worker_pool
from study.cifar10c.schedule import plan_tasks
from study.cifar10c.worker import PARTIAL_SUFFIX, UnitTiming, fill_unit, marker, run_units
from study.corruptions import GENERATOR_VERSION
from study.files import digest, named, write_atomic, write_text_atomic
from study.metrics import ALL_CORRUPTIONS, SEVERITIES

PARTIAL = ".partial"  # per-run files being filled, until each is published as <corruption>.npy
SOURCE = "source"  # .partial/source.<pid>-<hex>.npy: the clean images, mapped by the workers
# Unlocked temporaries (labels, manifest) live milliseconds; one this much older than a run is a dead run's.
STALE_TMP_S = 60.0
# Manifest fields that identify a copy; a folder holding another value for any of them is refused.
IDENTITY = ("source_sha256", "labels_sha256", "generator_version", "seed", "n", "severities")


def check_source(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.ascontiguousarray(images)
    labels = np.asarray(labels)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):  # never truncate 2.7 to 2
        raise ValueError(f"labels: {labels.dtype}, not integers; allowed integers 0..{NUM_CLASSES - 1}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(
            f"labels: {labels.min()}..{labels.max()}; allowed integers 0..{NUM_CLASSES - 1} "
            "(the loader refuses a copy holding others)"
        )
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"images: expected uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels: expected shape ({images.shape[0]},), got {labels.shape}")
    if images.shape[0] == 0:
        raise ValueError("images: empty; nothing to corrupt")
    return images, labels


def _claim(out: Path, identity: dict) -> dict:
    """The folder's manifest, written now if absent; ``ValueError`` if it belongs to another copy."""
    manifest = read_manifest(out)
    if manifest is None:
        foreign = sorted(p.name for p in out.glob("*.npy"))
        if foreign:
            raise ValueError(
                f"{out}: holds {', '.join(foreign[:3])} but no {MANIFEST} (an official CIFAR-10-C folder?); "
                "generate into an empty folder"
            )
        manifest = {**identity, "corruptions": []}
        write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1))
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


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive ``flock`` on ``path``; None if another process holds it or the file is gone.

    The lock must be on the file ``path`` names now: a partial that its owner
    published (renamed) between our ``open`` and ``flock`` is not ours to touch.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            return fd
    except (BlockingIOError, FileNotFoundError):
        pass
    os.close(fd)
    return None


@contextlib.contextmanager
def _folder_lock(out: Path):
    """Exclusive ``flock`` on the output folder while partials are scanned, adopted, created or swept.

    A partial is created and locked inside this section, so a scan never sees
    one in the instant between its creation and its lock and takes it for stale.
    """
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass
class _Partial:
    """One corruption's output being filled by this run.

    ``data`` is ``.partial/<name>.<pid>-<hex>.npy.tmp``, a whole-size uint8
    ``(S*N, 32, 32, 3)`` ``.npy``; ``fd`` holds an exclusive ``flock`` on it for
    as long as this run owns it (the kernel drops it if the run dies, which is
    how the next run knows it may resume or delete the file); ``done`` holds
    the severities whose blocks are written and marked.
    """

    name: str
    data: Path
    fd: int
    done: set[int] = field(default_factory=set)

    def release(self) -> None:
        os.close(self.fd)


def _discard(data: Path, fd: int) -> None:
    """Delete a dead run's partial and its markers (we hold its lock), then let go of it."""
    for m in data.parent.glob(f"{data.name.removesuffix(PARTIAL_SUFFIX)}.s*.done"):
        m.unlink(missing_ok=True)
    data.unlink(missing_ok=True)
    os.close(fd)


def _preallocate(path: Path, fd: int) -> None:
    """Give every byte of the open file ``fd`` (``path``) its disk blocks now.

    Workers fill partials through memory maps; a page that the filesystem cannot
    back when it is written (a full disk, a quota) kills the process with SIGBUS,
    no message, no cleanup. Allocated up front, a full disk is an ``OSError``
    naming ``path`` here instead, before any work. A filesystem that cannot
    preallocate keeps the sparse file (and the old risk).
    """
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
            return
        raise named(e, path) from None


def _create_partial(folder: Path, name: str, rows: int) -> _Partial:
    """A new, locked, preallocated partial for ``name`` in ``folder``; nothing left if it cannot be made."""
    data = folder / f"{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
    fd = os.open(data, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else can hold it
        # Header and full length now: workers only ever map and fill it.
        try:
            blank = np.lib.format.open_memmap(data, mode="w+", dtype=np.uint8, shape=(rows, 32, 32, 3))
        except OSError as e:
            raise named(e, data) from None
        del blank  # unmaps it
        _preallocate(data, fd)
    except BaseException:
        data.unlink(missing_ok=True)
        os.close(fd)
        raise
    return _Partial(name, data, fd)


@contextlib.contextmanager
def _released_on_error(partials: dict[str, _Partial]):
    """Let go of ``partials`` if the block fails (a full disk): they stay for the next run to resume."""
    try:
        yield
    except BaseException:
        for p in partials.values():
            p.release()
        raise


def _open_partials(out: Path, names: Sequence[str], sevs: Sequence[int], n: int) -> dict[str, _Partial]:
    """Lock one partial per corruption of ``names`` not yet published: a dead run's, resumed, or a new one.

    Under the folder lock: a partial whose lock can be taken belongs to a run
    that has died. It is resumed (its marked severities kept) when it is a
    readable file of the right shape for a corruption still to do; one of
    another corruption asked for later is left for that run; anything else
    (unreadable, already published, a duplicate, or a dead run's source copy)
    is deleted, with markers whose partial is gone. Partials locked by live
    runs are left alone; a corruption they are filling gets its own partial
    here too (the outputs are byte-identical, the last ``os.replace`` wins).
    """
    rows = len(sevs) * n
    folder = out / PARTIAL
    partials: dict[str, _Partial] = {}
    with _folder_lock(out), _released_on_error(partials):
        folder.mkdir(exist_ok=True)  # under the lock: a finishing run removes it under the lock when empty
        published = {c for c in ALL_CORRUPTIONS if _is_whole(out / f"{c}.npy", rows)}
        # Most-marked first, so a duplicate that loses is the one with less work in it.
        found = sorted(
            folder.glob(f"*{PARTIAL_SUFFIX}"),
            key=lambda p: -len(list(folder.glob(f"{p.name.removesuffix(PARTIAL_SUFFIX)}.s*.done"))),
        )
        for data in found:
            fd = _try_lock(data)
            if fd is None:
                continue  # a live run's
            name = data.name.split(".", 1)[0]
            if (
                name in ALL_CORRUPTIONS
                and name not in published
                and name not in partials
                and _is_whole(data, rows)
            ):
                if name in names:
                    partials[name] = _Partial(name, data, fd, {s for s in sevs if marker(data, s).exists()})
                    writable = os.open(data, os.O_RDWR)  # a dead run's may be sparse (older versions)
                    try:
                        _preallocate(data, writable)
                    finally:
                        os.close(writable)
                else:
                    os.close(fd)
            else:
                _discard(data, fd)
        for source in folder.glob(f"{SOURCE}.*.npy"):
            fd = _try_lock(source)
            if fd is not None:
                _discard(source, fd)
        for m in folder.glob("*.done"):
            if not m.with_name(f"{m.name.rsplit('.', 2)[0]}{PARTIAL_SUFFIX}").exists():
                m.unlink(missing_ok=True)  # its partial was published or discarded
        for name in names:
            if name not in partials and name not in published:
                partials[name] = _create_partial(folder, name, rows)
    return partials


def _sweep_atomic_temporaries(out: Path, started: float) -> None:
    """Delete ``study.files`` temporaries in ``out`` that a killed run left behind.

    These are small (labels, manifest), unlocked, and live for milliseconds
    while a run writes them; one last modified ``STALE_TMP_S`` before this run
    started is safe to call dead without knowing its writer.
    """
    for tmp in out.glob("*.tmp"):
        try:
            if tmp.is_file() and tmp.stat().st_mtime < started - STALE_TMP_S:
                tmp.unlink()
        except FileNotFoundError:
            pass


def _publish(out: Path, partial: _Partial) -> None:
    """``os.replace`` a fully marked partial onto ``<name>.npy``, drop its markers, release its lock."""
    os.replace(partial.data, out / f"{partial.name}.npy")
    for s in partial.done:
        marker(partial.data, s).unlink(missing_ok=True)
    partial.release()


def completed(
    out_dir: str | os.PathLike, corruptions: Iterable[str], severities: Iterable[int], n: int
) -> bool:
    """Whether ``out_dir`` holds whole files for every corruption (and the labels) at these severities."""
    out = Path(out_dir)
    sevs = check_severities(severities)
    rows = len(sevs) * n
    manifest = read_manifest(out) if out.is_dir() else None
    if manifest is None or manifest.get("severities") != list(sevs):
        return False
    try:
        labels = np.load(out / LABELS, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return labels.shape == (rows,) and all(
        _is_whole(out / f"{c}.npy", rows) for c in check_corruptions(corruptions)
    )


def generate(
    images: np.ndarray,
    labels: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    corruptions: Iterable[str] = ALL_CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    workers: int = 0,
    frost_dir: str | os.PathLike | None = None,
    source_name: str = "test",
    progress: bool = True,
    on_unit: Callable[[UnitTiming], None] | None = None,
) -> Path:
    """Write a CIFAR-10-C copy of ``images`` into ``out_dir`` in the official layout.

    Args:
        images: ``(N, 32, 32, 3)`` uint8 clean images.
        labels: ``(N,)`` integer labels.
        out_dir: created if absent; may hold an unfinished copy of the same
            source, seed and version, which is resumed.
        corruptions: names from ``ALL_CORRUPTIONS``.
        severities: subset of 1..5.
        seed: random corruptions follow it; files are byte-identical for a seed.
        workers: processes; 0 = ``os.cpu_count()``, 1 = in this process (also when called
            from a script's top level without a ``__main__`` guard; see the module docstring).
        frost_dir: folder with the frost textures (frost corruption).
        source_name: recorded in the manifest (``test``, ``val``...).
        progress: show a progress bar over units on a terminal, else one line when work starts.
        on_unit: called in this process with each finished unit's timing (the bench's
            kernel time, per-unit overhead and worker start-up).

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ValueError: bad arguments, or ``out_dir`` belongs to another source, seed
            or generator version, or holds official files.
    """
    started = time.time()
    images, labels = check_source(images, labels)
    names, sevs = check_corruptions(corruptions), check_severities(severities)
    if workers < 0:
        raise ValueError(f"workers: {workers} must be >= 0 (0 = one per core)")
    n = images.shape[0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    identity = {
        "source_sha256": digest(images),
        "labels_sha256": digest(labels),
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n": n,
        "severities": list(sevs),
        "source_name": source_name,
    }
    with _folder_lock(out):
        # Under the lock: a concurrent run must not see our labels.npy between its
        # manifest check and its scan for foreign files.
        _claim(out, identity)
    _sweep_atomic_temporaries(out, started)
    if not (out / LABELS).exists():
        repeated = np.tile(labels, len(sevs))  # (S*N,), repeated per severity
        write_atomic(out / LABELS, lambda f: np.save(f, repeated))
    partials = _open_partials(out, names, sevs, n)
    # Corruption-major, so each corruption's file is published as soon as its severities are in.
    pending = [(c, s) for c in names if c in partials for s in sevs if s not in partials[c].done]
    frost = None if frost_dir is None else str(frost_dir)
    n_workers = min(workers or os.cpu_count() or 1, max(len(pending), 1))
    if n_workers > 1 and spawn_reruns_caller():
        note_in_process()
        n_workers = 1
    tasks = plan_tasks(pending, n_workers)  # a corruption's severities together, costliest first
    n_workers = min(n_workers, max(len(tasks), 1))
    # A bar on a terminal; in a log file, one plain line instead of a stream of carriage returns.
    from tqdm import tqdm  # here, not at the top: every spawned worker imports this package

    terminal = progress and sys.stderr.isatty()
    bar = tqdm(total=len(pending), desc=f"CIFAR-10-C {source_name}", unit="unit", disable=not terminal)
    if progress and not terminal and pending:
        print(
            f"CIFAR-10-C {source_name}: generating {len(pending)} corruption x severity blocks "
            f"of {n} images ...",
            file=sys.stderr,
            flush=True,
        )
    source: tuple[Path, int] | None = None  # the workers' copy of the images, and our lock on it

    def finish(timing: UnitTiming) -> None:
        c, s = timing.name, timing.severity
        if on_unit is not None:
            on_unit(timing)
        partials[c].done.add(s)
        if partials[c].done == set(sevs):
            _publish(out, partials.pop(c))
        bar.update(1)

    try:
        for c in [c for c, p in partials.items() if p.done == set(sevs)]:
            _publish(out, partials.pop(c))  # a dead run wrote every block but died before publishing
        if n_workers <= 1:
            for c, s in pending:
                t0, c0 = time.perf_counter(), time.process_time()
                kernel = fill_unit(images, str(partials[c].data), sevs.index(s), c, s, int(seed), frost)
                unit = (time.perf_counter() - t0, time.process_time() - c0)
                finish(UnitTiming(c, s, *kernel, *unit, os.getpid(), None, None))
        elif pending:
            # Workers map the source from disk instead of receiving it pickled per task. It is
            # locked like a partial, so that a concurrent run's sweep leaves it alone.
            with _folder_lock(out):
                path = out / PARTIAL / f"{SOURCE}.{os.getpid()}-{uuid.uuid4().hex[:8]}.npy"
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                source = (path, fd)
            try:
                np.save(path, images)
            except OSError as e:  # a failed write names no file
                raise named(e, path) from None
            with worker_pool(n_workers) as pool:
                futures = {
                    pool.submit(
                        run_units,
                        str(path),
                        [(c, s, str(partials[c].data), sevs.index(s)) for c, s in task],
                        int(seed),
                        frost,
                    )
                    for task in tasks
                }
                try:
                    while futures:
                        done, futures = wait(futures, return_when=FIRST_COMPLETED)  # publish as they finish
                        for f in done:
                            for timing in f.result():  # re-raises a worker's error here
                                finish(timing)
                except BaseException:
                    pool.shutdown(cancel_futures=True)  # don't run the queued units first
                    raise
    finally:
        bar.close()
        if source is not None:
            source[0].unlink(missing_ok=True)
            os.close(source[1])
        for p in partials.values():
            p.release()  # unfinished (an error, an interrupt): the next run resumes it
    with_files = [c for c in ALL_CORRUPTIONS if _is_whole(out / f"{c}.npy", len(sevs) * n)]
    # Files on disk are the truth; the list is for people reading the manifest.
    manifest = {**identity, "corruptions": with_files}
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1))
    with _folder_lock(out):
        try:
            (out / PARTIAL).rmdir()
        except OSError:
            pass  # partials of a concurrent run, or of corruptions a later run may ask for
    return out
