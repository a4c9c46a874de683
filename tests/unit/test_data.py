"""study.data: the restricted unpickler, loading the official layout, the
archive extraction, the stratified split, and on-device augmentation, on
small synthetic batches the tests write themselves."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from study.data.cifar10 import (
    download_cifar10,
    extract_archive,
    fingerprint,
    load_cifar10,
    read_batch,
    stratified_split,
)
from study.data.loader import CIFAR10_MEAN, CIFAR10_STD, DeviceLoader

N_PER_BATCH = 20


def label_images(labels: np.ndarray) -> np.ndarray:
    """``(N, 32, 32, 3)`` uint8 images whose every value encodes the label (10 + 20*label)."""
    return np.broadcast_to(
        (10 + 20 * labels).astype(np.uint8)[:, None, None, None], (len(labels), 32, 32, 3)
    ).copy()


def write_batch(
    path: Path, images: np.ndarray, labels: np.ndarray, *, bytes_keys: bool, protocol: int = 4
) -> None:
    """One batch in the official layout: rows R(1024) G(1024) B(1024)."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    k = (lambda s: s.encode()) if bytes_keys else (lambda s: s)
    obj = {k("batch_label"): k(path.name), k("labels"): [int(x) for x in labels], k("data"): data}
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def write_cifar(root: Path, *, bytes_keys: bool = False, protocol: int = 4) -> Path:
    """A tiny CIFAR-10 folder: 5 train batches and a test batch of N_PER_BATCH label-coded images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, N_PER_BATCH)
        write_batch(folder / name, label_images(labels), labels, bytes_keys=bytes_keys, protocol=protocol)
    meta = {b"label_names" if bytes_keys else "label_names": [f"c{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return folder


class RunsShell:
    """Pickles as a call to os.system: what a tampered batch would contain."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("bytes_keys", [False, True])
# Protocols 4 and 5 (numpy 2 names its globals differently in each), and 2 as Python 3
# writes it (bytes through _codecs.encode); the real subset, Python-2-style protocol 2,
# is loaded in tests/integration/test_data_real.py.
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_loads_official_layout_with_str_or_bytes_keys(tmp_path, bytes_keys, protocol):
    folder = write_cifar(tmp_path, bytes_keys=bytes_keys, protocol=protocol)
    for where in (tmp_path, folder):  # the parent or the folder itself
        d = load_cifar10(where)
        assert d.train_images.shape == (5 * N_PER_BATCH, 32, 32, 3) and d.train_images.dtype == np.uint8
        assert d.test_images.shape == (N_PER_BATCH, 32, 32, 3)
        assert d.train_labels.dtype == np.int64
        # Layout decoded right: every value of an image is 10 + 20*label.
        assert np.all(d.train_images == (10 + 20 * d.train_labels)[:, None, None, None])
        assert np.all(d.test_images == (10 + 20 * d.test_labels)[:, None, None, None])
        assert d.classes == tuple(f"c{i}" for i in range(10))


def test_channel_order_is_rgb_hwc(tmp_path):
    folder = write_cifar(tmp_path)
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, 1, 2] = (11, 22, 33)  # row 1, column 2
    write_batch(folder / "test_batch", img, np.array([3]), bytes_keys=False)
    d = load_cifar10(folder)
    assert tuple(d.test_images[0, 1, 2]) == (11, 22, 33)
    assert d.test_images[0].sum() == 66


