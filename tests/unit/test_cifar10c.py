"""study.cifar10c: generation into the official layout (determinism, resume
from a killed run's partial files, concurrent runs, refusal to mix copies, one
math thread per worker), loading official and generated folders, and the
cache, on a few synthetic images and the fast corruptions."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from study.cifar10c import ensure_corrupted_copy, generate, load_corrupted
from study.cifar10c.generate import completed
from study.cifar10c.pool import worker_pool
from study.corruptions import GENERATOR_VERSION, corrupt
from study.files import write_atomic
from study.metrics import ALL_CORRUPTIONS
from tests.support import pickled_payload

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
    out = generate(
        images, labels, tmp_path / "c", corruptions=FAST, severities=(2, 4), seed=5, workers=1, progress=False
    )
    for name in FAST:
        arr = read(out, name)
        assert arr.dtype == np.uint8 and arr.shape == (2 * N, 32, 32, 3)
        for block, s in enumerate((2, 4)):
            rng = np.random.default_rng([5, ALL_CORRUPTIONS.index(name), s])  # the documented unit generator
            assert np.array_equal(arr[block * N : (block + 1) * N], corrupt(name, images, s, rng))
    assert np.array_equal(np.load(out / "labels.npy"), np.tile(labels, 2))
    m = json.loads((out / "manifest.json").read_text())
    assert m["seed"] == 5 and m["n"] == N and m["severities"] == [2, 4] and m["source_name"] == "test"
    assert m["generator_version"] == GENERATOR_VERSION and m["corruptions"] == list(FAST)
    assert len(m["source_sha256"]) == 64 and m["source_sha256"] != m["labels_sha256"]
    assert sorted(p.name for p in out.iterdir()) == [
        "brightness.npy",
        "gaussian_noise.npy",
        "labels.npy",
        "manifest.json",
    ]


def test_same_seed_byte_identical_whatever_the_workers_different_seed_differs(tmp_path, source):
    images, labels = source
    kw = dict(corruptions=FAST, severities=(1, 5), progress=False)
    a = generate(images, labels, tmp_path / "a", seed=1, workers=1, **kw)
    b = generate(
        images, labels, tmp_path / "b", seed=1, workers=2, **kw
    )  # spawned processes, memmapped source
    c = generate(images, labels, tmp_path / "c", seed=2, workers=1, **kw)
    for name in FAST:
        assert (a / f"{name}.npy").read_bytes() == (b / f"{name}.npy").read_bytes()
    assert not np.array_equal(read(a, "gaussian_noise"), read(c, "gaussian_noise"))
    assert np.array_equal(
        read(a, "brightness"), read(c, "brightness")
    )  # deterministic: the seed is irrelevant
    assert not (b / ".partial").exists()  # the workers' memmapped source and the partials are gone


def dead_run_partial(out, name, stem, blocks, marked):
    """What a killed run leaves in ``.partial/``: the preallocated file of ``name`` with ``blocks`` written
    and markers for the severities in ``marked``."""
    folder = out / ".partial"
    folder.mkdir(exist_ok=True)
    data = folder / f"{name}.{stem}.npy.tmp"
    mm = np.lib.format.open_memmap(data, mode="w+", dtype=np.uint8, shape=(len(blocks) * N, 32, 32, 3))
    for i, block in enumerate(blocks):
        mm[i * N : (i + 1) * N] = block
    del mm
    for s in marked:
        (folder / f"{name}.{stem}.s{s}.done").touch()
    return data


def test_resume_skips_finished_units_and_ignores_partial_temporaries(tmp_path, source):
    images, labels = source
    kw = dict(corruptions=FAST, severities=(1, 2), seed=0, workers=1, progress=False)
    ref = generate(images, labels, tmp_path / "ref", **kw)

    # An interrupted run: brightness published; gaussian_noise severity 1 written and marked,
    # severity 2 half-written (no marker); a second partial of it died while writing its header.
    out = tmp_path / "c"
    generate(images, labels, out, **{**kw, "corruptions": ("brightness",)})
    done_mtime = os.stat(out / "brightness.npy").st_mtime_ns
    sentinel = np.full((N, 32, 32, 3), 7, np.uint8)  # not what the generator would write: proves a skip
    half = np.full((N, 32, 32, 3), 9, np.uint8)
    dead_run_partial(out, "gaussian_noise", "999-deadbeef", [sentinel, half], marked=[1])
    torn = out / ".partial" / "gaussian_noise.998-cafef00d.npy.tmp"
    torn.write_bytes(b"\x93NUMPY half a file")
    (out / ".partial" / "snow.997-0badf00d.s1.done").touch()  # a marker whose partial is gone
    (out / ".partial" / "source.996-abad1dea.npy").write_bytes(b"\x93NUMPY")  # a dead run's worker source
    old_tmp, new_tmp = out / "labels.npy.995.deadbeef.tmp", out / "manifest.json.994.feedface.tmp"
    old_tmp.write_bytes(b"killed while saving"), new_tmp.write_bytes(b"maybe a live writer's")
    os.utime(old_tmp, (time.time() - 3600,) * 2)

    generate(images, labels, out, **kw)
    g = read(out, "gaussian_noise")
    assert np.array_equal(g[:N], sentinel)  # the marked block was reused, not regenerated
    assert np.array_equal(g[N:], read(ref, "gaussian_noise")[N:])  # the unmarked one was generated whole
    assert os.stat(out / "brightness.npy").st_mtime_ns == done_mtime
    assert not (out / ".partial").exists()  # published, and the dead run's leftovers deleted
    assert not old_tmp.exists() and new_tmp.exists()  # only a temporary older than the run is known dead
    m = json.loads((out / "manifest.json").read_text())
    assert m["corruptions"] == list(FAST)


def test_a_live_runs_partial_is_left_alone_and_a_dead_runs_finished_one_is_published(tmp_path, source):
    images, labels = source
    kw = dict(corruptions=("brightness",), severities=(1,), seed=0, workers=1, progress=False)
    ref = generate(images, labels, tmp_path / "ref", **kw)
    out = tmp_path / "c"
    out.mkdir()
    zeros = np.zeros((N, 32, 32, 3), np.uint8)
    other = dead_run_partial(out, "brightness", "4242-0000beef", [zeros], marked=[1])
    with open(other) as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # a live run filling it
        generate(images, labels, out, **kw)
        assert (out / "brightness.npy").read_bytes() == (
            ref / "brightness.npy"
        ).read_bytes()  # our own partial
        assert other.exists() and (out / ".partial" / "brightness.4242-0000beef.s1.done").exists()
    # That run died with every block marked but before its os.replace: published as it is.
    (out / "brightness.npy").unlink()
    generate(images, labels, out, **kw)
    assert np.array_equal(read(out, "brightness"), zeros)
    assert not (out / ".partial").exists()


def test_concurrent_runs_into_one_folder(tmp_path, source):
    images, labels = source
    kw = dict(corruptions=FAST, severities=(1, 2), seed=3, workers=1, progress=False)
    ref = generate(images, labels, tmp_path / "ref", **kw)
    out = tmp_path / "c"
    with ThreadPoolExecutor(3) as ex:  # flock is per open file, so threads contend as processes do
        assert list(ex.map(lambda _: generate(images, labels, out, **kw), range(3))) == [out] * 3
    for name in FAST:
        assert (out / f"{name}.npy").read_bytes() == (ref / f"{name}.npy").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == [
        "brightness.npy",
        "gaussian_noise.npy",
        "labels.npy",
        "manifest.json",
    ]


def test_workers_run_math_libraries_on_one_thread_and_the_env_is_restored(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with worker_pool(1) as pool:
        seen = [
            pool.submit(os.getenv, k).result()
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        ]
    assert seen == ["1", "1", "1"]
    assert os.environ["OMP_NUM_THREADS"] == "7" and "MKL_NUM_THREADS" not in os.environ


def test_refuses_to_mix_copies(tmp_path, source):
    images, labels = source
    out = generate(
        images,
        labels,
        tmp_path / "c",
        corruptions=("brightness",),
        severities=(1,),
        seed=0,
        workers=1,
        progress=False,
    )
    with pytest.raises(
        ValueError, match=r"different source, seed or generator version \(seed: folder 0, asked 1\)"
    ):
        generate(
            images,
            labels,
            out,
            corruptions=("gaussian_noise",),
            severities=(1,),
            seed=1,
            workers=1,
            progress=False,
        )
    other = images.copy()
    other[0, 0, 0, 0] ^= 1
    with pytest.raises(ValueError, match="source_sha256"):
        generate(other, labels, out, corruptions=("brightness",), severities=(1,), workers=1, progress=False)
    with pytest.raises(ValueError, match="severities"):
        generate(
            images, labels, out, corruptions=("brightness",), severities=(1, 2), workers=1, progress=False
        )
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
    with pytest.raises(ValueError, match=r"labels: float64, not integers; allowed integers 0\.\.9"):
        generate(images, labels + 0.5, tmp_path / "c", corruptions=FAST, progress=False)
    with pytest.raises(ValueError, match=r"labels: 100\.\.109; allowed integers 0\.\.9"):
        generate(images, np.arange(100, 100 + N) % 10 + 100, tmp_path / "c", corruptions=FAST, progress=False)
    assert not (tmp_path / "c").exists()  # refused before anything is written


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
    out = generate(
        images,
        labels,
        tmp_path / "c",
        corruptions=("brightness",),
        severities=(3, 5),
        workers=1,
        progress=False,
    )
    x, y, sevs = load_corrupted(out, "brightness", limit=4)
    assert sevs == (3, 5)
    full = read(out, "brightness")
    assert np.array_equal(x, np.concatenate([full[:4], full[N : N + 4]]))
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


def test_files_that_need_pickle_are_refused_unread(tmp_path, source):
    """A corruption or labels file that is a pickle whose loading would create a marker file:
    the loader refuses it naming the file, the cache check counts the copy as not whole, and
    the marker never appears (numpy with ``allow_pickle=True`` creates it)."""
    marker = tmp_path / "marker"
    for i, name in enumerate(("fog.npy", "labels.npy")):
        folder = write_official(tmp_path / f"official-{i}", n=4, names=("fog",))
        (folder / name).write_bytes(pickled_payload(marker))
        with pytest.raises(ValueError, match=rf"{name}.*unreadable"):
            load_corrupted(folder, "fog")
    images, labels = source
    for name in ("brightness.npy", "labels.npy"):
        out = generate(
            images,
            labels,
            tmp_path / name,
            corruptions=("brightness",),
            severities=(1,),
            workers=1,
            progress=False,
        )
        assert completed(out, ("brightness",), (1,), N)
        (out / name).write_bytes(pickled_payload(marker))
        assert not completed(out, ("brightness",), (1,), N)
    assert not marker.exists()
    np.load(out / name, allow_pickle=True)  # the payload is real
    assert marker.exists()


@pytest.mark.parametrize(
    "labels, found",
    [
        (np.arange(100, 110), "labels 100..109"),  # CIFAR-100-style ids: every image would score wrong
        (np.arange(-5, 5), "labels -5..4"),
    ],
)
def test_load_refuses_labels_outside_the_classes_naming_the_file(tmp_path, labels, found):
    folder = write_official(tmp_path / "c", n=10)
    np.save(folder / "labels.npy", np.tile(labels, 5).astype(np.int64))
    with pytest.raises(ValueError, match=rf"c/labels\.npy: {found}; allowed integers 0\.\.9$") as e:
        load_corrupted(folder, "fog")
    assert "\n" not in str(e.value)
    np.save(folder / "labels.npy", np.tile(np.arange(10) + 0.5, 5))  # float labels: never cast
    with pytest.raises(ValueError, match=r"labels\.npy: expected integer labels .* got float64"):
        load_corrupted(folder, "fog")


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_write_atomic_on_a_full_disk_names_the_file_and_leaves_nothing(tmp_path):
    def fill(f):
        f.write(b"half")
        enospc()

    with pytest.raises(OSError, match=r"No space left on device: '.*labels\.npy'") as e:
        write_atomic(tmp_path / "labels.npy", fill)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "labels.npy")
    assert list(tmp_path.iterdir()) == []  # no temporary, no torn file


def test_a_full_disk_is_an_os_error_naming_the_partial_and_leaves_nothing_read_as_whole(
    tmp_path, source, monkeypatch
):
    # Without blocks allocated up front, a worker writing its block through the map would die of
    # SIGBUS on a full disk (tests/integration/test_disk_full.py does it on a real one).
    images, labels = source
    out = tmp_path / "c"
    monkeypatch.setattr(os, "posix_fallocate", enospc)
    with pytest.raises(OSError, match=r"\.partial/gaussian_noise\.[^/]*\.npy\.tmp'$") as e:
        generate(images, labels, out, corruptions=FAST, severities=(1, 2), workers=1, progress=False)
    assert e.value.errno == errno.ENOSPC
    assert not list((out / ".partial").glob("*")), "a partial that could not be allocated is removed"
    assert not list(out.glob("*.npy.tmp")) and sorted(p.name for p in out.glob("*.npy")) == ["labels.npy"]
    assert not completed(out, FAST, (1, 2), N)
    for name in FAST:
        with pytest.raises(FileNotFoundError):
            load_corrupted(out, name)
    monkeypatch.undo()  # space again: the same call finishes the copy
    generate(images, labels, out, corruptions=FAST, severities=(1, 2), workers=1, progress=False)
    assert completed(out, FAST, (1, 2), N)


def test_corrupt_cli_on_a_full_disk_is_one_line_naming_the_path_exit_1(tmp_path, monkeypatch, capsys):
    from study.cli import main
    from tests.unit.test_data import write_cifar

    write_cifar(tmp_path / "data")
    monkeypatch.setattr(os, "posix_fallocate", enospc)
    out = tmp_path / "c"
    argv = ["corrupt", "--data-dir", str(tmp_path / "data"), "--out", str(out), "--workers", "1"]
    rc = main([*argv, "--corruptions", "brightness", "--severities", "1", "--limit", "4"])
    err = capsys.readouterr().err.strip()
    assert rc == 1, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"freqstudy corrupt: error: {out}/.partial/brightness.")
    assert err.endswith(".npy.tmp: [Errno 28] No space left on device (ENOSPC)")
    assert not completed(out, ("brightness",), (1,), 4)


def test_cache_reuses_complete_copies_and_keys_on_limit_and_seed(tmp_path, source):
    images, labels = source
    kw = dict(split_name="val", severities=(1, 2), workers=1)
    a = ensure_corrupted_copy(images, labels, tmp_path, corruptions=("brightness",), seed=0, **kw)
    stamp = os.stat(a / "brightness.npy").st_mtime_ns
    assert ensure_corrupted_copy(images, labels, tmp_path, corruptions=("brightness",), seed=0, **kw) == a
    assert os.stat(a / "brightness.npy").st_mtime_ns == stamp  # reused, not rewritten
    assert a.name.startswith("val-") and f"-v{GENERATOR_VERSION}-seed0-n{N}-s12" in a.name
    grown = ensure_corrupted_copy(images, labels, tmp_path, corruptions=FAST, seed=0, **kw)
    assert (
        grown == a
        and (a / "gaussian_noise.npy").exists()
        and os.stat(a / "brightness.npy").st_mtime_ns == stamp
    )
    limited = ensure_corrupted_copy(
        images, labels, tmp_path, corruptions=("brightness",), seed=0, limit=5, **kw
    )
    assert limited != a and load_corrupted(limited, "brightness")[0].shape == (10, 32, 32, 3)
    assert np.array_equal(
        load_corrupted(limited, "brightness")[0], load_corrupted(a, "brightness", limit=5)[0]
    )
    reseeded = ensure_corrupted_copy(images, labels, tmp_path, corruptions=("brightness",), seed=1, **kw)
    assert reseeded not in (a, limited)
