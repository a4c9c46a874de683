"""The real CIFAR-10 subset (``shared/data/cifar10-subset``) through loading,
the validation split, the device loader, and CIFAR-10-C generation of all 19
corruptions (frost from the real textures)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from study.cifar10c import generate, load_corrupted
from study.data import DeviceLoader, load_cifar10, read_batch, stratified_split
from study.metrics import ALL_CORRUPTIONS

pytestmark = pytest.mark.integration


def test_real_subset_loads(subset_dir):
    d = load_cifar10(subset_dir)
    assert d.train_images.shape == (4660, 32, 32, 3) and d.test_images.shape == (500, 32, 32, 3)
    assert d.train_images.dtype == d.test_images.dtype == np.uint8
    assert d.train_labels.shape == (4660,) and d.test_labels.shape == (500,)
    for labels in (d.train_labels, d.test_labels):
        assert labels.dtype == np.int64 and labels.min() == 0 and labels.max() == 9
    assert d.classes[0] == "airplane" and d.classes[9] == "truck"
    # Natural images, not noise: neighbouring pixels correlate strongly.
    x = d.test_images.astype(np.float64)
    assert np.corrcoef(x[:, :, :-1].ravel(), x[:, :, 1:].ravel())[0, 1] > 0.8
    # The folder itself works as well as its parent.
    assert np.array_equal(load_cifar10(subset_dir / "cifar-10-batches-py").test_labels, d.test_labels)


def test_real_batches_with_bytes_keys_and_str_keys(subset_dir, tmp_path):
    path = subset_dir / "cifar-10-batches-py" / "test_batch"
    with open(path, "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    assert b"data" in raw and b"labels" in raw  # the real files have bytes keys under encoding="bytes"
    assert set(read_batch(path)) >= {"data", "labels", "batch_label"}
    # The same batch with str keys, as a Python 3 pickle, loads to the same arrays.
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(subset_dir / "cifar-10-batches-py" / name, "rb") as f:
            b = pickle.load(f, encoding="bytes")
        (folder / name).write_bytes(pickle.dumps({k.decode(): v for k, v in b.items()}, protocol=4))
    a, b = load_cifar10(subset_dir), load_cifar10(tmp_path)
    assert np.array_equal(a.train_images, b.train_images) and np.array_equal(a.test_labels, b.test_labels)


def test_real_batches_repickled_by_python3_at_protocol_2_load_the_same(subset_dir, tmp_path):
    # Python 3 writes bytes at protocol 2 as _codecs.encode(str, "latin1"): admitted, and only that.
    src = subset_dir / "cifar-10-batches-py"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        raw = pickle.dumps(read_batch(src / name), protocol=2)
        assert name == "batches.meta" or b"_codecs\nencode" in raw
        (folder / name).write_bytes(raw)
    a, b = load_cifar10(subset_dir), load_cifar10(tmp_path)
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and np.array_equal(x, y), field
    assert a.classes == b.classes


def test_real_validation_split_and_loader(subset_dir):
    d = load_cifar10(subset_dir)
    tr, va = stratified_split(d.train_labels, 0.1, seed=0)
    assert len(tr) + len(va) == 4660 and abs(len(va) - 466) <= 5
    share = np.bincount(d.train_labels[va], minlength=10) / np.bincount(d.train_labels, minlength=10)
    assert np.all(np.abs(share - 0.1) < 0.01)
    loader = DeviceLoader(d.train_images[tr], d.train_labels[tr], batch_size=512, device="cpu", train=True)
    xs = [x for x, _ in loader]
    assert len(xs) == len(tr) // 512
    x = torch.cat(xs)
    assert (
        abs(float(x.mean())) < 0.15 and abs(float(x.std()) - 1.0) < 0.15
    )  # normalised by CIFAR-10 statistics


@pytest.mark.slow
def test_all_19_corruptions_on_real_images(subset_dir, frost_dir, tmp_path):
    d = load_cifar10(subset_dir)
    images, labels = d.test_images[:16], d.test_labels[:16]
    out = generate(images, labels, tmp_path / "c", seed=0, workers=2, frost_dir=frost_dir, progress=False)
    clean = images.astype(np.int16)
    for name in ALL_CORRUPTIONS:
        x, y, sevs = load_corrupted(out, name)
        assert x.shape == (80, 32, 32, 3) and sevs == (1, 2, 3, 4, 5), name
        assert np.array_equal(y, np.tile(labels, 5))
        change = [np.abs(x[i * 16 : (i + 1) * 16].astype(np.int16) - clean).mean() for i in range(5)]
        assert all(c > 0.1 for c in change), (name, change)  # every severity changes the images
