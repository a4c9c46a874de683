"""Atomic file writes and array digests: how every file freqstudy leaves behind
is made.

A file is written to a uniquely named temporary beside its target and moved
into place with ``os.replace``, so a reader (another process, a resumed run,
the MLflow UI) sees the old file or the whole new one, never a torn one, and
concurrent writers of the same target never share a temporary. Temporaries are
``.<name>.<random>.tmp``; a killed writer's are swept by whoever owns the
folder (``study.cifar10c``). No torch here: spawned corruption workers
import this.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None], *, fsync: bool = False) -> Path:
    """Create ``path`` from ``write(file)`` atomically; returns the path.

    Args:
        path: the target; its folder is created.
        write: fills the open binary temporary.
        fsync: flush to disk before the rename (checkpoints: survive a power cut).

    Raises:
        OSError: a full disk or another OS error; it names ``path`` (a failed
            ``write`` names none), and neither the temporary nor a torn ``path`` is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are for reading
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise named(e, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def named(e: OSError, path: str | os.PathLike) -> OSError:
    """``e`` itself when it names a file, else the same error (same errno, same subclass) naming ``path``.

    A failed ``write`` (ENOSPC, EIO) says no path; the caller's message should.
    """
    if e.filename is not None or e.errno is None:
        return e
    return OSError(e.errno, e.strerror or os.strerror(e.errno), str(path))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomic(path, lambda f: f.write(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda f: f.write(text.encode()))


def digest(*arrays: np.ndarray) -> str:
    """sha256 hex of the arrays' dtypes, shapes and bytes, in order (cache keys, data tags)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
