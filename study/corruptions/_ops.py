"""Shared image operations for the CIFAR-10-C corruptions, reproducing the
libraries the original generator called (scipy/scikit-image Gaussian blur,
scikit-image HSV, OpenCV's small Gaussian kernels, ImageMagick-6 motion blur,
scipy's clipped zoom) with numpy only, vectorised over a batch; the scipy
filters they need are repeated bit for bit in ``_filters``.

Conventions: a batch is ``(N, H, W)`` or ``(N, H, W, C)``; spatial filters act
on axes 1 and 2 only. Float arrays keep the scale they come in (0-1 or
0-255) unless a function says otherwise. Separable linear filters are applied
as two small ``(size, size)`` matrices (one per spatial axis) built by running
scipy's 1-D filter (``_filters.correlate1d``) on an identity matrix, so the
border handling is exactly scipy's and a whole batch costs two matrix products.

Public helpers (B2 and the corruptions modules rely on these names):

- ``gaussian_blur(images, sigma, mode="nearest", truncate=4.0)``: scipy /
  skimage ``gaussian`` over H and W only (scipy's, whole batch at once).
- ``gaussian_matrix(sigma, size, mode, truncate)``, ``axis_filter_matrix``,
  ``apply_separable(images, rows, cols)``: the building blocks of the above.
- ``cv2_gaussian_kernel(ksize, sigma)``: ``cv2.getGaussianKernel`` (float32).
- ``correlate2d(images, kernel, mode="mirror")``: small 2-D kernel, same size
  output, as ``cv2.filter2D`` (reflect-101 = scipy ``mirror``).
- ``motion_blur(images, radius, sigma, angles_deg)``: ImageMagick-6
  ``MotionBlurImage`` on float images, one angle per image, no quantisation.
- ``imagemagick_motion_blur(images_uint8, radius, sigma, angles_deg)``: the
  same with ImageMagick Q16's quantisation and 8-bit PNG output (uint8 out),
  as the original's motion_blur and snow ran it.
- ``clipped_zoom(images, zoom_factor)``: the original ``clipped_zoom`` (centre
  crop ``ceil(H/z)``, ``scipy.ndimage.zoom`` order 1, centre trim to H).
- ``zoom_matrix(size, zoom_factor)``: that zoom as a ``(size, size)`` matrix.
- ``rgb_to_hsv(rgb)``, ``hsv_to_rgb(hsv)``: scikit-image's formulas, last
  axis = 3 channels, floats on 0-1; ``rgb_to_hsv_planes``, ``hsv_to_rgb_planes``
  the same on separate channel planes, and ``adjust_hsv(images, adjust)`` the
  uint8 round trip that brightness and saturate make (in ``_colour``, named here too).
- ``to_uint8(x)``: the original's ``np.uint8(x)`` (truncation) of 0-255 floats.
- ``check_rgb_batch(images, severity)``: the input check of the weather and
  elastic corruptions.
- ``severity_params(name, table, severity)``: ``table[severity - 1]`` with a clear ValueError.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from study.corruptions import _filters
from study.corruptions._colour import adjust_hsv, hsv_to_rgb, hsv_to_rgb_planes, rgb_to_hsv, rgb_to_hsv_planes

__all__ = [
    "adjust_hsv",
    "apply_separable",
    "axis_filter_matrix",
    "check_rgb_batch",
    "clipped_zoom",
    "correlate2d",
    "cv2_gaussian_kernel",
    "gaussian_blur",
    "gaussian_matrix",
    "gaussian_weights",
    "hsv_to_rgb",
    "hsv_to_rgb_planes",
    "imagemagick_motion_blur",
    "motion_blur",
    "motion_blur_offsets",
    "rgb_to_hsv",
    "rgb_to_hsv_planes",
    "severity_params",
    "to_uint8",
    "zoom_matrix",
]


def to_uint8(x: np.ndarray) -> np.ndarray:
    """``np.uint8(x)`` as the original generator did it: truncation, not rounding.

    Args:
        x: float array already clipped to 0-255.
    """
    return x.astype(np.uint8)


def check_rgb_batch(images: np.ndarray, severity: int) -> None:
    """ValueError unless ``images`` is a uint8 ``(N, H, W, 3)`` array and ``severity`` is 1..5."""
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[-1] != 3
    ):
        shape = getattr(images, "shape", None)
        dtype = getattr(images, "dtype", None)
        raise ValueError(f"images must be a uint8 array of shape (N, H, W, 3), got {dtype} {shape}")
    if isinstance(severity, bool) or severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity must be one of 1, 2, 3, 4, 5, got {severity!r}")


def _check_batch(images: np.ndarray) -> None:
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got shape {images.shape}")


# --- separable linear filters -------------------------------------------------------------


@lru_cache(maxsize=256)
def axis_filter_matrix(weights: tuple[float, ...], size: int, mode: str = "nearest") -> np.ndarray:
    """The ``(size, size)`` matrix ``M`` with ``M @ v == scipy.ndimage.correlate1d(v, weights, mode=mode)``.

    Built by filtering the identity, so borders follow scipy exactly
    (``nearest``, ``mirror`` = OpenCV reflect-101, ``reflect``, ``wrap``,
    ``constant`` with 0). Read-only and cached.
    """
    eye = np.eye(size)
    m = _filters.correlate1d(eye, np.asarray(weights, dtype=np.float64), axis=0, mode=mode)
    m.setflags(write=False)
    return m


def gaussian_weights(sigma: float, truncate: float = 4.0) -> tuple[float, ...]:
    """scipy's 1-D Gaussian: ``exp(-x²/2σ²)``, ``|x| <= int(truncate·σ + 0.5)``, normalised."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x * x)
    return tuple((phi / phi.sum()).tolist())


