"""study.npyfiles and the outcomes file: sizes are checked from the zip directory and the .npy
headers before anything is decompressed or allocated; every refusal is one line."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from study.analysis.outcomes import MAX_IMAGES, Outcomes, decode, encode
from study.npyfiles import Expect, read_npy, read_npz

BIG = 1_500_000_000  # the 1.5 GB member


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def npy_header(shape: tuple, descr: str = "|u1") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def deflated_zeros_member(header: bytes, zeros: int) -> tuple[bytes, int, int]:
    """``(raw deflate stream, crc32, size)`` of ``header`` followed by ``zeros`` zero bytes,
    made without compressing them: after a full flush deflate restarts, so every further
    1 MiB block of zeros compresses to the same bytes, which are repeated."""
    block = 1 << 20
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(header + bytes(block - len(header))) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH) == again
    size = len(header) + zeros
    full, rest = divmod(size - block, block)
    tail = c.compress(bytes(rest)) + c.flush()
    crc = zlib.crc32(header + bytes(block - len(header)))
    chunk = bytes(1 << 24)
    left = size - block
    while left:
        n = min(left, len(chunk))
        crc = zlib.crc32(chunk[:n] if n < len(chunk) else chunk, crc)
        left -= n
    return first + again * (full - 1) + (again if full else b"") + tail, crc, size


def zip_of(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip archive of ``(name, data, method, crc, uncompressed size)`` members, written by hand
    so that a member's bytes can be a precomputed deflate stream."""
    out, central = bytearray(), bytearray()
    for name, data, method, crc, size in members:
        offset = len(out)
        fields = (20, 0, method, 0, 33, crc, len(data), size, len(name), 0)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + name.encode() + data
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 33, crc, len(data), size, len(name),
            0, 0, 0, 0, 0, offset,
        ) + name.encode()  # fmt: skip
    n = len(members)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), len(out), 0)
    return bytes(out + central + end)


def stored(name: str, arr: np.ndarray) -> tuple[str, bytes, int, int, int]:
    data = npy_bytes(arr)
    return (f"{name}.npy", data, 0, zlib.crc32(data), len(data))


def small_outcomes() -> Outcomes:
    rng = np.random.default_rng(0)
    return Outcomes(
        {"test/clean": rng.random(40) < 0.5, "test/fog/1": rng.random(40) < 0.5},
        {"test": {"source": "ab12", "n": 40}},
    )


