"""CIFAR-10 on disk: safe loading, download, and the validation split.

The official python-batch layout (``cifar-10-batches-py/``) is a set of
pickles; they are read with a restricted unpickler that admits only numpy's
array-reconstruction globals, so a tampered batch is refused before anything
runs. A missing folder is fetched from the official archive (md5-checked,
extracted atomically) when asked and the network allows. The validation split
is carved out of the training set, stratified by class, so a study never
selects on the test set.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from study import files

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _latin1_bytes(text: object, encoding: object = "latin1", errors: object = "strict") -> bytes:
    """``_codecs.encode(text, "latin1")``, as Python 3 pickles ``bytes`` at protocol 2.

    It only builds bytes from a str in latin-1: any other argument or codec is refused.
    """
    if not isinstance(text, str) or str(encoding).lower().replace("-", "").replace("_", "") not in (
        "latin1",
        "iso88591",
    ):
        raise pickle.UnpicklingError(
            f"refused _codecs.encode({type(text).__name__}, {encoding!r}); only a str in latin1 is allowed"
        )
    return text.encode("latin1")


# The only globals a CIFAR-10 batch may name. Both numpy spellings map to the
# numpy 2 objects directly so the deprecated ``numpy.core`` shim is never
# imported. Dicts, lists, tuples, strings and ints are pickle opcodes, not
# globals, so they need no entry; ``_codecs.encode`` is how a Python 3 pickle at
# protocol 2 spells bytes, and maps to the harmless ``_latin1_bytes``.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy.core.numeric", "_frombuffer"): np._core.numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): np._core.numeric._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``_ALLOWED_GLOBALS``; anything else is refused."""

    def __init__(self, file, *, source: Path):
        # "bytes" keeps Python-2 strings (the array payloads) as bytes; keys are
        # normalised afterwards, so str-keyed and bytes-keyed batches both load.
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS)
            raise pickle.UnpicklingError(
                f"{self.source}: refused global {module}.{name}; a CIFAR-10 batch may only name {allowed}"
            ) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"{self.source}: refused persistent id {pid!r}")


