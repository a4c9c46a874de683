"""Small files freqstudy keeps in a study's Tune folder, local or on a URI storage.

A local path is written atomically (a temporary name, then a rename); a URI
(``s3://``, ``gs://``) goes through ``pyarrow.fs``, which Ray Tune itself uses for such
storage. Both are JSON: reading one never runs code (unlike Tune's pickles beside them).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from study.search.storage import is_uri

MAX_BYTES = 4 << 20  # a settings file holds a space file's text; anything larger is not ours


def _uri_fs(uri: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(uri)


def read_json(folder: str, name: str) -> dict[str, Any] | None:
    """The JSON object in ``<folder>/<name>``, or None where there is no such file.

    Raises:
        ValueError: one line naming the file when it is not a JSON object or too large.
    """
    where = f"{folder.rstrip('/')}/{name}"
    try:
        if is_uri(folder):
            fs, path = _uri_fs(where)
            with fs.open_input_stream(path) as f:
                data = f.read(MAX_BYTES + 1)
        else:
            with open(Path(folder) / name, "rb") as f:
                data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        if is_uri(folder) and "not found" in str(e).lower():
            return None
        raise
    if len(data) > MAX_BYTES:
        raise ValueError(f"{where}: larger than {MAX_BYTES} bytes; not a file freqstudy wrote")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{where}: not valid JSON ({e}); not a file freqstudy wrote") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: not a JSON object; not a file freqstudy wrote")
    return value


def write_json(folder: str, name: str, value: dict[str, Any]) -> None:
    """Write ``value`` to ``<folder>/<name>`` whole (readers never see half a file)."""
    data = json.dumps(value, indent=1, sort_keys=True).encode("utf-8")
    if is_uri(folder):
        fs, path = _uri_fs(f"{folder.rstrip('/')}/{name}")
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    tmp = Path(folder) / f".{name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, Path(folder) / name)
    finally:
        tmp.unlink(missing_ok=True)


def create_json(folder: str, name: str, value: dict[str, Any]) -> bool:
    """Create ``<folder>/<name>`` only if it does not exist; False when it does.

    On a local or NFS path this is atomic (``link``). Object stores have no
    create-if-absent here: the file is written, and the caller reads it back to see
    whose it is.
    """
    if is_uri(folder):
        if read_json(folder, name) is not None:
            return False
        write_json(folder, name, value)
        return True
    # Written whole under a temporary name, then hard-linked into place: link() fails when
    # the name exists, so exactly one creator wins and no reader sees half a file.
    tmp = Path(folder) / f".{name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(value, indent=1, sort_keys=True).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, Path(folder) / name)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def delete(folder: str, name: str) -> None:
    try:
        if is_uri(folder):
            fs, path = _uri_fs(f"{folder.rstrip('/')}/{name}")
            fs.delete_file(path)
        else:
            (Path(folder) / name).unlink()
    except (FileNotFoundError, OSError):
        pass
