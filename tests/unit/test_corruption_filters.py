"""The numpy copies of scipy.ndimage's filters (study.corruptions._filters) are scipy's, bit for bit.

Generation workers use them instead of importing scipy.ndimage, and CIFAR-10-C
files must not change by a single byte for it (``GENERATOR_VERSION`` did not
move), so each is compared with ``np.array_equal`` against scipy itself, on
random data and on the exact inputs the corruptions give them. Also here: the
corruptions computed a block of images at a time (defocus, elastic) equal the
whole batch, and the plan that groups units into worker tasks.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, sparse

from study.cifar10c.schedule import TOGETHER, plan_tasks
from study.corruptions import _filters, _ops, blur, elastic
from study.metrics import ALL_CORRUPTIONS

MODES = ("nearest", "reflect", "mirror", "wrap", "constant")


def weights_of(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.normal(size=size)
    if kind == "symmetric":
        return (w + w[::-1]) / 2
    if kind == "antisymmetric":
        return (w - w[::-1]) / 2
    if kind == "almost symmetric":  # within DBL_EPSILON: scipy still takes the symmetric loop
        w = (w + w[::-1]) / 2
        w[0] += 1e-17
    return w


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["symmetric", "antisymmetric", "almost symmetric", "general"])
def test_correlate1d_is_scipys(mode, kind):
    rng = np.random.default_rng([MODES.index(mode), len(kind)])
    for size in (1, 2, 3, 4, 5, 9, 17):
        w = weights_of(kind, size, rng)
        x = rng.normal(size=(3, 32, 32, 3))
        for axis in range(4):
            got = _filters.correlate1d(x, w, axis, mode)
            assert np.array_equal(got, ndimage.correlate1d(x, w, axis=axis, mode=mode)), (size, axis)
        eye = np.eye(32)  # how _ops builds its filter matrices
        assert np.array_equal(
            _filters.correlate1d(eye, w, 0, mode), ndimage.correlate1d(eye, w, axis=0, mode=mode)
        )


@pytest.mark.parametrize("mode", ["nearest", "reflect", "mirror"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gaussian_filter_is_scipys(mode, dtype):
    rng = np.random.default_rng(1)
    # glass_blur, gaussian_blur and spatter's sigmas, and wider ones (radius past a block's images).
    for sigma in (0.05, 0.25, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.5, 3.0, 12.0):
        x = rng.random((40, 32, 32, 3)).astype(dtype)  # more images than one cache block
        got = _filters.gaussian_filter(x, (0, sigma, sigma, 0), mode, 4.0)
        want = ndimage.gaussian_filter(x, (0, sigma, sigma, 0), mode=mode, truncate=4.0)
        assert got.dtype == want.dtype and np.array_equal(got, want), sigma
        planes = rng.random((7, 32, 32)).astype(dtype)
        got = _filters.gaussian_filter(planes, (0, sigma, sigma), mode, 4.0)
        assert np.array_equal(
            got, ndimage.gaussian_filter(planes, (0, sigma, sigma), mode=mode, truncate=4.0)
        )
    x = rng.random((4, 9, 9))  # the first axis blurred too: no blocks
    assert np.array_equal(
        _filters.gaussian_filter(x, (1.0, 0.5, 0.0), mode),
        ndimage.gaussian_filter(x, (1.0, 0.5, 0.0), mode=mode),
    )


@pytest.mark.parametrize("mode", ["mirror", "nearest", "reflect"])
def test_uniform_filter_is_scipys(mode):
    rng = np.random.default_rng(2)
    for size in (2, 3, 5):
        for x in (rng.random((7, 32, 32)) * 20, rng.integers(0, 256, (7, 32, 32)).astype(np.float64)):
            got = _filters.uniform_filter(x, (1, size, size), mode)
            assert np.array_equal(got, ndimage.uniform_filter(x, size=(1, size, size), mode=mode)), size


def test_zoom_linear_is_scipys():
    rng = np.random.default_rng(3)
    # zoom_blur's factors, snow's, and random ones (some land an output row just past the edge).
    factors = [*np.arange(1, 1.26, 0.01), 1.25, 1.75, 2.25, *rng.uniform(1, 3, 60)]
    for size in (32, 31, 64):
        for z in factors:
            rows = int(np.ceil(size / z))
            for x in (np.eye(size)[:rows], rng.random((rows, 5))):
                assert np.array_equal(_filters.zoom_linear(x, z), ndimage.zoom(x, (z, 1.0), order=1)), (
                    size,
                    z,
                )


def test_connected_to_is_scipys_labels():
    rng = np.random.default_rng(4)
    plane_8 = np.zeros((3, 3, 3), dtype=bool)
    plane_8[1] = True  # 8-connected within an image, never across the batch
    for _ in range(60):
        candidates = rng.random((10, 32, 32)) < rng.uniform(0.05, 0.7)
        seeds = candidates & (rng.random(candidates.shape) < rng.uniform(0.0, 0.3))
        labels, _ = ndimage.label(candidates, structure=plane_8)
        keep = np.zeros(labels.max() + 1, dtype=bool)
        keep[labels[seeds]] = True
        keep[0] = False
        assert np.array_equal(_filters.connected_to(candidates, seeds), keep[labels])


def test_zoom_blur_operator_is_the_dense_sum():
    # Built from the nonzeros of each Kronecker product; the dense sum, term by term, is the reference.
    for z_max in blur.ZOOM_MAX:
        total = np.eye(32 * 32)
        factors = np.arange(1, z_max, 0.01)
        for z in factors:
            zm = _ops.zoom_matrix(32, float(z))
            total += np.kron(zm, zm)
        total /= len(factors) + 1
        got, want = blur.zoom_blur_matrix(z_max), sparse.csr_matrix(total)
        assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
        assert np.array_equal(got.data, want.data)


def test_plan_groups_each_corruption_costliest_first():
    pending = [(c, s) for c in ALL_CORRUPTIONS for s in (1, 2, 3, 4, 5)]
    tasks = plan_tasks(pending, n_workers=2)
    assert sorted(u for t in tasks for u in t) == sorted(pending)  # every unit once
    together = next(iter(TOGETHER))
    for task in tasks:
        names = {name for name, _ in task}
        assert len(names) == 1 or names == together, names
        assert [s for name, s in task if name == task[0][0]] == [1, 2, 3, 4, 5]  # severities in order
    assert tasks[0][0][0] == "snow" and tasks[-1][0][0] == "impulse_noise"  # the costliest and cheapest


def test_plan_splits_units_when_corruptions_are_too_few():
    pending = [("snow", 1), ("snow", 2), ("frost", 1), ("zoom_blur", 3)]
    tasks = plan_tasks(pending, n_workers=2)  # 3 corruptions < 2 per worker: one unit per task
    assert sorted(t[0] for t in tasks) == sorted(pending) and all(len(t) == 1 for t in tasks)
    assert tasks[0][0][0] == "snow" and tasks[-1][0] == ("frost", 1)


@pytest.mark.parametrize("n", [1, 31, 32, 33, 65, 200])
def test_correlate2d_is_the_sum_of_its_separable_terms_bit_for_bit(n):
    # Blocked by images and sharing one layout of the batch, it still makes the products and sums
    # that apply_separable makes for each rank-1 term (so defocus_blur's bytes did not move).
    x = np.random.default_rng(n).integers(0, 256, (n, 32, 32, 3)) / 255.0
    for severity in range(1, 6):
        kernel = blur.defocus_kernel(*blur.DEFOCUS[severity - 1])
        u, s, vt = np.linalg.svd(kernel.astype(np.float64))
        want = np.zeros(x.shape)
        for r in range(int(np.sum(s > s[0] * 1e-12))):
            rows = _ops.axis_filter_matrix(tuple(float(v) for v in u[:, r] * s[r]), 32, "mirror")
            cols = _ops.axis_filter_matrix(tuple(float(v) for v in vt[r]), 32, "mirror")
            want += _ops.apply_separable(x, rows, cols)
        assert np.array_equal(_ops.correlate2d(x, kernel), want), severity


def test_elastic_in_blocks_is_the_whole_batch_bit_for_bit(monkeypatch):
    images = np.random.default_rng(5).integers(0, 256, (150, 32, 32, 3), dtype=np.uint8)
    for severity in range(1, 6):
        blocked = elastic.elastic_transform(images, severity, np.random.default_rng(severity))
        with monkeypatch.context() as m:
            m.setattr(elastic, "ELASTIC_BLOCK", 10**6)  # one block: the whole batch, as before blocks
            whole = elastic.elastic_transform(images, severity, np.random.default_rng(severity))
        assert np.array_equal(blocked, whole), severity


def test_sample_planes_blocks_fold_and_pad_as_their_batch_does():
    # One image's coordinates lie far outside (the batch is folded), another's reach 5 pixels out
    # (a 5-pixel pad): every block sampled with the batch's reach equals the batch sampled at once.
    rng = np.random.default_rng(6)
    planes = rng.random((3, 8, 32, 32)).astype(np.float32)
    rows, cols = rng.uniform(-1, 32, (2, 8, 32, 32))
    for far in (np.inf, 5.0):
        r, c = rows.copy(), cols.copy()
        r[2] += 40.0 if far == np.inf else 0.0
        c[6] -= far if far != np.inf else 0.0
        for edge_repeated in (False, True):
            whole = elastic.sample_planes(planes, r, c, edge_repeated=edge_repeated)
            reach = elastic.sample_reach(r, c, 32, 32)
            parts = [
                elastic.sample_planes(
                    planes[:, k : k + 3], r[k : k + 3], c[k : k + 3], edge_repeated=edge_repeated, reach=reach
                )
                for k in range(0, 8, 3)
            ]
            assert np.array_equal(np.concatenate(parts, axis=1), whole), (far, edge_repeated)