def test_refuses_pickle_that_calls_os_system(tmp_path):
    folder = write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    evil = {"batch_label": "x", "labels": [0], "data": RunsShell(marker)}
    (folder / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    # The plain unpickler would run it: the test's pickle is real.
    assert b"system" in (folder / "data_batch_3").read_bytes()
    with pytest.raises(ValueError, match=r"data_batch_3.*refused global (posix|os)\.system"):
        load_cifar10(tmp_path)
    assert not marker.exists()
    with pytest.raises(ValueError, match="refused global"):
        read_batch(folder / "data_batch_3")
    assert not marker.exists()


class RunsEval:
    """Pickles as a call to builtins.eval that would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class EncodesWithZlib:
    """Pickles as ``_codecs.encode(b"...", "zlib")``: the admitted global with arguments it refuses."""

    def __reduce__(self):
        import codecs

        return (codecs.encode, (b"x" * 100, "zlib"))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_refuses_eval_and_any_other_use_of_codecs_encode(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({"data": RunsEval(marker), "labels": [0]}, protocol=protocol))
    assert b"eval" in path.read_bytes()  # a real call to eval: the plain unpickler would run it
    with pytest.raises(ValueError, match=r"refused global (builtins|__builtin__)\.eval"):
        read_batch(path)
    assert not marker.exists()
    # _codecs.encode is admitted for protocol-2 bytes only: a str in latin1, nothing else.
    path.write_bytes(pickle.dumps({"data": EncodesWithZlib()}, protocol=protocol))
    with pytest.raises(ValueError, match=r"^\S*b: .*refused _codecs\.encode\(bytes, 'zlib'\)") as e:
        read_batch(path)
    assert "\n" not in str(e.value)


def write_labels(folder: Path, labels) -> None:
    """``data_batch_2`` with three blank images and these labels, exactly as given."""
    obj = {"data": np.zeros((3, 3072), np.uint8), "labels": labels}
    (folder / "data_batch_2").write_bytes(pickle.dumps(obj))


@pytest.mark.parametrize(
    "labels, message",
    [
        ([100, 105, 109], r"labels must be in 0\.\.9, got labels 100\.\.109"),
        ([-1, 0, 3], r"labels must be in 0\.\.9, got labels -1\.\.3"),
        ([0.0, 1.5, 2.0], r"label 1 is 1\.5, not an integer; allowed integers 0\.\.9"),
        (np.array([0.0, np.nan, 1.0]), r"label 1 is nan, not an integer"),
        (["cat", "dog", "cat"], r"labels are <U3 \(first: 'cat'\), not integers; allowed integers 0\.\.9"),
        ([True, False, True], r"labels are bool .*not integers"),
        ([[0], [1], [2]], r"labels have shape \(3, 1\), expected a flat list"),
    ],
)
def test_labels_must_be_integers_of_a_class_naming_the_file(tmp_path, labels, message):
    folder = write_cifar(tmp_path)
    write_labels(folder, labels)
    with pytest.raises(ValueError, match=rf"data_batch_2: {message}") as e:
        load_cifar10(tmp_path)
    assert "\n" not in str(e.value)


def test_whole_valued_float_labels_load_as_the_same_integers(tmp_path):
    folder = write_cifar(tmp_path)
    write_labels(folder, np.array([3.0, 0.0, 9.0]))
    d = load_cifar10(tmp_path)
    assert d.train_labels.dtype == np.int64 and list(d.train_labels[N_PER_BATCH : N_PER_BATCH + 3]) == [
        3,
        0,
        9,
    ]


def test_refuses_any_other_global(tmp_path):
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({"data": np.float64}, protocol=2))  # an innocent-looking global
    with pytest.raises(ValueError, match=r"refused global numpy\.float64"):
        read_batch(path)


def test_truncated_batch_names_the_file(tmp_path):
    folder = write_cifar(tmp_path)
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"test_batch.*(truncated|corrupt)"):
        load_cifar10(tmp_path)


def test_bad_contents_are_refused_naming_the_file(tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "data_batch_2").write_bytes(
        pickle.dumps({"data": np.zeros((3, 100), np.uint8), "labels": [0, 1, 2]})
    )
    with pytest.raises(ValueError, match=r"data_batch_2.*\(N, 3072\)"):
        load_cifar10(tmp_path)
    (folder / "data_batch_2").write_bytes(
        pickle.dumps({"data": np.zeros((3, 3072), np.uint8), "labels": [0, 1, 12]})
    )
    with pytest.raises(ValueError, match=r"data_batch_2.*labels must be in 0..9"):
        load_cifar10(tmp_path)
    (folder / "data_batch_2").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match=r"data_batch_2.*dict"):
        load_cifar10(tmp_path)


def test_missing_folder_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere/cifar-10-batches-py.*data.download: true"):
        load_cifar10(tmp_path / "nowhere")
    folder = write_cifar(tmp_path)
    (folder / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="missing data_batch_4"):
        load_cifar10(tmp_path)


def make_archive(src_root: Path, archive: Path, extra: tarfile.TarInfo | None = None) -> str:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src_root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        if extra is not None:
            tar.addfile(extra, io.BytesIO(b"x" * extra.size))
    return hashlib.md5(archive.read_bytes()).hexdigest()


def test_extract_checks_md5_and_refuses_path_traversal(tmp_path):
    write_cifar(tmp_path / "src")
    archive = tmp_path / "a.tar.gz"
    md5 = make_archive(tmp_path / "src", archive)
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match="md5"):
        extract_archive(archive, dest, md5="0" * 32)
    assert not (dest / "cifar-10-batches-py").exists()
    extract_archive(archive, dest, md5=md5)
    assert load_cifar10(dest).test_images.shape == (N_PER_BATCH, 32, 32, 3)
    assert [p.name for p in dest.iterdir()] == ["cifar-10-batches-py"]  # no temporary left behind

    evil = tarfile.TarInfo("../escaped.txt")
    evil.size = 3
    bad = tmp_path / "bad.tar.gz"
    md5 = make_archive(tmp_path / "src", bad, extra=evil)
    with pytest.raises(ValueError, match="unsafe archive members"):
        extract_archive(bad, tmp_path / "dest2", md5=md5)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "dest2" / "cifar-10-batches-py").exists()


def test_download_from_a_local_server_then_offline_error(tmp_path):
    write_cifar(tmp_path / "src")
    served = tmp_path / "www"
    served.mkdir()
    md5 = make_archive(tmp_path / "src", served / "cifar-10-python.tar.gz")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz"
        folder = download_cifar10(tmp_path / "data", url=url, md5=md5)
        assert folder == tmp_path / "data" / "cifar-10-batches-py"
        assert load_cifar10(tmp_path / "data").train_images.shape[0] == 5 * N_PER_BATCH
        assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar-10-batches-py"]
        port = server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(FileNotFoundError, match=r"could not download.*offline/cifar-10-batches-py"):
        download_cifar10(
            tmp_path / "offline", url=f"http://127.0.0.1:{port}/gone.tar.gz", md5=md5, timeout_s=5
        )


def test_stratified_split_properties():
    labels = np.random.default_rng(1).integers(0, 10, 1003)
    tr, va = stratified_split(labels, 0.2, seed=7)
    assert tr.dtype == va.dtype == np.int64
    assert np.intersect1d(tr, va).size == 0
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(labels.size))
    for c in range(10):
        n_c = int((labels == c).sum())
        assert int((labels[va] == c).sum()) == round(0.2 * n_c)
    tr2, va2 = stratified_split(labels, 0.2, seed=7)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert not np.array_equal(va, stratified_split(labels, 0.2, seed=8)[1])
    assert stratified_split(labels, 0.0, seed=0)[1].size == 0
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="val_fraction"):
            stratified_split(labels, bad, seed=0)


def test_fingerprint_tracks_bytes_and_shape():
    a = np.arange(24, dtype=np.uint8)
    f = fingerprint(a)
    assert len(f) == 16 and int(f, 16) >= 0
    assert fingerprint(a.copy()) == f
    b = a.copy()
    b[5] += 1
    assert fingerprint(b) != f
    assert fingerprint(a.reshape(4, 6)) != f
    assert fingerprint(a, a) != f


def denormalise(x: torch.Tensor) -> np.ndarray:
    """Normalised float NCHW -> uint8 NHWC (exact up to float rounding)."""
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return ((x * std + mean) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_crops_are_windows_of_the_reflect_padded_image_and_labels_follow():
    rng = np.random.default_rng(0)
    n, pad = 48, 4
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(n)  # label = index, so each yielded label names its source image
    loader = DeviceLoader(images, labels, batch_size=16, device="cpu", train=True, seed=3, pad=pad)
    seen_offsets, seen = set(), []
    for epoch in range(3):
        loader.set_epoch(epoch)
        for x, y in loader:
            assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
            for img, lab in zip(denormalise(x), y.numpy()):
                padded = np.pad(images[lab], ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
                hits = [
                    (dy, dx, f)
                    for dy in range(2 * pad + 1)
                    for dx in range(2 * pad + 1)
                    for f in (0, 1)
                    if np.array_equal(
                        img, (lambda w: w[:, ::-1] if f else w)(padded[dy : dy + 32, dx : dx + 32])
                    )
                ]
                assert hits, f"sample labelled {lab} is no window of its padded image"
                seen_offsets.add(hits[0][:2])
                seen.append(lab)
    assert set(seen) == set(range(n))  # every image once per epoch
    assert len(seen_offsets) > 60  # the draws span the 9x9 offsets, not a few


def test_label_coded_images_keep_their_labels():
    labels = np.random.default_rng(2).integers(0, 10, 300)
    loader = DeviceLoader(label_images(labels), labels, batch_size=64, device="cpu", train=True, seed=0)
    assert len(loader) == 300 // 64
    for x, y in loader:
        img = denormalise(x)
        assert np.all(img == (10 + 20 * y.numpy())[:, None, None, None].astype(np.uint8))


def test_flips_are_half_over_many_draws():
    n = 256
    images = np.zeros((n, 32, 32, 3), np.uint8)
    images[:, :, 16:] = 255  # left dark, right bright: a flip swaps them even after a 4-pixel shift
    loader = DeviceLoader(images, np.zeros(n), batch_size=128, device="cpu", train=True, seed=11)
    flipped = total = 0
    for epoch in range(20):
        loader.set_epoch(epoch)
        for x, _ in loader:
            left, right = x[:, :, :, :12].mean(dim=(1, 2, 3)), x[:, :, :, 20:].mean(dim=(1, 2, 3))
            flipped += int((left > right).sum())
            total += x.shape[0]
    # 5120 draws: the standard deviation of the share is 0.007.
    assert total == 5120 and abs(flipped / total - 0.5) < 0.03


def test_order_is_seeded_per_epoch_and_eval_is_plain():
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (70, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(70)

    def epoch_of(seed, epoch):
        ld = DeviceLoader(images, labels, batch_size=32, device="cpu", train=True, seed=seed)
        ld.set_epoch(epoch)
        return [(x.clone(), y.clone()) for x, y in ld]

    a, b = epoch_of(0, 1), epoch_of(0, 1)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not torch.equal(a[0][1], epoch_of(0, 2)[0][1])
    assert not torch.equal(a[0][1], epoch_of(1, 1)[0][1])
    assert len(a) == 2  # drop_last in train mode

    ev = DeviceLoader(images, labels, batch_size=32, device="cpu", train=False, channels_last=True)
    batches = list(ev)
    assert len(ev) == len(batches) == 3
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x, _ in batches)
    x = torch.cat([x for x, _ in batches])
    assert torch.equal(torch.cat([y for _, y in batches]), torch.arange(70))
    expected = (
        torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        - torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    ) / torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-5)


def test_loader_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        DeviceLoader(
            np.zeros((4, 32, 32, 3), np.float32), np.zeros(4), batch_size=2, device="cpu", train=True
        )
    with pytest.raises(ValueError, match="labels"):
        DeviceLoader(np.zeros((4, 32, 32, 3), np.uint8), np.zeros(3), batch_size=2, device="cpu", train=True)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4), batch_size=0, device="cpu", train=True)


@pytest.mark.gpu
def test_loader_on_cuda_matches_the_window_rule():
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    loader = DeviceLoader(images, np.arange(64), batch_size=32, device="cuda", train=True, channels_last=True)
    for x, y in loader:
        assert x.is_cuda and y.is_cuda and x.is_contiguous(memory_format=torch.channels_last)
        for img, lab in zip(denormalise(x.cpu()), y.cpu().numpy()):
            padded = np.pad(images[lab], ((4, 4), (4, 4), (0, 0)), mode="reflect")
            assert any(
                np.array_equal(img, w) or np.array_equal(img, w[:, ::-1])
                for w in (padded[dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9))
            )
