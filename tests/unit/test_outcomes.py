"""study.analysis.outcomes: round trip, refusal of malformed or pickled content, size, comparability."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from study.analysis.outcomes import (
    OUTCOMES_ARTIFACT,
    Outcomes,
    check_comparable,
    clean_key,
    corrupted_key,
    decode,
    encode,
    summarize,
)
from study.metrics import ALL_CORRUPTIONS, SEVERITIES
from tests.support import Payload, pickled_payload


def fingerprint(n: int, limit: int = 0, source: str = "ab12", **extra) -> dict:
    return {
        "source": source,
        "n": n,
        "corruption_limit": limit,
        "corruption_seed": 0,
        "corruptions": ",".join(ALL_CORRUPTIONS),
        "severities": "1,2,3,4,5",
        **extra,
    }


def full_outcomes(rng: np.random.Generator, sizes=(("val", 5000, 5000), ("test", 10000, 10000))) -> Outcomes:
    """Random booleans for every key of a full evaluation: per split (name, N clean, L corrupted)."""
    arrays, fps = {}, {}
    for split, n, length in sizes:
        arrays[clean_key(split)] = rng.random(n) < 0.9
        for name in ALL_CORRUPTIONS:
            for sev in SEVERITIES:
                arrays[corrupted_key(split, name, sev)] = rng.random(length) < 0.7
        fps[split] = fingerprint(n, limit=0 if length == n else length)
    return Outcomes(arrays, fps)


def small(rng=None, n=37, length=21, split="test", **fp) -> Outcomes:
    rng = rng or np.random.default_rng(0)
    arrays = {clean_key(split): rng.random(n) < 0.5}
    for name in ("fog", "gaussian_noise", "speckle_noise"):
        for sev in (1, 3):
            arrays[corrupted_key(split, name, sev)] = rng.random(length) < 0.5
    return Outcomes(arrays, {split: fingerprint(n, length, **fp)})


def npz_bytes(**entries) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **entries)
    return buf.getvalue()


def entries_of(outcomes: Outcomes) -> dict:
    with np.load(io.BytesIO(encode(outcomes)), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def test_artifact_name():
    assert OUTCOMES_ARTIFACT == "outcomes.npz"


def test_round_trip_small_and_odd_lengths():
    o = small()
    back = decode(encode(o))
    assert back == o
    assert list(back.arrays) == list(o.arrays)
    assert all(a.dtype == np.bool_ and not a.flags.writeable for a in back.arrays.values())
    assert dict(back.fingerprints["test"]) == dict(o.fingerprints["test"])
    # Lengths that are not multiples of 8, and zero.
    for n in (0, 1, 7, 8, 9, 1001):
        o = Outcomes({"val/clean": np.arange(n) % 3 == 0}, {"val": {"source": "x", "n": n}})
        assert decode(encode(o)) == o


def test_round_trip_full_and_size():
    o = full_outcomes(np.random.default_rng(1))
    data = encode(o)
    assert len(data) <= 300_000, len(data)
    back = decode(data)
    assert back == o
    assert back.splits == ("val", "test")
    assert len(back.keys("test")) == 1 + 19 * 5


def test_no_object_arrays_in_the_file():
    ent = entries_of(small())
    assert set(ent) == {"format", "keys", "lengths", "packed", "fingerprints"}
    assert all(a.dtype != object for a in ent.values())
    assert ent["packed"].dtype == np.uint8
    assert json.loads(str(ent["fingerprints"]))["test"]["n"] == 37


def test_refuses_object_arrays(tmp_path):
    """Content that needs pickle is refused unread: an entry, or the whole file, whose
    unpickling would create a marker file (numpy with ``allow_pickle=True`` creates it)."""
    marker = tmp_path / "marker"
    ent = entries_of(small())
    ent["keys"] = np.array([Payload(marker), *ent["keys"][1:]], dtype=object)
    entry = npz_bytes(**ent)
    with pytest.raises(ValueError, match="'keys'"):
        decode(entry)
    with pytest.raises(ValueError, match="not an npz"):
        decode(pickled_payload(marker))
    assert not marker.exists()
    # The payloads are real.
    with np.load(io.BytesIO(entry), allow_pickle=True) as npz:
        npz["keys"]
    assert marker.exists()
    marker.unlink()
    np.load(io.BytesIO(pickled_payload(marker)), allow_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda e: e.pop("packed"), "missing"),
        (lambda e: e.update(extra=np.zeros(1)), "unexpected"),
        (lambda e: e.update(format=np.array("something/9")), "'format'"),
        (lambda e: e.update(packed=e["packed"][:-1]), "'packed'"),
        (lambda e: e.update(packed=e["packed"].astype(np.int16)), "'packed'"),
        (lambda e: e.update(lengths=e["lengths"][:-1]), "'lengths'"),
        (lambda e: e.update(lengths=e["lengths"].astype(float)), "'lengths'"),
        (lambda e: e.update(fingerprints=np.array("{not json")), "'fingerprints'"),
        (lambda e: e.update(fingerprints=np.array('{"test": {"n": [1]}}')), "fingerprint field"),
        (lambda e: e.update(keys=np.array(["test/clean", "test/fog/9", *e["keys"][2:]])), "test/fog/9"),
        (lambda e: e.update(keys=np.array(["test/clean"] * len(e["keys"]))), "duplicates"),
    ],
)
def test_refuses_malformed(change, match):
    ent = entries_of(small())
    change(ent)
    with pytest.raises(ValueError, match=match) as info:
        decode(npz_bytes(**ent))
    assert "\n" not in str(info.value)


def test_refuses_non_zero_padding_and_garbage():
    ent = entries_of(Outcomes({"val/clean": np.ones(3, bool)}, {"val": {"n": 3}}))
    ent["packed"] = np.array([0xFF], np.uint8)  # 3 valid bits, 5 padding bits set
    with pytest.raises(ValueError, match="padding"):
        decode(npz_bytes(**ent))
    for junk in (b"", b"not a zip at all", encode(small())[:100]):
        with pytest.raises(ValueError, match="outcomes"):
            decode(junk)
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    with pytest.raises(ValueError, match="npz"):
        decode(buf.getvalue())


@pytest.mark.parametrize(
    "arrays, fps, match",
    [
        ({"test/clean": np.zeros(3)}, {"test": {}}, "bool"),
        ({"test/clean": np.zeros((2, 2), bool)}, {"test": {}}, "1-D"),
        ({"train/clean": np.zeros(3, bool)}, {"test": {}}, "train/clean"),
        ({"test/fog/0": np.zeros(3, bool), "test/clean": np.zeros(3, bool)}, {"test": {}}, "test/fog/0"),
        ({"test/clean": np.zeros(3, bool)}, {}, "no fingerprint"),
        ({"test/fog/1": np.zeros(3, bool)}, {"test": {}}, "lacks 'test/clean'"),
        ({"test/clean": np.zeros(3, bool), "test/fog/1": np.zeros(4, bool)}, {"test": {}}, "more than"),
        (
            {
                "test/clean": np.zeros(5, bool),
                "test/fog/1": np.zeros(4, bool),
                "test/snow/2": np.zeros(3, bool),
            },
            {"test": {}},
            "test/snow/2",
        ),
        ({"test/clean": np.zeros(3, bool)}, {"test": {"n": 4}}, "test/n"),
        ({"test/clean": np.zeros(3, bool)}, {"test": {"flag": True}}, "flag"),
        ({"test/clean": np.zeros(3, bool)}, {"test": {"nested": {"a": 1}}}, "nested"),
    ],
)
def test_outcomes_validation(arrays, fps, match):
    with pytest.raises(ValueError, match=match):
        Outcomes(arrays, fps)


def test_outcomes_are_copies_and_read_only():
    x = np.array([True, False, True])
    o = Outcomes({"test/clean": x}, {"test": {"n": 3}})
    x[0] = False
    assert o.arrays["test/clean"][0]
    with pytest.raises(ValueError):
        o.arrays["test/clean"][0] = False
    with pytest.raises(TypeError):
        o.arrays["test/clean"] = x  # type: ignore[index]


def test_summarize_matches_the_means():
    o = small()
    acc = summarize(o, "test")
    assert acc["test/clean_acc"] == pytest.approx(100 * o.arrays["test/clean"].mean())
    fog = [o.arrays["test/fog/1"].mean(), o.arrays["test/fog/3"].mean()]
    assert acc["test/corruption/fog"] == pytest.approx(100 * np.mean(fog))
    bench = [o.arrays[k].mean() for k in o.keys("test") if "fog" in k or "gaussian" in k]
    assert acc["test/corruption_acc"] == pytest.approx(100 * np.mean(bench))
    assert acc["test/extra_acc"] == pytest.approx(
        100 * np.mean([o.arrays["test/speckle_noise/1"].mean(), o.arrays["test/speckle_noise/3"].mean()])
    )


def test_comparable_returns_keys_in_order():
    a, b = small(np.random.default_rng(1)), small(np.random.default_rng(2))
    keys = check_comparable(a, b, "test")
    assert keys[0] == "test/clean"
    assert keys[1:] == (
        "test/gaussian_noise/1",
        "test/gaussian_noise/3",
        "test/fog/1",
        "test/fog/3",
        "test/speckle_noise/1",
        "test/speckle_noise/3",
    )


def test_comparable_names_the_differing_field():
    a, b = small(source="aaaa"), small(source="bbbb")
    with pytest.raises(ValueError, match=r"source 'aaaa' vs 'bbbb'") as info:
        check_comparable(a, b, "test")
    assert str(info.value) == "outcomes: not the same test images: source 'aaaa' vs 'bbbb'"
    c = small(corruption_seed_extra=1)
    with pytest.raises(ValueError, match=r"corruption_seed_extra '<missing>' vs 1"):
        check_comparable(a, c, "test")


def test_comparable_names_missing_keys_and_splits():
    a = small()
    arrays = dict(a.arrays)
    del arrays["test/fog/3"]
    b = Outcomes(arrays, a.fingerprints)
    with pytest.raises(ValueError, match=r"only in a: test/fog/3; only in b: none"):
        check_comparable(a, b, "test")
    with pytest.raises(ValueError, match="split 'val' missing in a"):
        check_comparable(a, b, "val")
