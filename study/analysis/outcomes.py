"""Per-image outcomes of one trial: which evaluated images each model got right.

Pure (numpy only, bytes in and out). A trial's evaluation yields, per split
(``val`` or ``test``), one ``(N,)`` bool vector for the clean images and one
``(L,)`` bool vector per evaluated (corruption, severity), ``L <= N``. CIFAR-10-C
files are severity-major and ``eval.corruption_limit`` keeps the first ``L`` rows
of each severity, so row ``i`` of every corrupted vector is the corrupted version
of source image ``i``: index ``i`` names the same source image across all keys of
a split and across trials evaluated on the same images (what the fingerprint of
the split vouches for). That alignment is what lets :mod:`study.analysis.paired`
resample source images rather than rows.

Keys: ``"<split>/clean"`` and ``"<split>/<corruption>/<severity>"`` (severity 1-5).

Storage (:func:`encode`, :data:`OUTCOMES_ARTIFACT`): an ``.npz`` of plain arrays
(no object arrays, so it loads with ``allow_pickle=False``): the vectors bit-packed
into one uint8 array (a full val + test evaluation of 19 x 5 corruptions is about
180 KB), their keys and lengths, and the fingerprints as one JSON string.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from study.limits import CIFAR10_TEST_IMAGES, CIFAR10_TRAIN_IMAGES
from study.metrics import ALL_CORRUPTIONS, SEVERITIES
from study.metrics import summarize as _summarize
from study.npyfiles import Expect, read_npz

OUTCOMES_ARTIFACT = "outcomes.npz"
SPLITS: tuple[str, ...] = ("val", "test")
FORMAT = "freqstudy.outcomes/1"

# What a stored file may hold, from the format itself: per split a clean vector and one per
# corruption and severity, none longer than all of CIFAR-10; keys are short names. Checked
# from the zip directory and the .npy headers before anything is decompressed (study.npyfiles).
MAX_KEYS = len(SPLITS) * (1 + len(ALL_CORRUPTIONS) * len(SEVERITIES))
MAX_IMAGES = CIFAR10_TRAIN_IMAGES + CIFAR10_TEST_IMAGES
_CHARS = 4  # numpy's str dtype: UTF-32
_ENTRIES = {
    "format": Expect("U", 0, 64 * _CHARS),
    "keys": Expect("U", 1, MAX_KEYS * 64 * _CHARS),
    "lengths": Expect("iu", 1, MAX_KEYS * 8),
    "packed": Expect("u", 1, MAX_KEYS * math.ceil(MAX_IMAGES / 8)),
    "fingerprints": Expect("U", 0, 64 * 1024 * _CHARS),
}
_NAME = re.compile(r"[a-z0-9_]+\Z")


def clean_key(split: str) -> str:
    """``"test/clean"``."""
    return f"{split}/clean"


def corrupted_key(split: str, name: str, severity: int) -> str:
    """``"test/fog/3"``: row ``i`` is the corrupted version of source image ``i``."""
    return f"{split}/{name}/{int(severity)}"


def parse_key(key: str) -> tuple[str, str | None, int | None]:
    """``(split, corruption, severity)``, the last two None for the clean key.

    Raises:
        ValueError: naming the key, when it is not ``<split>/clean`` or
            ``<split>/<corruption>/<severity>`` with a known split and severity 1-5.
    """
    parts = key.split("/") if isinstance(key, str) else []
    if len(parts) == 2 and parts[0] in SPLITS and parts[1] == "clean":
        return parts[0], None, None
    if (
        len(parts) == 3
        and parts[0] in SPLITS
        and _NAME.match(parts[1])
        and parts[1] != "clean"
        and parts[2].isdigit()
        and int(parts[2]) in SEVERITIES
        and str(int(parts[2])) == parts[2]
    ):
        return parts[0], parts[1], int(parts[2])
    raise ValueError(
        f"outcomes: bad key {key!r} (expected <val|test>/clean or <val|test>/<corruption>/<1-5>)"
    )


def _key_order(key: str) -> tuple:
    # Canonical order: clean first, then corruptions in the benchmark's order
    # (unknown names after, alphabetically), severities ascending.
    split, name, sev = parse_key(key)
    if name is None:
        return (SPLITS.index(split), 0, 0, "", 0)
    known = ALL_CORRUPTIONS.index(name) if name in ALL_CORRUPTIONS else len(ALL_CORRUPTIONS)
    return (SPLITS.index(split), 1, known, name, sev)


def sort_keys(keys) -> list[str]:
    """Keys in canonical order (split, clean first, benchmark corruption order, severity)."""
    return sorted(keys, key=_key_order)


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Per-image correctness of one trial on each evaluated image set.

    Attributes:
        arrays: ``{key: (n,) bool}``; ``<split>/clean`` has the split's ``N``
            source images and every corrupted key of the split the same length
            ``L <= N`` (the first ``L`` source images). Stored read-only.
        fingerprints: ``{split: {field: str | int}}``, flat: what identifies the
            images of the split (e.g. ``source`` digest, ``n``, ``corruption_limit``,
            ``corruption_seed``, ``corruptions``, ``severities``). Two trials are
            comparable on a split only when these agree. When an ``n`` field is
            given it must equal the clean length.

    Raises:
        ValueError: one line naming the offending key, split or field.
    """

    arrays: Mapping[str, np.ndarray]
    fingerprints: Mapping[str, Mapping[str, str | int]]

    def __post_init__(self):
        if not isinstance(self.arrays, Mapping) or not isinstance(self.fingerprints, Mapping):
            raise ValueError("outcomes: arrays and fingerprints must be mappings")
        arrays: dict[str, np.ndarray] = {}
        for key in sort_keys(self.arrays):
            arr = np.asarray(self.arrays[key])
            if arr.dtype != np.bool_ or arr.ndim != 1:
                raise ValueError(f"outcomes: {key!r} must be a 1-D bool array, got {arr.dtype} {arr.shape}")
            arr = arr.copy()
            arr.flags.writeable = False
            arrays[key] = arr
        fingerprints: dict[str, Mapping[str, str | int]] = {}
        for split, fp in self.fingerprints.items():
            if split not in SPLITS:
                raise ValueError(f"outcomes: fingerprint for unknown split {split!r}")
            if not isinstance(fp, Mapping):
                raise ValueError(f"outcomes: fingerprint of {split!r} must be a mapping")
            for field, value in fp.items():
                # bool is an int subclass but would not survive JSON as an int.
                if not isinstance(field, str) or isinstance(value, bool) or not isinstance(value, (str, int)):
                    raise ValueError(
                        f"outcomes: fingerprint field {split}/{field!r} must map a str to a str or int"
                    )
            fingerprints[split] = MappingProxyType(dict(fp))
        splits = {parse_key(k)[0] for k in arrays}
        for split in sorted(splits | set(fingerprints), key=SPLITS.index):
            if split not in fingerprints:
                raise ValueError(f"outcomes: split {split!r} has arrays but no fingerprint")
            if clean_key(split) not in arrays:
                raise ValueError(f"outcomes: split {split!r} lacks {clean_key(split)!r}")
            n = len(arrays[clean_key(split)])
            if "n" in fingerprints[split] and fingerprints[split]["n"] != n:
                raise ValueError(
                    f"outcomes: fingerprint {split}/n is {fingerprints[split]['n']!r} "
                    f"but {clean_key(split)!r} has {n} images"
                )
            lengths = {
                k: len(a) for k, a in arrays.items() if k.startswith(split + "/") and k != clean_key(split)
            }
            if lengths:
                first, length = next(iter(lengths.items()))
                for k, m in lengths.items():
                    if m != length:
                        raise ValueError(f"outcomes: {k!r} has {m} images but {first!r} has {length}")
                if length > n:
                    raise ValueError(f"outcomes: {first!r} has {length} images, more than the {n} clean ones")
        object.__setattr__(self, "arrays", MappingProxyType(arrays))
        object.__setattr__(self, "fingerprints", MappingProxyType(fingerprints))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Outcomes):
            return NotImplemented
        return (
            list(self.arrays) == list(other.arrays)
            and all(np.array_equal(a, other.arrays[k]) for k, a in self.arrays.items())
            and {s: dict(f) for s, f in self.fingerprints.items()}
            == {s: dict(f) for s, f in other.fingerprints.items()}
        )

    __hash__ = None  # type: ignore[assignment]  # arrays are not hashable

    @property
    def splits(self) -> tuple[str, ...]:
        """Splits present, in ``SPLITS`` order."""
        return tuple(s for s in SPLITS if s in self.fingerprints)

    def keys(self, split: str) -> tuple[str, ...]:
        """The split's keys in canonical order (clean first)."""
        return tuple(k for k in self.arrays if k.startswith(split + "/"))

    def corrupted(self, split: str) -> dict[tuple[str, int], np.ndarray]:
        """``{(corruption, severity): (L,) bool}`` of the split, canonical order."""
        out = {}
        for key in self.keys(split):
            _, name, sev = parse_key(key)
            if name is not None:
                out[(name, sev)] = self.arrays[key]
        return out