def gaussian_matrix(sigma: float, size: int, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """``(size, size)`` matrix of ``scipy.ndimage.gaussian_filter1d(sigma, mode, truncate)``."""
    if sigma <= 0:
        return np.eye(size)
    return axis_filter_matrix(gaussian_weights(sigma, truncate), size, mode)


def apply_separable(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``out[n, i, j] = Σ_p Σ_q rows[i, p] · cols[j, q] · images[n, p, q]`` (per channel).

    Args:
        images: float ``(N, H, W)`` or ``(N, H, W, C)``.
        rows: ``(H_out, H)`` operator on axis 1; ``cols``: ``(W_out, W)`` on axis 2.

    Returns:
        float64 ``(N, H_out, W_out[, C])``.
    """
    _check_batch(images)
    x = np.asarray(images, dtype=np.float64)
    # (N, H, W, ...) -> (N, W, ..., H_out) -> (N, ..., H_out, W_out): two big GEMMs, no per-image loop.
    y = np.tensordot(x, rows, axes=([1], [1]))
    y = np.tensordot(y, cols, axes=([1], [1]))
    if x.ndim == 4:
        return np.ascontiguousarray(np.moveaxis(y, 1, 3))  # (N, C, H, W) -> (N, H, W, C)
    return np.ascontiguousarray(y)


def gaussian_blur(
    images: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0
) -> np.ndarray:
    """skimage ``gaussian(x, sigma, channel_axis=-1)`` = scipy ``gaussian_filter`` over H and W.

    scipy's filter with zero sigma on the batch (and channel) axis, which it
    skips, as ``_filters.gaussian_filter`` repeats it bit for bit: the whole
    batch at once, and no scipy import in a generation worker.

    Args:
        images: float ``(N, H, W[, C])``, any scale. sigma in pixels.

    Returns:
        float64, same shape.
    """
    _check_batch(images)
    x = np.asarray(images, dtype=np.float64)
    sigmas = (0.0, float(sigma), float(sigma)) + (0.0,) * (x.ndim - 3)
    return _filters.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def cv2_gaussian_kernel(ksize: int, sigma: float) -> np.ndarray:
    """``cv2.getGaussianKernel(ksize, sigma, CV_32F)``: float32 ``(ksize,)``, sums to 1.

    OpenCV evaluates ``exp(-x²/2σ²)`` at ``x = i - (ksize-1)/2``, stores each
    term as float32, sums those, and scales by the reciprocal of the sum.
    """
    if ksize % 2 != 1 or ksize < 1:
        raise ValueError(f"ksize must be a positive odd integer, got {ksize}")
    if sigma <= 0:
        sigma = ((ksize - 1) * 0.5 - 1) * 0.3 + 0.8  # OpenCV's default for sigma <= 0
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) * 0.5
    terms = np.exp(-(x * x) / (2.0 * sigma * sigma)).astype(np.float32)
    total = float(np.sum(terms.astype(np.float64)))
    return (terms.astype(np.float64) * (1.0 / total)).astype(np.float32)


def correlate2d(images: np.ndarray, kernel: np.ndarray, mode: str = "mirror") -> np.ndarray:
    """Same-size 2-D correlation of each image (and channel) with ``kernel``, as ``cv2.filter2D``.

    The kernel is split into rank-1 terms by SVD, so the batch costs a few
    separable matrix products instead of a per-tap loop; for the small,
    symmetric kernels used here that is exact to float64 rounding.

    Args:
        images: float ``(N, H, W[, C])``. kernel: ``(kh, kw)`` with odd sides, centred.
        mode: scipy border mode (``mirror`` = OpenCV's default reflect-101).

    Returns:
        float64, same shape as images.
    """
    _check_batch(images)
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] % 2 != 1 or k.shape[1] % 2 != 1:
        raise ValueError(f"kernel must be 2-D with odd sides, got shape {k.shape}")
    u, s, vt = np.linalg.svd(k)
    rank = int(np.sum(s > s[0] * 1e-12)) if s[0] > 0 else 0
    x = np.asarray(images, dtype=np.float64)
    n, h, w = x.shape[:3]
    terms = [
        (_filter_matrix(u[:, r] * s[r], h, mode).T, _filter_matrix(vt[r], w, mode).T) for r in range(rank)
    ]  # (weights along H, along W) of each rank-1 term, as right-hand operands
    out = np.empty(x.shape, dtype=np.float64)
    # Blocks of images, each through all its products while it is in the CPU cache. BLAS gives
    # every output the same sum whatever the number of rows around it, for the tall products
    # made here (each block has at least CORRELATE_BLOCK images, the last one takes the rest).
    starts = list(range(0, max(n - CORRELATE_BLOCK, 0) + 1, CORRELATE_BLOCK)) if n else []
    for lo, hi in zip(starts, [*starts[1:], n]):
        out[lo:hi] = _correlate_block(x[lo:hi], terms)
    return out


# Images per block of correlate2d (an RGB 32x32 float64 block of 32 images is 786 KB).
CORRELATE_BLOCK = 32


def _correlate_block(x: np.ndarray, terms: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``Σ_r apply_separable(x, rows_r, cols_r)`` of a float64 batch, bit for bit.

    Each term makes the two products np.tensordot makes, with the operands it
    lays out. The first one's layout of ``x``, ``(N, W, ..., H)`` as rows, is
    the same for every term, so it is made once; the sum is kept as
    ``(N, ..., H, W)`` and moved back once at the end. Same products, same sums.
    """
    n, h, w = x.shape[:3]
    order = (0, 2, *range(3, x.ndim), 1)
    lhs = x.transpose(order).reshape(-1, h)  # (N·W·C, H)
    inner = (n, w, *x.shape[3:], h)
    out = np.zeros((n, *x.shape[3:], h, w), dtype=np.float64)
    for rows_t, cols_t in terms:
        y = np.dot(lhs, rows_t).reshape(inner)  # (N, W, ..., H_out)
        y = y.transpose(order).reshape(-1, w)  # (N·...·H_out, W)
        out += np.dot(y, cols_t).reshape(out.shape)
    return np.moveaxis(out, 1, -1) if x.ndim == 4 else out  # (N, C, H, W) -> (N, H, W, C)


def _filter_matrix(weights: np.ndarray, size: int, mode: str) -> np.ndarray:
    return axis_filter_matrix(tuple(float(v) for v in weights), size, mode)


# --- ImageMagick-6 motion blur ------------------------------------------------------------


def _kernel_width(radius: float) -> int:
    # GetOptimalKernelWidth1D for radius > 0: 2·ceil(radius) + 1 taps.
    if not radius > 1e-12:
        raise ValueError(
            "motion blur radius must be > 0 (ImageMagick's sigma-derived width is not supported), "
            f"got {radius}"
        )
    return int(2.0 * math.ceil(radius) + 1.0)


def motion_blur_offsets(radius: float, angles_deg: np.ndarray) -> np.ndarray:
    """Integer sample offsets of ``MotionBlurImage``: ``(N, width, 2)`` as (dy, dx).

    ImageMagick 6 sets ``point = width·(sin a, cos a)`` and, for tap ``i``,
    ``dx = ceil(i·cos a − 0.5)``, ``dy = ceil(i·sin a − 0.5)`` (via
    ``i·point/hypot(point)``, reproduced literally so ties round the same way).
    Angle 0 blurs towards +x (right); positive angles towards +y (down).
    """
    width = _kernel_width(radius)
    a = np.pi * np.asarray(angles_deg, dtype=np.float64) / 180.0  # DegreesToRadians
    px = width * np.sin(a)
    py = width * np.cos(a)
    norm = np.hypot(px, py)
    i = np.arange(width, dtype=np.float64)
    dx = np.ceil(i[None, :] * py[:, None] / norm[:, None] - 0.5)
    dy = np.ceil(i[None, :] * px[:, None] / norm[:, None] - 0.5)
    return np.stack([dy, dx], axis=-1).astype(np.int64)


def _motion_kernel(radius: float, sigma: float) -> np.ndarray:
    width = _kernel_width(radius)
    s = sigma if abs(sigma) > 1e-12 else 1.0  # MagickSigma
    i = np.arange(width, dtype=np.float64)
    k = np.exp(-(i * i) / (2.0 * s * s)) / (math.sqrt(2.0 * math.pi) * s)
    return k / k.sum()


def motion_blur(images: np.ndarray, radius: float, sigma: float, angles_deg) -> np.ndarray:
    """ImageMagick-6 ``MotionBlurImage`` on float images, one angle per image.

    ``out[y, x] = Σ_i k_i · img[clamp(y + dy_i), clamp(x + dx_i)]`` with the
    one-sided Gaussian ``k_i ∝ exp(−i²/2σ²)``, ``i = 0 .. 2·ceil(radius)``,
    offsets from ``motion_blur_offsets`` and edge (clamp) virtual pixels.
    Images that share an offset pattern are blurred together with slices of
    one edge-padded array, so there is no per-pixel gather.

    Args:
        images: float ``(N, H, W[, C])`` in any scale. radius, sigma: pixels.
        angles_deg: scalar or ``(N,)`` angles in degrees.

    Returns:
        float64, same shape, unquantised.
    """
    _check_batch(images)
    x = np.asarray(images, dtype=np.float64)
    n, h, w = x.shape[:3]
    angles = np.broadcast_to(np.asarray(angles_deg, dtype=np.float64), (n,))
    kernel = _motion_kernel(radius, sigma)
    offsets = motion_blur_offsets(radius, angles)  # (N, width, 2)
    out = np.empty_like(x)
    if n == 0:
        return out
    patterns, inverse = np.unique(offsets.reshape(n, -1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(patterns) + 1))
    tail = [(0, 0)] * (x.ndim - 3)
    for g, flat in enumerate(patterns):
        idx = order[bounds[g] : bounds[g + 1]]
        taps = flat.reshape(-1, 2)
        pad = int(np.abs(taps).max())
        block = x[idx]
        padded = np.pad(block, [(0, 0), (pad, pad), (pad, pad)] + tail, mode="edge") if pad else block
        acc = (
            kernel[0]
            * padded[:, pad + taps[0, 0] : pad + taps[0, 0] + h, pad + taps[0, 1] : pad + taps[0, 1] + w]
        )
        for i in range(1, len(kernel)):  # ascending taps, as ImageMagick accumulates
            dy, dx = taps[i]
            acc += kernel[i] * padded[:, pad + dy : pad + dy + h, pad + dx : pad + dx + w]
        out[idx] = acc
    return out


def imagemagick_motion_blur(images: np.ndarray, radius: float, sigma: float, angles_deg) -> np.ndarray:
    """``MotionBlurImage`` as the original ran it: 8-bit PNG in, ImageMagick Q16, 8-bit PNG out.

    Values are scaled to 16 bits (×257), blurred, rounded to the 16-bit
    quantum by ``ClampToQuantum``, and brought back to 8 bits as
    ``floor(q / 257)``. The truncation is measured, not read from
    ImageMagick's source (whose ``ScaleQuantumToChar`` rounds): replaying the
    reference's seeded draws, it reproduces the reference's snow files
    (severities 1-3) bit for bit, and its motion_blur statistics (mean signed
    change −0.53…−0.64 against the reference's −0.56…−0.65, fractions of
    values and pixels changed to 0.1% at every severity), while rounding to
    the nearest 8-bit level brightens snow by ~0.5% of the mean and leaves
    motion_blur's mean change near 0. motion_blur (RGB) and snow (grayscale
    layers) both use it.

    Args:
        images: uint8 ``(N, H, W[, C])``. radius, sigma: pixels. angles_deg: scalar or ``(N,)``.

    Returns:
        uint8, same shape.
    """
    if images.dtype != np.uint8:
        raise ValueError(f"imagemagick_motion_blur needs uint8 images, got {images.dtype}")
    q = motion_blur(images * 257.0, radius, sigma, angles_deg)
    np.clip(q, 0.0, 65535.0, out=q)  # ClampToQuantum: clamp, then round half up
    q += 0.5
    np.floor(q, out=q)
    # q is a whole number of quanta, so q / 257 never rounds up to the next integer:
    # truncation is floor(q / 257).
    q /= 257.0
    return q.astype(np.uint8)


# --- zoom ---------------------------------------------------------------------------------


def _zoom_1d(size: int, zoom_factor: float) -> tuple[int, int, int]:
    ch = int(np.ceil(size / zoom_factor))
    top = (size - ch) // 2
    zoomed = int(round(ch * zoom_factor))  # scipy.ndimage.zoom's output length
    trim = (zoomed - size) // 2
    return ch, top, trim


@lru_cache(maxsize=256)
def zoom_matrix(size: int, zoom_factor: float) -> np.ndarray:
    """``(size, size)`` matrix of the original ``clipped_zoom`` along one axis.

    Centre crop ``ceil(size/z)``, ``scipy.ndimage.zoom(order=1)`` (which maps
    output ``o`` to input ``o·(in−1)/(out−1)``), centre trim back to ``size``.
    Bilinear zoom is separable, so the 2-D zoom is ``Z @ img @ Zᵀ``. Read-only, cached.
    """
    ch, top, trim = _zoom_1d(size, zoom_factor)
    eye = np.eye(size)[top : top + ch]  # (ch, size): crop as a matrix
    zoomed = _filters.zoom_linear(eye, zoom_factor)  # (round(ch·z), size), as scipy.ndimage.zoom
    m = np.ascontiguousarray(zoomed[trim : trim + size])
    if m.shape != (size, size):
        raise ValueError(
            f"zoom factor {zoom_factor} shrinks a {size}-pixel axis; clipped_zoom needs factor >= 1"
        )
    m.setflags(write=False)
    return m


def clipped_zoom(images: np.ndarray, zoom_factor: float) -> np.ndarray:
    """The original ``clipped_zoom`` on a batch: float64 ``(N, H, W[, C])`` with H == W."""
    _check_batch(images)
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"clipped_zoom needs square images, got {images.shape[1]}x{images.shape[2]}")
    z = zoom_matrix(images.shape[1], float(zoom_factor))
    return apply_separable(images, z, z)


# --- parameters ---------------------------------------------------------------------------


def severity_params(name: str, table: tuple, severity: int):
    """``table[severity - 1]``, or a ValueError naming the corruption and the allowed severities."""
    if (
        isinstance(severity, bool)
        or not isinstance(severity, (int, np.integer))
        or not 1 <= severity <= len(table)
    ):
        raise ValueError(f"{name}: severity must be an integer 1..{len(table)}, got {severity!r}")
    return table[int(severity) - 1]
