"""scipy.ndimage's filters that the corruptions use, in numpy, bit for bit.

A generation worker that imports ``scipy.ndimage`` pays ~0.25 CPU s for it
(scipy's array-API layer pulls in ``numpy.testing``, ``numpy.f2py`` and more),
more than most corruption units cost. These functions repeat scipy's C loops
(``ni_filters.c``, ``ni_interpolation.c``) with the same float operations in
the same order, whole batch at once, so their results are scipy's to the bit;
``tests/unit/test_corruption_filters.py`` holds them to it against scipy itself.

- ``correlate1d(x, weights, axis, mode)``: ``scipy.ndimage.correlate1d``.
- ``gaussian_filter(x, sigmas, mode, truncate)``: ``scipy.ndimage.gaussian_filter``.
- ``uniform_filter(x, size, mode)``: ``scipy.ndimage.uniform_filter``.
- ``zoom_linear(x, factor)``: ``scipy.ndimage.zoom(x, (factor, 1), order=1)`` of a 2-D array.
- ``connected_to(candidates, seeds)``: ``candidates`` pixels 8-connected (within
  each image of an ``(N, H, W)`` batch) to a seed, as ``scipy.ndimage.label`` would group them.

Modes are scipy's names: ``nearest``, ``reflect`` (edge repeated), ``mirror``
(edge not repeated, OpenCV's reflect-101), ``wrap``, ``constant`` (0).
"""

from __future__ import annotations

import numpy as np

__all__ = ["connected_to", "correlate1d", "gaussian_filter", "uniform_filter", "zoom_linear"]

_DBL_EPSILON = float(np.finfo(np.float64).eps)
# scipy border mode -> numpy.pad mode
_PAD = {
    "nearest": "edge",
    "reflect": "symmetric",
    "mirror": "reflect",
    "wrap": "wrap",
    "constant": "constant",
}


def _padded(x: np.ndarray, axis: int, before: int, after: int, mode: str) -> np.ndarray:
    if mode not in _PAD:
        raise ValueError(f"mode: {mode!r}; allowed: {', '.join(_PAD)}")
    widths = [(0, 0)] * x.ndim
    widths[axis] = (before, after)
    return np.pad(x, widths, mode=_PAD[mode])  # type: ignore[call-overload]  # mode is one of _PAD's values


def _tap(p: np.ndarray, axis: int, start: int, length: int) -> np.ndarray:
    """``p[..., start:start + length, ...]`` along ``axis``: the input shifted by one filter tap."""
    index = [slice(None)] * p.ndim
    index[axis] = slice(start, start + length)
    return p[tuple(index)]


def _symmetry(w: np.ndarray) -> int:
    """scipy's test: 1 if mirrored pairs agree to ``DBL_EPSILON``, -1 if they cancel so, else 0."""
    size1 = w.size // 2
    if not w.size & 1:
        return 0
    pairs = [(w[size1 + i], w[size1 - i]) for i in range(1, size1 + 1)]
    if all(abs(a - b) <= _DBL_EPSILON for a, b in pairs):
        return 1
    if all(abs(a + b) <= _DBL_EPSILON for a, b in pairs):
        return -1
    return 0


def _correlate(x: np.ndarray, w: np.ndarray, symmetric: int, axis: int, mode: str) -> np.ndarray:
    """One ``correlate1d`` pass of float64 ``x``; ``symmetric`` from :func:`_symmetry`."""
    size = w.size
    size1 = size // 2
    size2 = size - size1 - 1
    length = x.shape[axis]
    if size == 1:
        return x * w[0]
    p = _padded(x, axis, size1, size2, mode)
    if symmetric:
        out = np.multiply(_tap(p, axis, size1, length), w[size1])
        pair = np.empty_like(out)
        combine = np.add if symmetric > 0 else np.subtract
        for j in range(size1, 0, -1):  # jj = -size1 .. -1 in scipy's loop
            combine(_tap(p, axis, size1 - j, length), _tap(p, axis, size1 + j, length), out=pair)
            pair *= w[size1 - j]
            out += pair
        return out
    out = np.multiply(_tap(p, axis, size1 + size2, length), w[size - 1])  # iline[size2] · fw[size2]
    term = np.empty_like(out)
    for k in range(size - 1):  # jj = -size1 .. size2 - 1
        np.multiply(_tap(p, axis, k, length), w[k], out=term)
        out += term
    return out