def _text(value) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def read_batch(path: Path) -> dict[str, object]:
    """One python-batch pickle as a dict with ``str`` keys.

    Raises:
        ValueError: naming the file, when it is truncated, corrupt, not a dict,
            or names a global other than numpy's array reconstruction.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        obj = _BatchUnpickler(io.BytesIO(raw), source=path).load()
    except pickle.UnpicklingError as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith(str(path)) else f"{path}: corrupt batch ({msg})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError) as e:
        raise ValueError(f"{path}: corrupt or truncated batch ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict batch, got {type(obj).__name__}")
    return {_text(k): v for k, v in obj.items()}


def _integer_labels(path: Path, raw: object, num_classes: int) -> np.ndarray:
    """``raw`` as int64 labels, each an integer in ``0..num_classes-1``; ``ValueError`` naming ``path``.

    Whole-valued floats are taken as they are; anything else (fractions, NaN, strings,
    booleans, nested lists) is refused rather than truncated or cast.
    """
    allowed = f"allowed integers 0..{num_classes - 1}"
    try:
        values = np.asarray(raw)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: labels are not a flat list of numbers ({e}); {allowed}") from None
    if values.ndim != 1:
        raise ValueError(f"{path}: labels have shape {values.shape}, expected a flat list; {allowed}")
    if values.size and not (
        np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
    ):
        first = values.flat[0].item() if isinstance(values.flat[0], np.generic) else values.flat[0]
        raise ValueError(f"{path}: labels are {values.dtype} (first: {first!r}), not integers; {allowed}")
    if np.issubdtype(values.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{path}: label {i} is {values[i].item()!r}, not an integer; {allowed}")
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        lo, hi = values.min(), values.max()
        raise ValueError(f"{path}: labels must be in 0..{num_classes - 1}, got labels {lo:g}..{hi:g}")
    return values.astype(np.int64)


def _images_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 32, 32, 3)`` uint8 HWC images and ``(N,)`` int64 labels of one batch file."""
    batch = read_batch(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise ValueError(f"{path}: batch has no {key!r} key (keys: {', '.join(sorted(batch))})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {got}")
    labels = _integer_labels(path, batch["labels"], len(CLASSES))
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: {labels.shape[0] if labels.ndim else 0} labels for {data.shape[0]} images")
    # Rows are R(1024) G(1024) B(1024), each row-major 32x32: (N, 3072) -> (N, 32, 32, 3).
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


@dataclass(frozen=True)
class Cifar10:
    """CIFAR-10 in memory.

    Attributes:
        train_images: ``(N, 32, 32, 3)`` uint8, HWC, RGB.
        train_labels: ``(N,)`` int64 in 0..9.
        test_images: ``(M, 32, 32, 3)`` uint8.
        test_labels: ``(M,)`` int64.
        classes: the ten class names, indexed by label.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...] = CLASSES


def resolve_folder(data_dir: str | os.PathLike) -> Path:
    """``data_dir`` itself when it is a ``cifar-10-batches-py`` folder, else the one inside it."""
    root = Path(data_dir).expanduser()
    if root.name == FOLDER or (root / TEST_BATCH).exists():
        return root
    return root / FOLDER


def _missing_message(folder: Path) -> str:
    return (
        f"CIFAR-10 not found: expected {folder} holding {', '.join(TRAIN_BATCHES)}, {TEST_BATCH}; "
        f"download {CIFAR10_URL} and extract it into {folder.parent} (train and run fetch it themselves "
        "with data.download: true, the default)"
    )


def load_cifar10(data_dir: str | os.PathLike, *, download: bool = False) -> Cifar10:
    """Load CIFAR-10 from the official python-batch layout.

    Args:
        data_dir: the folder holding ``cifar-10-batches-py/``, or that folder itself.
        download: fetch and extract the official archive when the folder is missing.

    Raises:
        FileNotFoundError: the folder or a batch is missing (and not downloaded);
            the message names the folder expected and how to provide it.
        ValueError: a batch is corrupt, truncated or refused; the message names the file.
    """
    folder = resolve_folder(data_dir)
    if not folder.is_dir():
        if not download:
            raise FileNotFoundError(_missing_message(folder))
        download_cifar10(folder.parent)
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {', '.join(missing)}. " + _missing_message(folder))
    train = [_images_labels(folder / n) for n in TRAIN_BATCHES]
    test_images, test_labels = _images_labels(folder / TEST_BATCH)
    classes = CLASSES
    if (folder / META).is_file():
        names = read_batch(folder / META).get("label_names")
        if isinstance(names, list) and len(names) == len(CLASSES):
            classes = tuple(_text(n) for n in names)
    return Cifar10(
        train_images=np.concatenate([im for im, _ in train]),
        train_labels=np.concatenate([lb for _, lb in train]),
        test_images=test_images,
        test_labels=test_labels,
        classes=classes,
    )


def _is_safe_member(member: tarfile.TarInfo, root: Path) -> bool:
    target = (root / member.name).resolve()
    inside = target == root or root in target.parents
    return inside and (member.isfile() or member.isdir()) and not Path(member.name).is_absolute()


def extract_archive(archive: Path, dest_root: Path, *, md5: str = CIFAR10_MD5) -> Path:
    """Check ``archive``'s md5 and extract its ``cifar-10-batches-py/`` into ``dest_root`` atomically.

    Members are checked before anything is written: absolute paths, ``..``
    escapes, links and devices are refused. Extraction goes to a temporary
    folder beside the destination, which is renamed into place only when whole.
    """
    digest = hashlib.md5(Path(archive).read_bytes()).hexdigest()
    if digest != md5:
        raise ValueError(f"{archive}: md5 {digest} does not match the official {md5}; delete it and retry")
    dest_root = Path(dest_root)
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".cifar10-extract-", dir=dest_root))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            root = tmp.resolve()
            bad = [m.name for m in members if not _is_safe_member(m, root)]
            if bad:
                raise ValueError(f"{archive}: refused unsafe archive members {bad[:3]}")
            tar.extractall(tmp, members=members, filter="data")
        if not (tmp / FOLDER / TEST_BATCH).is_file():
            raise ValueError(f"{archive}: archive has no {FOLDER}/{TEST_BATCH}")
        final = dest_root / FOLDER
        try:
            os.rename(tmp / FOLDER, final)
        except OSError:
            if not (final / TEST_BATCH).is_file():  # a concurrent extraction won; anything else is an error
                raise
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_cifar10(
    dest_root: Path, *, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5, timeout_s: float = 30.0
) -> Path:
    """Download the official archive into ``dest_root`` and extract it; returns the batch folder."""
    dest_root = Path(dest_root)
    dest_root.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(prefix=".cifar-10-python-", suffix=".tar.gz.part", dir=dest_root)
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as r, os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(r, f, length=1 << 20)
        except (urllib.error.URLError, OSError) as e:
            raise FileNotFoundError(
                f"could not download {url} ({e}). " + _missing_message(dest_root / FOLDER)
            ) from None
        return extract_archive(Path(part), dest_root, md5=md5)
    finally:
        Path(part).unlink(missing_ok=True)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``round(val_fraction * n_c)`` images of each class ``c``.

    Args:
        labels: ``(N,)`` integer class labels.
        val_fraction: share of each class held out, in [0, 1).
        seed: the permutation within each class follows it.

    Returns:
        ``(train_idx, val_idx)``: sorted int64 index arrays, disjoint, covering 0..N-1.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"stratified_split labels: expected a 1-D array, got shape {labels.shape}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"stratified_split val_fraction: {val_fraction!r} is out of range; allowed [0, 1)")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):  # sorted, so the draw order is fixed by the seed alone
        idx = np.flatnonzero(labels == c)
        val.append(rng.permutation(idx)[: int(round(val_fraction * idx.size))])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64) if val else np.zeros(0, np.int64)
    mask = np.ones(labels.size, bool)
    mask[val_idx] = False
    return np.flatnonzero(mask).astype(np.int64), val_idx


def fingerprint(*arrays: np.ndarray) -> str:
    """16 hex digits of the sha256 of the arrays' dtypes, shapes and bytes (a data tag)."""
    return files.digest(*arrays)[:16]
