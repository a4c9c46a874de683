"""CIFAR-10-C ``elastic_transform``: a random affine warp followed by a smooth
random displacement field, batch-vectorised in numpy.

The original (``make_cifar_c.py``, after erniejunior's gist) does, per image on
the 0-1 scale: jitter three reference points by ``U(-affine, affine)`` pixels,
``cv2.warpAffine`` with the affine map they define (bilinear, border
reflect-101, source coordinates quantised to 1/32 pixel as OpenCV's fixed-point
remap does); then draws two ``U(-1, 1)`` fields, smooths each with a Gaussian
(sigma pixels, mode reflect, truncate 3), scales by alpha, and resamples the
warped image at ``(row + dy, col + dx)`` with ``scipy.ndimage.map_coordinates``
(order 1, mode reflect). Here both resamplings gather the four neighbours of
every sample of the whole batch from reflect-padded channel planes; OpenCV is
not needed.
"""

from __future__ import annotations

import numpy as np

from study.corruptions import _ops

IMAGE_SIZE = 32

# (alpha, sigma, affine jitter) in pixels for severities 1..5: the original's
# IMSIZE * (0, 0, .08), (.05, .2, .07), (.08, .06, .06), (.1, .04, .05), (.1, .03, .03).
ELASTIC_PARAMS: tuple[tuple[float, float, float], ...] = tuple(
    (IMAGE_SIZE * a, IMAGE_SIZE * s, IMAGE_SIZE * j)
    for a, s, j in (
        (0.0, 0.0, 0.08),
        (0.05, 0.2, 0.07),
        (0.08, 0.06, 0.06),
        (0.1, 0.04, 0.05),
        (0.1, 0.03, 0.03),
    )
)

# OpenCV's warpAffine resolves source coordinates to 1/2**INTER_BITS pixel.
_INTER_TAB_SIZE = 32
# Images per block of elastic_transform's resamplings (64 RGB 32x32 float32 images: 786 KB).
ELASTIC_BLOCK = 64


