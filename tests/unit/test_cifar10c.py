"""study.cifar10c: generation into the official layout (determinism, resume,
refusal to mix copies), loading official and generated folders, and the
cache, on a few synthetic images and the fast corruptions."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from study.cifar10c import ensure_corrupted_copy, generate, load_corrupted
from study.corruptions import GENERATOR_VERSION, corrupt
from study.metrics import ALL_CORRUPTIONS

N = 12
FAST = ("gaussian_noise", "brightness")  # one random, one deterministic


@pytest.fixture(scope="module")
def source():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (N, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, N)


def read(folder, name):
    return np.load(folder / f"{name}.npy")


def test_official_layout_severity_major_with_manifest(tmp_path, source):
    images, labels = source
    out = generate(images, labels, tmp_path / "c", corruptions=FAST, severities=(2, 4), seed=5, workers=1, progress=False)
    for name in FAST:
        arr = read(out, name)
        assert arr.dtype == np.uint8 and arr.shape == (2 * N, 32, 32, 3)
        for block, s in enumerate((2, 4)):
            rng = np.random.default_rng([5, ALL_CORRUPTIONS.index(name), s])  # the documented unit generator
            assert np.array_equal(arr[block * N:(block + 1) * N], corrupt(name, images, s, rng))
    assert np.array_equal(np.load(out / "labels.npy"), np.tile(labels, 2))
    m = json.loads((out / "manifest.json").read_text())
    assert m["seed"] == 5 and m["n"] == N and m["severities"] == [2, 4] and m["source_name"] == "test"
    assert m["generator_version"] == GENERATOR_VERSION and m["corruptions"] == list(FAST)
    assert len(m["source_sha256"]) == 64 and m["source_sha256"] != m["labels_sha256"]
    assert sorted(p.name for p in out.iterdir()) == ["brightness.npy", "gaussian_noise.npy", "labels.npy", "manifest.json"]


def test_same_seed_byte_identical_whatever_the_workers_different_seed_differs(tmp_path, source):
    images, labels = source
    kw = dict(corruptions=FAST, severities=(1, 5), progress=False)
    a = generate(images, labels, tmp_path / "a", seed=1, workers=1, **kw)
    b = generate(images, labels, tmp_path / "b", seed=1, workers=2, **kw)  # spawned processes, memmapped source
    c = generate(images, labels, tmp_path / "c", seed=2, workers=1, **kw)
    for name in FAST:
        assert (a / f"{name}.npy").read_bytes() == (b / f"{name}.npy").read_bytes()
    assert not np.array_equal(read(a, "gaussian_noise"), read(c, "gaussian_noise"))
    assert np.array_equal(read(a, "brightness"), read(c, "brightness"))  # deterministic: the seed is irrelevant
    assert not list(b.glob(".source-*"))  # the workers' memmapped source is removed


def test_resume_skips_finished_units_and_ignores_partial_temporaries(tmp_path, source):
    images, labels = source
    kw = dict(corruptions=FAST, severities=(1, 2), seed=0, workers=1, progress=False)
    ref = generate(images, labels, tmp_path / "ref", **kw)

    # An interrupted run: brightness finished, gaussian_noise severity 1 finished as a unit,
    # severity 2 died half-way through writing its temporary.
    out = tmp_path / "c"
    generate(images, labels, out, **{**kw, "corruptions": ("brightness",)})
    done_mtime = os.stat(out / "brightness.npy").st_mtime_ns
    units = out / ".units"
    units.mkdir()
    sentinel = np.full((N, 32, 32, 3), 7, np.uint8)  # not what the generator would write: proves a skip
    np.save(units / "gaussian_noise_s1.npy", sentinel)
    (units / "gaussian_noise_s2.npy.999.deadbeef.tmp").write_bytes(b"\x93NUMPY half a file")

    generate(images, labels, out, **kw)
    g = read(out, "gaussian_noise")
    assert np.array_equal(g[:N], sentinel)  # the finished unit was reused, not regenerated
    assert np.array_equal(g[N:], read(ref, "gaussian_noise")[N:])  # the unfinished one was generated whole
    assert os.stat(out / "brightness.npy").st_mtime_ns == done_mtime
    assert not (units / "gaussian_noise_s1.npy").exists()  # units are dropped once assembled
    m = json.loads((out / "manifest.json").read_text())
    assert m["corruptions"] == list(FAST)


def test_refuses_to_mix_copies(tmp_path, source):
    images, labels = source
    out = generate(images, labels, tmp_path / "c", corruptions=("brightness",), severities=(1,), seed=0,
                   workers=1, progress=False)
    with pytest.raises(ValueError, match=r"different source, seed or generator version \(seed: folder 0, asked 1\)"):
        generate(images, labels, out, corruptions=("gaussian_noise",), severities=(1,), seed=1, workers=1, progress=False)
    other = images.copy()
    other[0, 0, 0, 0] ^= 1
    with pytest.raises(ValueError, match="source_sha256"):
        generate(other, labels, out, corruptions=("brightness",), severities=(1,), workers=1, progress=False)
    with pytest.raises(ValueError, match="severities"):
        generate(images, labels, out, corruptions=("brightness",), severities=(1, 2), workers=1, progress=False)
    official = tmp_path / "official"
    official.mkdir()
    np.save(official / "fog.npy", np.zeros((5, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="no manifest.json"):
        generate(images, labels, official, corruptions=("brightness",), workers=1, progress=False)


def test_bad_arguments_are_named(tmp_path, source):
    images, labels = source
    with pytest.raises(ValueError, match="unknown blurry.*allowed gaussian_noise"):
        generate(images, labels, tmp_path / "c", corruptions=("blurry",), progress=False)
    with pytest.raises(ValueError, match=r"severities: \[0, 6\]"):
        generate(images, labels, tmp_path / "c", corruptions=FAST, severities=(0, 6), progress=False)
    with pytest.raises(ValueError, match="images: expected uint8"):
        generate(images.astype(np.float32), labels, tmp_path / "c", corruptions=FAST, progress=False)


def write_official(folder, n, names=("fog",)):
    """An official-layout folder: 5 severity blocks of n images whose values encode (severity, index)."""
    folder.mkdir()
    s_idx = np.repeat(np.arange(1, 6), n)
    i_idx = np.tile(np.arange(n), 5)
    for name in names:
        arr = np.zeros((5 * n, 32, 32, 3), np.uint8)
        arr[:, 0, 0, 0], arr[:, 0, 0, 1] = s_idx, i_idx
        np.save(folder / f"{name}.npy", arr)
    np.save(folder / "labels.npy", np.tile(np.arange(n) % 10, 5).astype(np.int64))
    return folder


def test_load_official_layout_by_severity_and_limit(tmp_path):
    folder = write_official(tmp_path / "CIFAR-10-C", n=8)
    x, y, sevs = load_corrupted(folder, "fog")
    assert sevs == (1, 2, 3, 4, 5) and x.shape == (40, 32, 32, 3) and y.dtype == np.int64
    x, y, sevs = load_corrupted(folder, "fog", severities=[4, 2], limit=3)
    assert sevs == (2, 4)
    assert list(x[:, 0, 0, 0]) == [2, 2, 2, 4, 4, 4] and list(x[:, 0, 0, 1]) == [0, 1, 2] * 2
    assert list(y) == [0, 1, 2] * 2


def test_load_generated_matches_what_was_written(tmp_path, source):
    images, labels = source
    out = generate(images, labels, tmp_path / "c", corruptions=("brightness",), severities=(3, 5), workers=1, progress=False)
    x, y, sevs = load_corrupted(out, "brightness", limit=4)
    assert sevs == (3, 5)
    full = read(out, "brightness")
    assert np.array_equal(x, np.concatenate([full[:4], full[N:N + 4]]))
    assert np.array_equal(y, np.concatenate([labels[:4], labels[:4]]))
    with pytest.raises(ValueError, match=r"severities \[1\] not in the file"):
        load_corrupted(out, "brightness", severities=[1])


def test_load_refuses_bad_files_naming_them(tmp_path):
    folder = write_official(tmp_path / "c", n=4, names=("fog", "frost"))
    with pytest.raises(FileNotFoundError, match=r"snow\.npy: not found \(folder has: fog, frost\)"):
        load_corrupted(folder, "snow")
    np.save(folder / "fog.npy", np.zeros((20, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"fog\.npy: expected uint8"):
        load_corrupted(folder, "fog")
    np.save(folder / "fog.npy", np.zeros((21, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"fog\.npy: 21 rows is not 5 severity blocks"):
        load_corrupted(folder, "fog")
    raw = (folder / "frost.npy").read_bytes()
    (folder / "frost.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"frost\.npy.*truncated"):
        load_corrupted(folder, "frost")
    with pytest.raises(ValueError, match="unknown fogg"):
        load_corrupted(folder, "fogg")


def test_cache_reuses_complete_copies_and_keys_on_limit_and_seed(tmp_path, source):
    images, labels = source
    kw = dict(split_name="val", severities=(1, 2), workers=1)
    a = ensure_corrupted_copy(images, labels, tmp_path, corruptions=("brightness",), seed=0, **kw)
    stamp = os.stat(a / "brightness.npy").st_mtime_ns
    assert ensure_corrupted_copy(images, labels, tmp_path, corruptions=("brightness",), seed=0, **kw) == a
    assert os.stat(a / "brightness.npy").st_mtime_ns == stamp  # reused, not rewritten
    assert a.name.startswith("val-") and f"-v{GENERATOR_VERSION}-seed0-n{N}-s12" in a.name
    grown = ensure_corrupted_copy(images, labels, tmp_path, corruptions=FAST, seed=0, **kw)
    assert grown == a and (a / "gaussian_noise.npy").exists() and os.stat(a / "brightness.npy").st_mtime_ns == stamp
    limited = ensure_corrupted_copy(images, labels, tmp_path, corruptions=("brightness",), seed=0, limit=5, **kw)
    assert limited != a and load_corrupted(limited, "brightness")[0].shape == (10, 32, 32, 3)
    assert np.array_equal(load_corrupted(limited, "brightness")[0], load_corrupted(a, "brightness", limit=5)[0])
    reseeded = ensure_corrupted_copy(images, labels, tmp_path, corruptions=("brightness",), seed=1, **kw)
    assert reseeded not in (a, limited)
