"""CIFAR-10-C blur corruptions: defocus, glass, motion and zoom blur
(benchmark) and gaussian blur (extra), at the CIFAR parameters of
``docs/cifar10c.md``.

Every filter here is linear on a 32x32 grid, so each is applied to the whole
batch as matrix products (separable ones, or zoom_blur's one sparse operator)
rather than per image.
glass_blur's pixel "swaps" are, in the original's sequential order, copies
from pixels not yet visited in that pass, so a pass is one vectorised gather.
Inputs are uint8 ``(N, 32, 32, 3)``; outputs the same shape and dtype.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from study.corruptions import _ops
from study.corruptions._ops import severity_params, to_uint8

DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # (disk radius px, alias-blur σ px)
GLASS = (
    (0.05, 1, 1),
    (0.25, 1, 1),
    (0.4, 1, 1),
    (0.25, 1, 2),
    (0.4, 1, 2),
)  # (blur σ px, max shift px, passes)
MOTION = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))  # ImageMagick (radius px, σ px)
MOTION_ANGLE_DEG = (-45.0, 45.0)  # uniform range of the blur direction
ZOOM_MAX = (
    1.06,
    1.11,
    1.16,
    1.21,
    1.26,
)  # zoom factors are np.arange(1, z_max, 0.01), float rounding included
GAUSSIAN_SIGMA = (0.4, 0.6, 0.7, 0.8, 1.0)  # px

_SIZE = 32


@lru_cache(maxsize=8)
def defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The original ``disk``: float32 17x17 (``x, y ∈ [-8, 8]``) of ``x² + y² <= r²``,
    normalised, then ``cv2.GaussianBlur`` 3x3 with σ = alias_blur (reflect-101)."""
    grid = np.arange(-8, 9)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    disk /= np.sum(disk)
    g = _ops.cv2_gaussian_kernel(3, alias_blur).astype(np.float64)
    blurred = _ops.correlate2d(disk[None].astype(np.float64), np.outer(g, g), mode="mirror")[0]
    out = blurred.astype(np.float32)
    out.setflags(write=False)
    return out