def entries_of(o: Outcomes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(encode(o)), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def test_zip_writer_round_trips_through_numpy():
    """The hand-made archive is a real zip: numpy reads the small members back."""
    ent = entries_of(small_outcomes())
    data = zip_of([stored(k, v) for k, v in ent.items()])
    assert decode(data) == small_outcomes()


def test_a_small_file_holding_a_huge_member_is_refused_before_decompressing():
    """The issue's case: a ~1.4 MB outcomes.npz whose 'packed' member is 1.5 GB of zeros. It is
    refused in one line from the zip directory, and the peak of Python-tracked memory stays
    under 20 MB (the old reader decompressed the whole member first: 1.5 GB and ~30 s)."""
    ent = entries_of(small_outcomes())
    stream, crc, size = deflated_zeros_member(npy_header((BIG,)), BIG)
    members = [stored(k, v) for k, v in ent.items() if k != "packed"]
    members.append(("packed.npy", stream, 8, crc, size))
    data = zip_of(members)
    assert len(data) < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("outcomes: entry 'packed' is 1,500,000,") and "uncompressed" in message
    assert peak - len(data) < 20_000_000, peak


def test_a_header_that_declares_more_than_allowed_is_refused_before_allocating():
    """A member whose zip size is small but whose .npy header declares 10**12 bytes: refused from
    the header, nothing allocated (np.load would try to allocate a terabyte)."""
    ent = entries_of(small_outcomes())
    header = npy_header((10**12,))
    members = [stored(k, v) for k, v in ent.items() if k != "packed"]
    members.append(("packed.npy", header, 0, zlib.crc32(header), len(header)))
    with pytest.raises(ValueError, match=r"entry 'packed'.*declares 1,000,000,000,000 bytes"):
        decode(zip_of(members))


def test_a_member_shorter_than_its_header_and_an_object_header_are_one_line():
    ent = entries_of(small_outcomes())
    short = npy_header((1000,)) + bytes(10)
    members = [stored(k, v) for k, v in ent.items() if k != "packed"]
    with pytest.raises(ValueError, match=r"entry 'packed': holds 10 data bytes, its header declares 1,000"):
        decode(zip_of(members + [("packed.npy", short, 0, zlib.crc32(short), len(short))]))
    pickled = npy_header((3,), descr="|O")
    with pytest.raises(ValueError, match="Python objects"):
        decode(zip_of(members + [("packed.npy", pickled, 0, zlib.crc32(pickled), len(pickled))]))


def test_crafted_lengths_cannot_wrap_around():
    """A uint64 length of 2**64 - 1 wraps to -1 in int64 arithmetic, needs "0 bytes" and decoded
    (before) as an empty vector that claimed 18 quintillion images; now it is refused."""
    o = small_outcomes()
    ent = entries_of(o)
    ent["lengths"] = np.array([40, 2**64 - 1], dtype=np.uint64)
    ent["packed"] = ent["packed"][:5]  # the 40 clean bits; the wrapped length "needs" none
    buf = io.BytesIO()
    np.savez(buf, **ent)
    with pytest.raises(ValueError, match=f"length outside 0..{MAX_IMAGES}"):
        decode(buf.getvalue())


def test_a_fingerprint_without_source_is_not_comparable():
    """Two files whose fingerprints name no images 'agree' on every field they lack: refused."""
    o = Outcomes({"test/clean": np.ones(8, bool)}, {"test": {"n": 8}})
    with pytest.raises(ValueError, match="names no 'source'"):
        decode(encode(o))


def test_read_npy_checks_header_and_size(tmp_path):
    ok = tmp_path / "ok.npy"
    np.save(ok, np.arange(12, dtype=np.float32).reshape(3, 4))
    arr = read_npy(ok, what="map", expect=Expect("f", 2, 1000))
    assert np.array_equal(arr, np.arange(12, dtype=np.float32).reshape(3, 4))
    fortran = tmp_path / "f.npy"
    np.save(fortran, np.asfortranarray(np.arange(6.0).reshape(2, 3)))
    assert np.array_equal(
        read_npy(fortran, what="map", expect=Expect("f", 2, 1000)), np.arange(6.0).reshape(2, 3)
    )
    huge = tmp_path / "huge.npy"
    huge.write_bytes(npy_header((100_000, 100_000), "<f8"))
    with pytest.raises(ValueError, match=r"map: declares 80,000,000,000 bytes"):
        read_npy(huge, what="map", expect=Expect("f", 2, 10**6))
    with pytest.raises(ValueError, match="expected kind 'f' with 1"):
        read_npy(ok, what="map", expect=Expect("f", 1, 1000))
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY junk")
    with pytest.raises(ValueError, match="map: not a readable .npy header"):
        read_npy(tmp_path / "junk.npy", what="map", expect=Expect("f", 2, 1000))


def test_read_npz_names_missing_and_unexpected_entries():
    data = zip_of([stored("a", np.zeros(2)), stored("b", np.zeros(2))])
    with pytest.raises(ValueError, match=r"x: entries missing \['c'\] or unexpected \['b'\]"):
        read_npz(data, what="x", expect={"a": Expect("f", 1, 100), "c": Expect("f", 1, 100)})


def test_a_fingerprint_nested_past_the_json_parser_is_one_line():
    """'[[[[...' in the fingerprints entry raised a RecursionError traceback from json."""
    ent = entries_of(small_outcomes())
    ent["fingerprints"] = np.array("[" * 50_000)
    buf = io.BytesIO()
    np.savez(buf, **ent)
    with pytest.raises(ValueError, match="'fingerprints' is nested too deep"):
        decode(buf.getvalue())


@pytest.mark.parametrize(
    "manifest, match",
    [
        ("[" * 50_000, "unreadable manifest"),  # was a RecursionError traceback
        ("[]", "not a manifest"),  # was a TypeError traceback
        ('{"severities": [9], "n": 4}', "'severities' .* and 'n' .* unreadable"),  # severity 9 flowed on
        ('{"severities": [1], "n": "two"}', "'severities' .* and 'n' .* unreadable"),
    ],
)
def test_a_crafted_cifar10c_manifest_is_one_line(tmp_path, manifest, match):
    from study.cifar10c.layout import LABELS, MANIFEST, load_corrupted

    np.save(tmp_path / "fog.npy", np.zeros((4, 32, 32, 3), np.uint8))
    np.save(tmp_path / LABELS, np.zeros(4, np.int64))
    (tmp_path / MANIFEST).write_text(manifest)
    with pytest.raises(ValueError, match=match) as info:
        load_corrupted(tmp_path, "fog")
    assert "\n" not in str(info.value)