def reference_points(size: int = IMAGE_SIZE) -> np.ndarray:
    """The three (x, y) points the original jitters: centre ± size//3 -> (3, 2) float32."""
    centre = np.float32(size // 2)
    half = size // 3
    return np.array(
        [[centre + half, centre + half], [centre + half, centre - half], [centre - half, centre - half]],
        dtype=np.float32,
    )


def affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Affine maps taking ``src`` points to ``dst`` points (``cv2.getAffineTransform``).

    Args:
        src: (3, 2) or (N, 3, 2) points (x, y) in pixels.
        dst: (N, 3, 2) points (x, y) in pixels.

    Returns:
        (N, 2, 3) float64 matrices ``M`` with ``dst = M @ [x, y, 1]``.
    """
    dst = np.asarray(dst, dtype=np.float64)
    src = np.broadcast_to(np.asarray(src, dtype=np.float64), dst.shape)
    ones = np.ones(src.shape[:-1] + (1,))
    design = np.concatenate([src, ones], axis=-1)  # (N, 3, 3): rows [x, y, 1]
    # design @ M.T = dst, solved for the (3, 2) unknowns per image.
    return np.linalg.solve(design, dst).transpose(0, 2, 1)


def invert_affine(matrices: np.ndarray) -> np.ndarray:
    """Inverse affine maps: (N, 2, 3) -> (N, 2, 3), as warpAffine inverts M."""
    linear = matrices[:, :, :2]
    inv_linear = np.linalg.inv(linear)
    inv_shift = -np.einsum("nij,nj->ni", inv_linear, matrices[:, :, 2])
    return np.concatenate([inv_linear, inv_shift[:, :, None]], axis=2)


def fold_coordinate(x: np.ndarray, size: int, *, edge_repeated: bool) -> np.ndarray:
    """Fold continuous coordinates (pixels) into one period of the reflected image.

    Bilinear interpolation of a reflected sequence is itself symmetric about the
    mirror (pixel 0 for reflect-101, -0.5 for half-sample reflect) and periodic,
    so folding the coordinate gives the same value as reflecting the indices.
    ``edge_repeated=False`` is OpenCV's reflect-101 (``...2 1 | 0 1 2 ... 31 | 30``);
    ``True`` is scipy's half-sample ``reflect`` (``...1 0 | 0 1 ... 31 | 31 30``).
    Result in ``[0, size-1]`` (reflect-101) or ``[-0.5, size-0.5]`` (edge repeated).
    """
    x = np.asarray(x, dtype=np.float64)
    if edge_repeated:
        period = 2.0 * size
        return (size - 0.5) - np.abs(np.mod(x + 0.5, period) - size)
    period = 2.0 * (size - 1)
    return (size - 1.0) - np.abs(np.mod(x, period) - (size - 1.0))


def sample_reach(rows: np.ndarray, cols: np.ndarray, h: int, w: int) -> tuple[bool, int]:
    """How :func:`sample_planes` treats these coordinates: ``(fold, pad)``.

    Coordinates more than an image away are folded into one period first
    (then a 1-pixel pad is enough); otherwise the planes are padded as far as
    the farthest one reaches (at least 1 pixel).
    """
    r0, c0 = np.floor(rows), np.floor(cols)
    lo = min(float(r0.min()), float(c0.min()))
    hi = max(float(r0.max()) - (h - 2), float(c0.max()) - (w - 2))
    if -lo > h or hi > h:
        return True, 1
    return False, int(max(1.0, -lo, hi))


def sample_planes(
    planes: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    edge_repeated: bool,
    reach: tuple[bool, int] | None = None,
) -> np.ndarray:
    """Bilinear samples of channel planes, each image at its own coordinates, borders reflected.

    The planes are reflect-padded just far enough for the coordinates (which
    are folded first only when they lie more than an image away), so each
    sample is four flat gathers per channel and three lerps over long
    contiguous runs: no per-pixel Python and no strided inner loops.

    Args:
        planes: (C, N, H, W) float32.
        rows, cols: (N, H, W) float64 source coordinates in pixels (row, column).
        edge_repeated: border rule, see :func:`fold_coordinate`.
        reach: :func:`sample_reach` of these coordinates, or of a batch they are a
            block of (so that every block is treated as the whole batch is); None: computed here.

    Returns:
        (C, N, H, W) float32.
    """
    c, n, h, w = planes.shape
    fold, pad = sample_reach(rows, cols, h, w) if reach is None else reach
    if fold:  # far outside: fold, so the padding stays within one image
        rows = fold_coordinate(rows, h, edge_repeated=edge_repeated)
        cols = fold_coordinate(cols, w, edge_repeated=edge_repeated)
    r0, c0 = np.floor(rows), np.floor(cols)
    fr = (rows - r0).astype(np.float32).reshape(-1)
    fc = (cols - c0).astype(np.float32).reshape(-1)
    # numpy's "symmetric" is scipy's reflect (edge repeated), its "reflect" is OpenCV's reflect-101.
    padded = np.pad(
        planes, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="symmetric" if edge_repeated else "reflect"
    )
    hp, wp = padded.shape[2:]
    flat = padded.reshape(c, -1)  # (C, N·Hp·Wp)
    index = (np.arange(n)[:, None, None] * hp + (r0.astype(np.intp) + pad)) * wp + (c0.astype(np.intp) + pad)
    index = index.reshape(-1)  # (N·H·W,) flat index of each sample's top-left neighbour
    top, top_right = np.take(flat, index, axis=1), np.take(flat, index + 1, axis=1)
    bottom, bottom_right = np.take(flat, index + wp, axis=1), np.take(flat, index + wp + 1, axis=1)
    # a + (b - a)·f in place: the same lerp as a·(1 - f) + b·f up to float32 rounding, with no temporaries.
    top_right -= top
    top_right *= fc
    top += top_right
    bottom_right -= bottom
    bottom_right *= fc
    bottom += bottom_right
    bottom -= top
    bottom *= fr
    top += bottom
    return top.reshape(c, n, h, w)


def sample_bilinear(
    images: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, edge_repeated: bool
) -> np.ndarray:
    """:func:`sample_planes` for HWC batches: (N, H, W, C) float32 in and out."""
    planes = np.ascontiguousarray(
        images.transpose(3, 0, 1, 2), dtype=np.float32
    )  # (N, H, W, C) -> (C, N, H, W)
    return np.ascontiguousarray(
        sample_planes(planes, rows, cols, edge_repeated=edge_repeated).transpose(1, 2, 3, 0)
    )


def affine_source_coordinates(matrices: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Where ``cv2.warpAffine`` reads each destination pixel: (rows, cols), each (N, H, W) float64.

    The inverse map applied to the pixel grid, rounded to 1/32 pixel as
    OpenCV's fixed-point remap does.

    Args:
        matrices: (N, 2, 3) forward maps (source -> destination, (x, y) pixels).
    """
    inverse = invert_affine(matrices)  # destination -> source
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    src_x = (
        inverse[:, 0, 0, None, None] * xs + inverse[:, 0, 1, None, None] * ys + inverse[:, 0, 2, None, None]
    )
    src_y = (
        inverse[:, 1, 0, None, None] * xs + inverse[:, 1, 1, None, None] * ys + inverse[:, 1, 2, None, None]
    )
    src_x = np.floor(src_x * _INTER_TAB_SIZE + 0.5) / _INTER_TAB_SIZE
    src_y = np.floor(src_y * _INTER_TAB_SIZE + 0.5) / _INTER_TAB_SIZE
    return src_y, src_x


def warp_affine(images: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """``cv2.warpAffine(img, M, (W, H), borderMode=BORDER_REFLECT_101)`` per image.

    Args:
        images: (N, H, W, C) float32 on any scale.
        matrices: (N, 2, 3) forward maps (source -> destination, (x, y) pixels).

    Returns:
        (N, H, W, C) float32, bilinear, source positions rounded to 1/32 pixel.
    """
    rows, cols = affine_source_coordinates(matrices, *images.shape[1:3])
    return sample_bilinear(images, rows, cols, edge_repeated=False)


def displacement_fields(noise: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
    """Smooth displacements: Gaussian(sigma, reflect, truncate 3) of ``noise`` × alpha.

    Args:
        noise: (N, 2, H, W) draws of U(-1, 1) for (dx, dy).
        alpha: scale in pixels; sigma: smoothing in pixels (0 = none).

    Returns:
        (N, 2, H, W) float32 displacements in pixels.
    """
    h, w = noise.shape[-2:]
    rows = _ops.gaussian_matrix(sigma, h, mode="reflect", truncate=3.0)
    cols = _ops.gaussian_matrix(sigma, w, mode="reflect", truncate=3.0)
    smooth = rows @ noise @ cols.T  # scipy's gaussian_filter as two small matrices
    return (smooth * alpha).astype(np.float32)


def elastic_transform(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """CIFAR-10-C elastic transform of a batch.

    Args:
        images: (N, 32, 32, 3) uint8 HWC.
        severity: 1..5.
        rng: source of the jitter (N, 3, 2) and of the noise fields (N, 2, 32, 32).

    Returns:
        (N, 32, 32, 3) uint8, truncated from ``clip(x, 0, 1) * 255``.
    """
    _ops.check_rgb_batch(images, severity)
    alpha, sigma, jitter = ELASTIC_PARAMS[severity - 1]
    n, h, w, _ = images.shape
    # Channel planes (C, N, H, W) throughout, so both resamplings run over contiguous runs.
    planes = np.ascontiguousarray(images.transpose(3, 0, 1, 2), dtype=np.float32) / np.float32(255)

    src = reference_points(min(h, w))
    dst = src + rng.uniform(-jitter, jitter, size=(n, 3, 2)).astype(np.float32)
    rows, cols = affine_source_coordinates(affine_from_points(src, dst), h, w)
    fields = displacement_fields(rng.uniform(-1.0, 1.0, size=(n, 2, h, w)), alpha, sigma)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)  # the original's integer grid + float32 field -> float64
    rows2, cols2 = ys + fields[:, 1], xs + fields[:, 0]
    # Both resamplings a block of images at a time, so their gathers and lerps run in the CPU
    # cache; each block is folded and padded as the whole batch is, so the values are the same.
    reach, reach2 = sample_reach(rows, cols, h, w), sample_reach(rows2, cols2, h, w)
    out = np.empty(images.shape, dtype=np.uint8)
    for lo in range(0, n, ELASTIC_BLOCK):
        block = slice(lo, lo + ELASTIC_BLOCK)
        warped = sample_planes(planes[:, block], rows[block], cols[block], edge_repeated=False, reach=reach)
        warped = sample_planes(warped, rows2[block], cols2[block], edge_repeated=True, reach=reach2)
        warped = np.clip(warped, 0, 1, out=warped) * np.float32(255)
        out[block] = warped.transpose(1, 2, 3, 0)  # (C, n, H, W) -> (n, H, W, C), truncated to uint8
    return out