# Images per block when a batch is filtered along its other axes: small enough that a
# block's passes run in the CPU cache (16 RGB 32x32 float64 images are 393 KB).
_BLOCK_BYTES = 1 << 19


def correlate1d(x: np.ndarray, weights, axis: int, mode: str = "reflect") -> np.ndarray:
    """``scipy.ndimage.correlate1d(x, weights, axis, mode=mode)`` (origin 0), float64 out.

    scipy treats weights as symmetric (or antisymmetric) when their mirrored
    pairs agree to ``DBL_EPSILON`` and then sums the pairs first,
    ``w[c]·x[i] + Σ_{j=c..1} (x[i-j] ± x[i+j])·w[c-j]``; otherwise
    ``w[last]·x[i+last] + Σ_{k<last} w[k]·x[i+k-c]``, from the first tap.
    Both are done here in that order, on float64.

    Args:
        x: any float or integer array (computed in float64, as scipy's line buffers are).
        weights: 1-D, any length >= 1.
        axis: the axis filtered. mode: border rule (module docstring).

    Returns:
        float64, the shape of ``x``.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights must be 1-D and non-empty, got shape {w.shape}")
    if mode not in _PAD:
        raise ValueError(f"mode: {mode!r}; allowed: {', '.join(_PAD)}")
    x = np.asarray(x, dtype=np.float64)
    axis = axis % x.ndim
    return _correlate(x, w, _symmetry(w), axis, mode)


def gaussian_kernel(sigma: float, truncate: float) -> np.ndarray:
    """scipy's ``_gaussian_kernel1d(sigma, 0, int(truncate·sigma + 0.5))``, in its own operations."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x**2)
    return phi / phi.sum()