def summarize(outcomes: Outcomes, split: str) -> dict[str, float]:
    """The split's accuracies (percent) as :func:`study.metrics.summarize` names them,
    recomputed from the per-image vectors (so they can be checked against the
    logged metrics)."""
    if split not in outcomes.fingerprints:
        raise ValueError(f"outcomes: no split {split!r} (have {', '.join(outcomes.splits) or 'none'})")
    clean = outcomes.arrays[clean_key(split)]
    acc = {k: float(np.mean(a)) * 100.0 for k, a in outcomes.corrupted(split).items() if len(a)}
    return _summarize(split, float(np.mean(clean)) * 100.0 if len(clean) else float("nan"), acc)


def encode(outcomes: Outcomes) -> bytes:
    """The ``.npz`` bytes of :data:`OUTCOMES_ARTIFACT`.

    Entries (all plain dtypes): ``format`` (0-d str), ``keys`` (K,) str,
    ``lengths`` (K,) int64, ``packed`` (sum ceil(len/8),) uint8 (each vector
    ``np.packbits``-ed, big bit order, concatenated in key order), and
    ``fingerprints`` (0-d str, JSON ``{split: {field: str|int}}``).
    """
    keys = list(outcomes.arrays)
    packed = [np.packbits(outcomes.arrays[k]) for k in keys]
    fingerprints = {s: dict(f) for s, f in outcomes.fingerprints.items()}
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        format=np.array(FORMAT),
        keys=np.array(keys, dtype=str) if keys else np.zeros(0, dtype="<U1"),
        lengths=np.array([len(outcomes.arrays[k]) for k in keys], dtype=np.int64),
        packed=np.concatenate(packed) if packed else np.zeros(0, dtype=np.uint8),
        fingerprints=np.array(json.dumps(fingerprints, sort_keys=True)),
    )
    return buf.getvalue()