def defocus_blur(images: np.ndarray, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Each channel of ``x/255`` correlated with ``defocus_kernel`` (reflect-101), clip, ·255."""
    radius, alias = severity_params("defocus_blur", DEFOCUS, severity)
    kernel = defocus_kernel(radius, alias)
    # Crop the all-zero margin of the 17x17 kernel: same result, far fewer rank terms to apply.
    rows, cols = np.nonzero(kernel)
    r = max(8 - rows.min(), rows.max() - 8)
    c = max(8 - cols.min(), cols.max() - 8)
    x = _ops.correlate2d(images / 255.0, kernel[8 - r : 9 + r, 8 - c : 9 + c], mode="mirror")
    return to_uint8(np.clip(x, 0, 1, out=x) * 255)


def glass_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur → uint8 → ``passes`` local pixel shuffles → Gaussian blur, clip, ·255.

    A pass visits ``h, w`` from 31 down to 2 and draws ``dx, dy ∈ {-1, 0}``;
    the original's tuple swap copies ``x[h+dy, w+dx]`` into ``x[h, w]``, and
    that source has not been visited yet in the pass, so the pass equals
    ``x[h, w] ← x_old[h+dy, w+dx]`` for all ``h, w`` at once.
    """
    sigma, delta, passes = severity_params("glass_blur", GLASS, severity)
    n = images.shape[0]
    x = to_uint8(_ops.gaussian_blur(images / 255.0, sigma) * 255)
    m = _SIZE - 2 * delta  # positions visited per axis: h, w = 31 .. 2 for delta 1
    for _ in range(passes):
        dx, dy = rng.integers(-delta, delta, size=(2, n, m, m))  # in [-delta, delta)
        x = glass_shuffle(x, dx, dy, delta)
    y = _ops.gaussian_blur(x / 255.0, sigma)
    return to_uint8(np.clip(y, 0, 1, out=y) * 255)


def glass_shuffle(images: np.ndarray, dx: np.ndarray, dy: np.ndarray, delta: int) -> np.ndarray:
    """One pass of glass_blur's pixel "swaps", for the whole batch at once.

    Args:
        images: ``(N, H, W[, C])``, H == W.
        dx, dy: integer shifts ``(N, m, m)`` with ``m = H − 2·delta``; entry
            ``[n, a, b]`` is the draw for ``h = delta + 1 + a``, ``w = delta + 1 + b``
            (the original visits ``h, w`` from ``H − delta`` down to ``delta + 1``).

    Returns:
        a new array with ``out[h, w] = images[h + dy, w + dx]`` at visited positions.
    """
    n, size = images.shape[0], images.shape[1]
    lo, hi = delta + 1, size - delta  # visited rows/cols: lo..hi inclusive
    visited = np.arange(lo, hi + 1)
    out = images.copy()
    out[:, lo : hi + 1, lo : hi + 1] = images[
        np.arange(n)[:, None, None], visited[None, :, None] + dy, visited[None, None, :] + dx
    ]
    return out


def motion_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """ImageMagick-6 motion blur (Q16, 8-bit PNG out), angle ~ U(-45°, 45°) per image."""
    radius, sigma = severity_params("motion_blur", MOTION, severity)
    angles = rng.uniform(*MOTION_ANGLE_DEG, size=images.shape[0])
    return _ops.imagemagick_motion_blur(images, radius, sigma, angles)


@lru_cache(maxsize=8)
def zoom_blur_matrix(z_max: float):
    """Sparse ``(1024, 1024)`` operator on a flattened 32x32 plane: ``(I + Σ_z Z_z ⊗ Z_z) / (n + 1)``,
    with ``Z_z`` the clipped zoom along one axis for each ``z`` in ``np.arange(1, z_max, 0.01)``.
    Each output pixel reads at most a few dozen inputs (about 12 on average at z_max 1.26).
    A ``scipy.sparse.csr_matrix``; scipy is imported here, so only a worker that zooms pays for it.

    Each ``Z ⊗ Z`` is added at its nonzero entries only (``Z`` has two per row):
    the same products and sums as adding the dense Kronecker product, whose
    other entries add exact zeros, at a thousandth of the work."""
    from scipy import sparse

    factors = np.arange(1, z_max, 0.01)
    total = np.eye(_SIZE * _SIZE)
    for z in factors:
        zm = _ops.zoom_matrix(_SIZE, float(z))
        i, j = np.nonzero(zm)
        v = zm[i, j]
        # kron(Z, Z)[a·32 + b, c·32 + d] = Z[a, c]·Z[b, d]; the (row, column) pairs are all distinct.
        total[i[:, None] * _SIZE + i[None, :], j[:, None] * _SIZE + j[None, :]] += v[:, None] * v[None, :]
    total /= len(factors) + 1
    return sparse.csr_matrix(total)


def zoom_blur(images: np.ndarray, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Mean of the image and its clipped zooms by ``np.arange(1, z_max, 0.01)`` on 0-1, clip, ·255.

    The original accumulates in float32; one float64 product with the summed
    operator differs from it only by rounding (within the ±1 of truncation).
    """
    z_max = severity_params("zoom_blur", ZOOM_MAX, severity)
    op = zoom_blur_matrix(z_max)
    n = images.shape[0]
    # (N, 32, 32, 3) -> (1024, N·3): pixels as rows, every plane a column, one sparse product.
    x = (images / 255.0).astype(np.float32).astype(np.float64)
    cols = x.reshape(n, _SIZE * _SIZE, 3).transpose(1, 0, 2).reshape(_SIZE * _SIZE, n * 3)
    y = (op @ cols).reshape(_SIZE, _SIZE, n, 3).transpose(2, 0, 1, 3)
    return to_uint8(np.clip(y, 0, 1) * 255)


def gaussian_blur(images: np.ndarray, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """skimage ``gaussian(x/255, σ, channel_axis=-1)`` (mode nearest, truncate 4), clip, ·255."""
    sigma = severity_params("gaussian_blur", GAUSSIAN_SIGMA, severity)
    x = _ops.gaussian_blur(images / 255.0, sigma)
    return to_uint8(np.clip(x, 0, 1, out=x) * 255)