def gaussian_filter(x: np.ndarray, sigmas, mode: str = "reflect", truncate: float = 4.0) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)`` (order 0).

    One ``correlate1d`` per axis whose sigma exceeds 1e-15, in axis order, each
    pass stored in ``x``'s dtype (float32 stays float32 between passes, as
    scipy's output array does). A batch not blurred along its first axis is
    filtered a block of images at a time, each block through all its passes
    while it is in the CPU cache (the same operations, in the same order).

    Args:
        x: float32 or float64 array. sigmas: one per axis, pixels.

    Returns:
        an array of ``x``'s dtype and shape.
    """
    x = np.asarray(x)
    sigmas = tuple(float(s) for s in sigmas)
    if len(sigmas) != x.ndim:
        raise ValueError(f"sigmas: {len(sigmas)} values for a {x.ndim}-D array")
    if mode not in _PAD:
        raise ValueError(f"mode: {mode!r}; allowed: {', '.join(_PAD)}")
    passes = []
    for axis, sigma in enumerate(sigmas):
        if sigma > 1e-15:
            weights = gaussian_kernel(sigma, truncate)[::-1]
            passes.append((axis, weights, _symmetry(weights)))
    out = np.empty_like(x)
    if x.ndim and x.size and not any(axis == 0 for axis, _, _ in passes):
        step = max(1, _BLOCK_BYTES // (x[:1].size * 8))  # whole images per block
        spans: list[tuple[int | None, int | None]] = [(k, k + step) for k in range(0, x.shape[0], step)]
    else:
        spans = [(None, None)]
    for lo, hi in spans:
        block = x[lo:hi]
        for axis, weights, symmetric in passes:
            block = _correlate(block.astype(np.float64, copy=False), weights, symmetric, axis, mode)
            block = block.astype(x.dtype, copy=False)
        out[lo:hi] = block
    return out


def uniform_filter(x: np.ndarray, sizes, mode: str = "reflect") -> np.ndarray:
    """``scipy.ndimage.uniform_filter(x, sizes, mode=mode)`` of a float64 array, float64 out.

    scipy's running sum per axis (sizes > 1, in axis order): the window's sum,
    then ``+ (entering − leaving)`` for each next output, each output that sum
    divided by the size.
    """
    out = np.asarray(x, dtype=np.float64)
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) != out.ndim:
        raise ValueError(f"sizes: {len(sizes)} values for a {out.ndim}-D array")
    for axis, size in enumerate(sizes):
        if size <= 1:
            continue
        size1 = size // 2
        p = _padded(out, axis, size1, size - size1 - 1, mode)
        p = np.moveaxis(p, axis, 0)
        length = p.shape[0] - size + 1
        result = np.empty((length,) + p.shape[1:], dtype=np.float64)
        tmp = np.zeros(p.shape[1:], dtype=np.float64)
        for k in range(size):
            tmp += p[k]
        np.divide(tmp, size, out=result[0])
        for k in range(1, length):
            tmp += p[k + size - 1] - p[k - 1]
            np.divide(tmp, size, out=result[k])
        out = np.moveaxis(result, 0, axis)
    return np.ascontiguousarray(out)


def zoom_linear(x: np.ndarray, factor: float) -> np.ndarray:
    """``scipy.ndimage.zoom(x, (factor, 1.0), order=1)`` of a float64 2-D array (mode ``constant``, 0).

    Output row ``o`` samples input row ``c = o·(H−1)/(H_out−1)``, ``H_out = round(H·factor)``:
    ``x[⌊c⌋]·w0 + x[⌊c⌋+1]·w1`` with ``w0 = 1 − (c − ⌊c⌋)`` and ``w1 = 1 − w0`` (scipy's
    spline weights, which make the last one up to 1); the neighbour past the last row
    is mirrored, and a row whose ``c`` rounds past ``H − 1`` is the constant 0.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"zoom_linear needs a 2-D array, got shape {x.shape}")
    h = x.shape[0]
    h_out = int(round(h * float(factor)))
    ratio = (h - 1) / (h_out - 1) if h_out > 1 else 1.0
    coords = np.arange(h_out, dtype=np.float64) * ratio
    start = np.floor(coords)
    w0 = 1.0 - (coords - start)
    w1 = 1.0 - w0
    lo = start.astype(np.intp)
    hi = lo + 1
    hi = np.where(hi > h - 1, 2 * (h - 1) - hi, hi)  # mirrored, as scipy's edge offsets
    inside = coords <= h - 1
    lo, hi = np.where(inside, lo, 0), np.where(inside, np.maximum(hi, 0), 0)
    out = x[lo] * w0[:, None] + x[hi] * w1[:, None]
    out[~inside] = 0.0
    return out


def connected_to(candidates: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The pixels of ``candidates`` 8-connected, within their own image, to a pixel of ``seeds``.

    What ``label(candidates, 8-connected per image)`` followed by "keep the
    labels that hold a seed" gives, grown from the seeds one ring of
    neighbours at a time (a 3×3 dilation, as a 3-wide then a 3-tall one)
    until nothing changes, each round over the images that still grew.

    Args:
        candidates: bool ``(N, H, W)``. seeds: bool ``(N, H, W)``.

    Returns:
        bool ``(N, H, W)``.
    """
    reached = seeds & candidates
    active = np.flatnonzero(reached.any(axis=(1, 2)))  # images that grew in the last round
    frontier = reached[active]
    while active.size:
        grown = frontier.copy()
        grown[:, :, 1:] |= frontier[:, :, :-1]
        grown[:, :, :-1] |= frontier[:, :, 1:]
        wide = grown.copy()
        grown[:, 1:] |= wide[:, :-1]
        grown[:, :-1] |= wide[:, 1:]
        new = grown & candidates[active] & ~reached[active]
        reached[active] |= new
        grew = new.any(axis=(1, 2))
        active, frontier = active[grew], new[grew]
    return reached