def decode(data: bytes) -> Outcomes:
    """The :class:`Outcomes` of :func:`encode` bytes, validated.

    Raises:
        ValueError: one line naming the entry or key, for anything malformed: not
            an npz, missing or extra entries, object arrays (never unpickled),
            wrong dtypes, lengths that do not match the packed bits, non-zero
            padding bits, bad keys or fingerprints.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"outcomes: expected bytes, got {type(data).__name__}")
    entries = read_npz(data, what="outcomes", expect=_ENTRIES)
    fmt, keys, lengths, packed, fp_text = (
        entries[k] for k in ("format", "keys", "lengths", "packed", "fingerprints")
    )
    if str(fmt) != FORMAT:
        raise ValueError(f"outcomes: entry 'format' is {str(fmt)!r}, expected {FORMAT!r}")
    if packed.dtype != np.uint8:
        raise ValueError(f"outcomes: entry 'packed' has dtype {packed.dtype}, expected uint8")
    if len(keys) != len(lengths):
        raise ValueError(f"outcomes: entry 'lengths' has {len(lengths)} values for {len(keys)} keys")
    if len(set(keys.tolist())) != len(keys):
        raise ValueError("outcomes: entry 'keys' has duplicates")
    if np.any(lengths < 0) or np.any(lengths > MAX_IMAGES):
        # Checked before any sum: int64 arithmetic on a crafted length would wrap around.
        raise ValueError(f"outcomes: entry 'lengths' has a length outside 0..{MAX_IMAGES}")
    nbytes = (lengths.astype(np.int64) + 7) // 8
    if int(nbytes.sum()) != len(packed):
        raise ValueError(
            f"outcomes: entry 'packed' has {len(packed)} bytes, the lengths need {int(nbytes.sum())}"
        )
    arrays: dict[str, np.ndarray] = {}
    start = 0
    for key, length, nb in zip(keys.tolist(), lengths.tolist(), nbytes.tolist()):
        parse_key(key)
        chunk = packed[start : start + nb]
        start += nb
        bits = np.unpackbits(chunk)
        if bits[length:].any():
            raise ValueError(f"outcomes: {key!r} has non-zero padding bits")
        arrays[key] = bits[:length].astype(bool)
    try:
        fingerprints = json.loads(str(fp_text))
    except json.JSONDecodeError:
        raise ValueError("outcomes: entry 'fingerprints' is not JSON") from None
    except RecursionError:  # '[[[[...' nested past the parser's depth
        raise ValueError(
            "outcomes: entry 'fingerprints' is nested too deep for {split: {field: value}}"
        ) from None
    if not isinstance(fingerprints, dict) or not all(isinstance(f, dict) for f in fingerprints.values()):
        raise ValueError("outcomes: entry 'fingerprints' must be {split: {field: value}}")
    outcomes = Outcomes(arrays=arrays, fingerprints=fingerprints)
    for split, fp in outcomes.fingerprints.items():
        # Two files with no word on their images would "agree" on every field they lack.
        if not isinstance(fp.get("source"), str) or not fp["source"]:
            raise ValueError(
                f"outcomes: fingerprint of {split!r} names no 'source' (the digest of its images); "
                "it cannot be compared with anything"
            )
    return outcomes


def check_comparable(a: Outcomes, b: Outcomes, split: str) -> tuple[str, ...]:
    """The split's keys, when ``a`` and ``b`` were evaluated on the same images.

    Same images means: both have the split, equal fingerprints (every field),
    the same keys and the same length per key.

    Returns:
        The shared keys in canonical order (``<split>/clean`` first).

    Raises:
        ValueError: one line naming the fingerprint fields that differ (value in a
            vs value in b), or the keys present in only one, or the key whose
            lengths differ.
    """
    for name, o in (("a", a), ("b", b)):
        if split not in o.fingerprints:
            have = ", ".join(o.splits) or "none"
            raise ValueError(f"outcomes: split {split!r} missing in {name} (has {have})")
    fa, fb = a.fingerprints[split], b.fingerprints[split]
    diffs = [
        f"{f} {fa.get(f, '<missing>')!r} vs {fb.get(f, '<missing>')!r}"
        for f in sorted(set(fa) | set(fb))
        if (f in fa) != (f in fb) or fa.get(f) != fb.get(f)
    ]
    if diffs:
        raise ValueError(f"outcomes: not the same {split} images: {'; '.join(diffs)}")
    ka, kb = a.keys(split), b.keys(split)
    only_a, only_b = [k for k in ka if k not in kb], [k for k in kb if k not in ka]
    if only_a or only_b:

        def show(keys):
            if not keys:
                return "none"
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")

        raise ValueError(
            f"outcomes: different {split} keys: only in a: {show(only_a)}; only in b: {show(only_b)}"
        )
    for k in ka:
        if len(a.arrays[k]) != len(b.arrays[k]):
            raise ValueError(
                f"outcomes: {k!r} has {len(a.arrays[k])} images in a but {len(b.arrays[k])} in b"
            )
    return ka
