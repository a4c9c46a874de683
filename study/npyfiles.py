"""Reading ``.npy`` and ``.npz`` files that someone else wrote, within stated sizes.

``np.load`` trusts a file: it allocates what an ``.npy`` header declares and decompresses an
``.npz`` member in full before the caller can look at it, so a 1.4 MB archive holding a
1.5 GB member costs 1.5 GB and half a minute before any check runs. Here, before a single
member byte is decompressed, the zip's central directory is read (names and uncompressed
sizes), each member's size is checked against the caller's limit, and its ``.npy`` header
(the first few hundred bytes) is read for dtype and shape, which must be a plain dtype of the
expected kind and dimensions, whose byte count fits the limit and matches the member's size.
Only then is the member read; ``zipfile`` never yields more than the directory's size for it.
Nothing is unpickled (object dtypes are refused from the header). Errors are one
``ValueError`` line starting with the caller's ``what``.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy

__all__ = ["Expect", "read_npy", "read_npz"]

MAX_HEADER_BYTES = 64 * 1024  # numpy writes headers of a few hundred bytes (format 2.0 allows 4 GB)


@dataclass(frozen=True)
class Expect:
    """What an array must be: ``kinds`` (``np.dtype.kind`` letters), ``ndim``, at most ``max_bytes``."""

    kinds: str
    ndim: int
    max_bytes: int


def _header(f: IO[bytes], what: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, header_length)`` of the ``.npy`` stream at its start."""
    try:
        version = npy.read_magic(f)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"version {version}")
        reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = reader(f, max_header_size=MAX_HEADER_BYTES)
    except Exception as exc:  # numpy raises ValueError, EOFError, SyntaxError...: one line, whatever it is
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ValueError(f"{what}: not a readable .npy header ({reason})") from None
    return tuple(shape), bool(fortran), dtype, f.tell()


def _check(what: str, shape, dtype: np.dtype, expect: Expect) -> int:
    """The array's byte count, after checking dtype, dimensions and size against ``expect``."""
    if dtype.hasobject:
        raise ValueError(f"{what}: holds Python objects (dtype {dtype}); only plain arrays are read")
    if dtype.kind not in expect.kinds or len(shape) != expect.ndim:
        raise ValueError(
            f"{what}: has dtype {dtype} and {len(shape)} dims, "
            f"expected kind {expect.kinds!r} with {expect.ndim}"
        )
    nbytes = math.prod(int(n) for n in shape) * dtype.itemsize
    if nbytes > expect.max_bytes:
        raise ValueError(
            f"{what}: declares {nbytes:,} bytes (shape {tuple(shape)}, {dtype}); allowed at most "
            f"{expect.max_bytes:,}"
        )
    return nbytes


def _read(f: IO[bytes], what: str, shape, fortran: bool, dtype: np.dtype, nbytes: int) -> np.ndarray:
    data = f.read(nbytes + 1)
    if len(data) != nbytes:
        raise ValueError(f"{what}: holds {len(data):,} data bytes, its header declares {nbytes:,}")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def read_npz(data: bytes, *, what: str, expect: Mapping[str, Expect]) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive that holds exactly the names of ``expect``.

    Args:
        data: the archive's bytes.
        what: how errors start (``outcomes``).
        expect: per array name (without ``.npy``), what it must be.

    Raises:
        ValueError: one line: not an archive, names missing or unexpected, a member larger
            than its limit (from the zip directory, before it is read), a header that is not
            a plain array of the expected kind, or data that does not match its header.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{what}: not an npz archive ({type(exc).__name__})") from None
    with zf:
        infos = zf.infolist()
        names = [i.filename[:-4] if i.filename.endswith(".npy") else i.filename for i in infos]
        missing = [n for n in expect if n not in names]
        extra = sorted(set(names) - set(expect))
        if missing or extra or len(set(names)) != len(names):
            raise ValueError(f"{what}: entries missing {missing} or unexpected {extra}")
        out: dict[str, np.ndarray] = {}
        for info, name in zip(infos, names):
            entry = f"{what}: entry {name!r}"
            limit = expect[name].max_bytes + MAX_HEADER_BYTES
            if info.file_size > limit:  # the zip directory's size: nothing decompressed yet
                raise ValueError(
                    f"{entry} is {info.file_size:,} bytes uncompressed; allowed at most {limit:,}"
                )
            try:
                with zf.open(info) as f:
                    shape, fortran, dtype, _ = _header(f, entry)
                    nbytes = _check(entry, shape, dtype, expect[name])
                    out[name] = _read(f, entry, shape, fortran, dtype, nbytes)
            except ValueError:
                raise
            except Exception as exc:  # a corrupt member (bad CRC, bad deflate stream): one line
                raise ValueError(f"{entry} is unreadable ({type(exc).__name__})") from None
    return out


def read_npy(path: str | os.PathLike, *, what: str, expect: Expect) -> np.ndarray:
    """The array of an ``.npy`` file, checked against ``expect`` from its header and size first.

    Raises:
        ValueError: one line starting with ``what``.
        OSError: the file cannot be opened.
    """
    with open(Path(path), "rb") as f:
        shape, fortran, dtype, header = _header(f, what)
        nbytes = _check(what, shape, dtype, expect)
        size = os.fstat(f.fileno()).st_size
        if size - header != nbytes:
            raise ValueError(f"{what}: holds {size - header:,} data bytes, its header declares {nbytes:,}")
        return _read(f, what, shape, fortran, dtype, nbytes)
