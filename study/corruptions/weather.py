"""CIFAR-10-C weather corruptions (``snow``, ``frost``, ``fog``) and the extra
``spatter``, batch-vectorised in numpy and scipy.

Each follows ``make_cifar_c.py`` of hendrycks/robustness at the CIFAR
parameters (``docs/cifar10c.md``) and matches it in distribution: the
original never seeded its draws, so only the statistics can agree. The OpenCV,
scikit-image and ImageMagick steps the original relied on are rebuilt here
(Canny, histogram equalisation, OpenCV's linear resize, the ImageMagick motion
blur through ``_ops``) so the package needs no system library. Every function
takes ``(N, 32, 32, 3)`` uint8 HWC images, a severity 1..5 and a
``numpy.random.Generator``, and returns uint8 truncated as ``np.uint8(x)``.
Frost textures ship in the package (``frost/``, see its README) so frost
works offline; they are decoded once per folder and kept in memory.
It is over 500 lines as one concern: the weather corruptions' formulas, each
a transcription of the reference generator that is checked against it.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
from pathlib import Path

import numpy as np
from PIL import Image

from study.corruptions import _filters, _ops

IMAGE_SIZE = 32

# --------------------------------------------------------------------------- parameters
# (strength, wibble decay) per severity.
FOG_PARAMS: tuple[tuple[float, float], ...] = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))
# (image weight, frost weight) per severity.
FROST_PARAMS: tuple[tuple[float, float], ...] = (
    (1.0, 0.2),
    (1.0, 0.3),
    (0.9, 0.4),
    (0.85, 0.4),
    (0.75, 0.45),
)
# (loc, scale, zoom, threshold, blur radius px, blur sigma px, blend) per severity.
SNOW_PARAMS: tuple[tuple[float, ...], ...] = (
    (0.1, 0.2, 1.0, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1.0, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
# (loc, scale, sigma px, threshold, intensity or mud sigma px, mode 0 water / 1 mud) per severity.
SPATTER_PARAMS: tuple[tuple[float, ...], ...] = (
    (0.62, 0.1, 0.7, 0.7, 0.5, 0),
    (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1.0, 0.69, 0.5, 0),
    (0.65, 0.1, 0.7, 0.69, 0.6, 1),
    (0.65, 0.1, 0.5, 0.68, 0.6, 1),
)

# Only the first five textures are ever drawn (the original's randint(5)).
FROST_FILES: tuple[str, ...] = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
FROST_ENV = "FREQSTUDY_FROST_DIR"
FROST_SCALE = 0.2

WATER_RGB = np.array([175, 238, 238], dtype=np.float32) / np.float32(255)  # pale turquoise
MUD_RGB = np.array([63, 42, 20], dtype=np.float32) / np.float32(255)  # brown
GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # cv2 RGB2GRAY (BT.601)
EMBOSS_KERNEL = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.int32)


# --------------------------------------------------------------------------- fog
def plasma_fractal(
    n: int, wibble_decay: float, rng: np.random.Generator, size: int = IMAGE_SIZE
) -> np.ndarray:
    """Diamond-square plasma fractals, min-max normalised per map.

    Each new point is the sum of its four parents / 4 + ``w * U(-w, w)``
    (the original's ``wibbledmean``); ``w`` starts at 100 and is divided by
    ``wibble_decay`` after each octave. The map wraps around (np.roll).

    Args:
        n: number of maps.
        wibble_decay: divisor of the noise amplitude per octave (> 0).
        rng: source of the uniform draws.
        size: side, a power of two.

    Returns:
        (n, size, size) float64 in [0, 1] (min 0 and max 1 per map).
    """
    if size < 2 or size & (size - 1):
        raise ValueError(f"plasma fractal size must be a power of two >= 2, got {size}")
    grid = np.zeros((n, size, size), dtype=np.float64)
    step = size
    wibble = 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        # Squares: centre of each square of corners `step` apart.
        corners = grid[:, 0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=1)
        square = square + np.roll(square, -1, axis=2)
        grid[:, half:size:step, half:size:step] = wibbled_mean(square)
        # Diamonds: midpoints of the edges, from two centres and two corners.
        centres = grid[:, half:size:step, half:size:step]
        corners = grid[:, 0:size:step, 0:size:step]
        # Summed in the original's order, (centres) + (corners), so floats round alike.
        left = (centres + np.roll(centres, 1, axis=1)) + (corners + np.roll(corners, -1, axis=2))
        grid[:, 0:size:step, half:size:step] = wibbled_mean(left)
        top = (centres + np.roll(centres, 1, axis=2)) + (corners + np.roll(corners, -1, axis=1))
        grid[:, half:size:step, 0:size:step] = wibbled_mean(top)
        step //= 2
        wibble /= wibble_decay

    grid -= grid.min(axis=(1, 2), keepdims=True)
    return grid / grid.max(axis=(1, 2), keepdims=True)


def fog(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Fog: ``(x + s·plasma)·m/(m + s)`` on 0-1, m = the clean image's maximum.

    Args:
        images: (N, 32, 32, 3) uint8. severity: 1..5. rng: draws one plasma map per image.

    Returns:
        (N, 32, 32, 3) uint8.
    """
    _ops.check_rgb_batch(images, severity)
    strength, decay = FOG_PARAMS[severity - 1]
    n, h, w, _ = images.shape
    x = images / 255.0
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    plasma = plasma_fractal(n, decay, rng, size=max(IMAGE_SIZE, 1 << (max(h, w) - 1).bit_length()))[:, :h, :w]
    x = x + strength * plasma[..., None]
    return _ops.to_uint8(np.clip(x * peak / (peak + strength), 0, 1) * 255)


# --------------------------------------------------------------------------- frost
def resize_linear_fifth(texture: np.ndarray) -> np.ndarray:
    """``cv2.resize(texture, (0, 0), fx=0.2, fy=0.2)`` with its default INTER_LINEAR.

    With the scale given as 0.2, OpenCV maps output pixel ``d`` to source
    ``(d + 0.5) / 0.2 - 0.5 = 5d + 2``, an integer, so its bilinear weights are
    exactly (1, 0): the result is every fifth pixel from offset 2 (no
    averaging; INTER_AREA is substituted only for factor 2). Output size is
    ``round(0.2 · side)``.

    Args:
        texture: (H, W, C) uint8.

    Returns:
        (round(H/5), round(W/5), C) uint8.
    """
    h, w = texture.shape[:2]
    out_h, out_w = int(round(h * FROST_SCALE)), int(round(w * FROST_SCALE))
    rows = np.minimum(5 * np.arange(out_h) + 2, h - 1)
    cols = np.minimum(5 * np.arange(out_w) + 2, w - 1)
    return np.ascontiguousarray(texture[rows][:, cols])


def packaged_frost_dir() -> Path:
    """``study/corruptions/frost/``: the textures installed with the package."""
    folder = importlib.resources.files("study.corruptions") / "frost"
    # Installs are unpacked folders (wheels, editable), never zips, so this is a real
    # path that Pillow can open and that keys the decoded-texture cache.
    return Path(str(folder))


def _check_folder(folder: Path, source: str) -> Path:
    """``folder`` when it holds every texture; else a one-line ValueError naming ``source``."""
    if not folder.is_dir():
        problem = "no such folder"
    else:
        missing = [name for name in FROST_FILES if not (folder / name).is_file()]
        if not missing:
            return folder
        problem = f"{', '.join(missing)} not found"
    raise ValueError(
        f"{source} {folder}: {problem} (needs {', '.join(FROST_FILES)} from hendrycks/robustness "
        "ImageNet-C/create_c/; leave it unset to use the textures that ship with freqstudy)"
    )


def resolve_frost_dir(frost_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the frost textures.

    Order: ``frost_dir`` (``--frost-dir`` / ``eval.frost_dir``); else
    ``$FREQSTUDY_FROST_DIR``; else the textures packaged in
    ``study/corruptions/frost/``. Nothing is downloaded: a fresh, offline
    install has frost.

    Raises:
        ValueError: a folder given by flag, key or environment lacks a texture
            (one line, naming how it was given), or the install lost its textures.
    """
    if frost_dir is not None:
        return _check_folder(Path(frost_dir).expanduser(), "--frost-dir / eval.frost_dir")
    if os.environ.get(FROST_ENV):
        return _check_folder(Path(os.environ[FROST_ENV]).expanduser(), FROST_ENV)
    folder = packaged_frost_dir()
    if any(not (folder / name).is_file() for name in FROST_FILES):
        raise ValueError(
            f"frost textures missing from the freqstudy install ({folder}); reinstall freqstudy, "
            f"or pass --frost-dir / set {FROST_ENV} to a folder with {', '.join(FROST_FILES)}"
        )
    return folder


@functools.lru_cache(maxsize=8)
def _load_textures(folder: str) -> tuple[np.ndarray, ...]:
    textures = []
    for name in FROST_FILES:
        path = Path(folder) / name
        try:
            with Image.open(path) as image:
                # Pillow drops alpha like cv2.imread(IMREAD_COLOR); the original then
                # flipped BGR to RGB ([..., [2, 1, 0]]), so RGB is what it added.
                rgb = np.asarray(image.convert("RGB"))
        except OSError as error:
            raise ValueError(f"frost texture {path} cannot be decoded: {error}") from None
        small = resize_linear_fifth(rgb)
        if small.shape[0] <= IMAGE_SIZE or small.shape[1] <= IMAGE_SIZE:
            raise ValueError(f"frost texture {path} is too small: {rgb.shape[:2]}, needs > 165 px per side")
        small.setflags(write=False)
        textures.append(small)
    return tuple(textures)


def load_frost_textures(frost_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, ...]:
    """Frost textures 1..5, resized by 0.2, RGB uint8 (H, W, 3); read once per folder."""
    return _load_textures(str(resolve_frost_dir(frost_dir).resolve()))


def frost(
    images: np.ndarray, severity: int, rng: np.random.Generator, frost_dir: str | os.PathLike | None = None
) -> np.ndarray:
    """Frost: ``clip(a·x + b·crop, 0, 255)`` with a random 32×32 crop of a random texture.

    Args:
        images: (N, 32, 32, 3) uint8. severity: 1..5.
        rng: draws the texture (uniform over 5) and the crop corner per image
            (rows in ``[0, H-32)``, columns in ``[0, W-32)``, as the original's randint).
        frost_dir: folder with the textures (see :func:`resolve_frost_dir`).

    Returns:
        (N, 32, 32, 3) uint8.
    """
    _ops.check_rgb_batch(images, severity)
    textures = load_frost_textures(frost_dir)
    n, h, w, _ = images.shape
    choice = rng.integers(0, len(textures), size=n)
    tops = np.zeros(n, dtype=np.int64)
    lefts = np.zeros(n, dtype=np.int64)
    for index, texture in enumerate(textures):
        picked = np.flatnonzero(choice == index)
        tops[picked] = rng.integers(0, texture.shape[0] - h, size=picked.size)
        lefts[picked] = rng.integers(0, texture.shape[1] - w, size=picked.size)
    return blend_frost(images, severity, textures, choice, tops, lefts)


def blend_frost(
    images: np.ndarray,
    severity: int,
    textures: tuple[np.ndarray, ...],
    choice: np.ndarray,
    tops: np.ndarray,
    lefts: np.ndarray,
) -> np.ndarray:
    """The deterministic half of :func:`frost`: crop the chosen textures and blend.

    Args:
        images: (N, H, W, 3) uint8. severity: 1..5.
        textures: resized RGB textures (:func:`load_frost_textures`).
        choice: (N,) texture index per image; tops, lefts: (N,) crop corner in pixels.

    Returns:
        (N, H, W, 3) uint8 ``clip(a·x + b·crop, 0, 255)`` truncated.
    """
    _ops.check_rgb_batch(images, severity)
    image_weight, frost_weight = FROST_PARAMS[severity - 1]
    n, h, w, _ = images.shape
    crops = np.empty(images.shape, dtype=np.uint8)
    for index, texture in enumerate(textures):
        picked = np.flatnonzero(choice == index)
        if picked.size == 0:
            continue
        rows = tops[picked][:, None] + np.arange(h)  # (k, h)
        cols = lefts[picked][:, None] + np.arange(w)  # (k, w)
        crops[picked] = texture[rows[:, :, None], cols[:, None, :]]
    out = image_weight * images + frost_weight * crops
    return _ops.to_uint8(np.clip(out, 0, 255))


# --------------------------------------------------------------------------- snow
def snow(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Snow: a thresholded, zoomed noise layer, motion-blurred, added twice (and rotated).

    Steps (0-1 scale): layer ~ N(loc, scale) (N, 32, 32); clipped zoom; values
    below threshold -> 0; quantised to uint8 (the original went through a
    grayscale PNG); ImageMagick-6 motion blur (radius, sigma, angle ~
    U(-135°, -45°)); image ``blend·x + (1-blend)·max(x, 1.5·gray(x) + 0.5)``;
    output ``clip(x + snow + rot180(snow), 0, 1)·255``.

    Returns:
        (N, 32, 32, 3) uint8.
    """
    _ops.check_rgb_batch(images, severity)
    loc, scale, zoom, threshold, radius, sigma, blend = SNOW_PARAMS[severity - 1]
    n, h, w, _ = images.shape
    x = images.astype(np.float32) / np.float32(255)
    layer = rng.normal(loc, scale, size=(n, h, w))
    if zoom != 1:
        layer = _ops.clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0
    layer_u8 = _ops.to_uint8(np.clip(layer, 0, 1) * 255)
    angles = rng.uniform(-135.0, -45.0, size=n)
    flakes = (_ops.imagemagick_motion_blur(layer_u8, radius, sigma, angles) / 255.0)[
        ..., None
    ]  # (N, H, W, 1)

    gray = (x @ GRAY_WEIGHTS)[..., None]
    x = blend * x + (1 - blend) * np.maximum(x, gray * np.float32(1.5) + np.float32(0.5))
    out = np.clip(x + flakes + flakes[:, ::-1, ::-1], 0, 1) * 255
    return _ops.to_uint8(out)


# --------------------------------------------------------------------------- spatter
def sobel_gradients(layers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3×3 Sobel d/dx and d/dy of (N, H, W) maps, border replicate -> two int32 (N, H, W)."""
    p = np.pad(layers.astype(np.int32), ((0, 0), (1, 1), (1, 1)), mode="edge")
    horizontal = p[:, :, 2:] - p[:, :, :-2]  # (N, H+2, W)
    dx = horizontal[:, :-2] + 2 * horizontal[:, 1:-1] + horizontal[:, 2:]
    vertical = p[:, 2:, :] - p[:, :-2, :]  # (N, H, W+2)
    dy = vertical[:, :, :-2] + 2 * vertical[:, :, 1:-1] + vertical[:, :, 2:]
    return dx, dy


# tan(22.5°) in OpenCV's Q15 fixed point.
_TG22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)


def canny(layers: np.ndarray, low: float, high: float) -> np.ndarray:
    """``cv2.Canny(layer, low, high)`` (aperture 3, L1 magnitude) for (N, H, W) uint8.

    Magnitude ``|dx| + |dy|``; non-maximum suppression in four directions with
    OpenCV's fixed-point sector test and tie rule (strictly greater than the
    neighbour before, at least the one after; both strict on diagonals;
    zero magnitude outside the image); hysteresis: candidates above ``low``
    8-connected (within the image) to one above ``high``.

    Returns:
        (N, H, W) bool edge map.
    """
    dx, dy = sobel_gradients(layers)
    mag = np.abs(dx) + np.abs(dy)
    low_i, high_i = int(np.floor(low)), int(np.floor(high))
    m = np.pad(mag, ((0, 0), (1, 1), (1, 1)))
    centre = m[:, 1:-1, 1:-1]
    left, right = m[:, 1:-1, :-2], m[:, 1:-1, 2:]
    up, down = m[:, :-2, 1:-1], m[:, 2:, 1:-1]
    up_left, up_right = m[:, :-2, :-2], m[:, :-2, 2:]
    down_left, down_right = m[:, 2:, :-2], m[:, 2:, 2:]

    ax = np.abs(dx).astype(np.int64)
    ay = np.abs(dy).astype(np.int64) << 15
    tg22x = ax * _TG22
    tg67x = tg22x + (ax << 16)
    is_horizontal = ay < tg22x
    is_vertical = ~is_horizontal & (ay > tg67x)
    is_diagonal = ~is_horizontal & ~is_vertical
    same_sign = (dx ^ dy) >= 0
    peak_h = (centre > left) & (centre >= right)
    peak_v = (centre > up) & (centre >= down)
    peak_d = np.where(
        same_sign, (centre > up_left) & (centre > down_right), (centre > up_right) & (centre > down_left)
    )
    peak = np.where(is_horizontal, peak_h, np.where(is_vertical, peak_v, peak_d & is_diagonal))
    candidate = peak & (mag > low_i)
    strong = candidate & (mag > high_i)
    if not strong.any():
        return strong
    return _filters.connected_to(candidate, strong)


# cv2.distanceTransform(DIST_L2, 5): a 5×5 chamfer with steps 1 (edge), 1.4 (diagonal)
# and 2.1969 (knight's move), held in 16.16 fixed point as OpenCV does (cvRound of the float32 metrics).
_DIST_SHIFT = 16
_HV = int(np.rint(np.float64(np.float32(1.0)) * (1 << _DIST_SHIFT)))
_DIAG = int(np.rint(np.float64(np.float32(1.4)) * (1 << _DIST_SHIFT)))
_LONG = int(np.rint(np.float64(np.float32(2.1969)) * (1 << _DIST_SHIFT)))
_FAR = 1 << 40  # outside the image and not yet reached


def distance_to_edges(edges: np.ndarray) -> np.ndarray:
    """``cv2.distanceTransform(255 - edges, DIST_L2, 5)`` for a batch: chamfer distance to the nearest edge.

    OpenCV's two raster passes over a 5×5 mask, in its 16.16 fixed point. Each
    row is done at once for the whole batch: the terms from the rows above
    (below) are elementwise, and the left (right) neighbour's recurrence
    ``d[j] = min(e[j], d[j-1] + 1)`` is a running minimum of ``e[j] - j``.
    The exact Euclidean transform (scipy) differs enough to move spatter's mean
    change by ~2%; this one reproduces the reference bit for bit.

    Args:
        edges: (N, H, W) bool.

    Returns:
        (N, H, W) float32 distances in pixels; images without edges get 256 everywhere.
    """
    n, h, w = edges.shape
    t = np.full((n, h + 4, w + 4), _FAR, dtype=np.int64)  # 2-pixel border of "far"
    ramp = np.arange(w, dtype=np.int64) * _HV
    for i in range(h):  # forward: rows above and the left neighbour
        r = i + 2
        up1, up2 = t[:, r - 1], t[:, r - 2]
        e = np.minimum.reduce(
            [
                up2[:, 1 : w + 1] + _LONG,
                up2[:, 3 : w + 3] + _LONG,
                up1[:, 0:w] + _LONG,
                up1[:, 1 : w + 1] + _DIAG,
                up1[:, 2 : w + 2] + _HV,
                up1[:, 3 : w + 3] + _DIAG,
                up1[:, 4 : w + 4] + _LONG,
            ]
        )
        e[edges[:, i]] = 0
        t[:, r, 2 : w + 2] = np.minimum.accumulate(e - ramp, axis=1) + ramp
    for i in range(h - 1, -1, -1):  # backward: rows below and the right neighbour
        r = i + 2
        down1, down2 = t[:, r + 1], t[:, r + 2]
        e = np.minimum.reduce(
            [
                t[:, r, 2 : w + 2],
                down2[:, 3 : w + 3] + _LONG,
                down2[:, 1 : w + 1] + _LONG,
                down1[:, 4 : w + 4] + _LONG,
                down1[:, 3 : w + 3] + _DIAG,
                down1[:, 2 : w + 2] + _HV,
                down1[:, 1 : w + 1] + _DIAG,
                down1[:, 0:w] + _LONG,
            ]
        )
        t[:, r, 2 : w + 2] = (np.minimum.accumulate((e + ramp)[:, ::-1], axis=1)[:, ::-1]) - ramp
    fixed = np.minimum(
        t[:, 2 : h + 2, 2 : w + 2], 1 << 24
    )  # "no edge" as 256 px, beyond any in-image distance
    return fixed.astype(np.float32) * np.float32(1.0 / (1 << _DIST_SHIFT))


def box_blur3(x: np.ndarray) -> np.ndarray:
    """``cv2.blur(x, (3, 3))`` of (N, H, W): 3×3 mean, border reflect-101, float64."""
    return _filters.uniform_filter(x.astype(np.float64), (1, 3, 3), mode="mirror")


def equalize_hist(x: np.ndarray) -> np.ndarray:
    """``cv2.equalizeHist`` per image of (N, H, W) uint8.

    LUT ``round((cdf(v) - count(min)) · 255 / (total - count(min)))``, with
    ``cdf`` counted from the lowest level present; an image of one level stays as is.
    """
    n = x.shape[0]
    flat = x.reshape(n, -1)
    total = flat.shape[1]
    bins = (np.arange(n)[:, None] * 256 + flat).reshape(-1)
    counts = np.bincount(bins, minlength=n * 256).reshape(n, 256)
    first = np.argmax(counts > 0, axis=1)
    first_count = counts[np.arange(n), first]
    cdf = np.cumsum(counts, axis=1)
    uniform = first_count == total
    scale = np.float32(255) / np.maximum(total - first_count, 1).astype(np.float32)
    lut = np.rint((cdf - first_count[:, None]).astype(np.float32) * scale[:, None])
    lut = np.clip(lut, 0, 255).astype(np.uint8)
    lut[np.arange(256)[None, :] < first[:, None]] = 0
    out = np.take_along_axis(lut, flat.astype(np.int64), axis=1).reshape(x.shape)
    out[uniform] = x[uniform]
    return out


def emboss(x: np.ndarray) -> np.ndarray:
    """``cv2.filter2D(x, CV_8U, EMBOSS_KERNEL)`` of (N, H, W) uint8: correlation, reflect-101, saturated."""
    p = np.pad(x.astype(np.int32), ((0, 0), (1, 1), (1, 1)), mode="reflect")
    h, w = x.shape[1:]
    out = np.zeros(x.shape, dtype=np.int32)
    for i in range(3):
        for j in range(3):
            if EMBOSS_KERNEL[i, j]:
                out += EMBOSS_KERNEL[i, j] * p[:, i : i + h, j : j + w]
    return np.clip(out, 0, 255).astype(np.uint8)


def water_mask(liquid: np.ndarray) -> np.ndarray:
    """The water-drop shading of spatter mode 0 for (N, H, W) liquid layers -> (N, H, W) float32 in [0, 1].

    ``liquid`` is thresholded (0 below); as uint8 it wraps past 255 (the
    original's ``astype(np.uint8)``). Edge map (Canny 50/150), distance to the
    edges truncated at 20, 3×3 mean -> uint8, equalised, embossed, 3×3 mean;
    times the uint8 layer, normalised by its maximum per image.
    """
    layer_u8 = (np.floor(liquid * 255).astype(np.int64) & 0xFF).astype(np.uint8)
    edges = canny(layer_u8, 50, 150)
    dist = np.minimum(distance_to_edges(edges), np.float32(20))
    dist = box_blur3(dist).astype(np.float32).astype(np.uint8)
    dist = emboss(equalize_hist(dist))
    dist = np.rint(box_blur3(dist)).astype(np.float32)
    shade = layer_u8.astype(np.float32) * dist
    peak = shade.max(axis=(1, 2), keepdims=True)
    # An image with no water has no shading (the original divided by zero there).
    return np.divide(shade, peak, out=np.zeros_like(shade), where=peak > 0)


def spatter(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Spatter: water drops (severities 1-3) or mud (4-5).

    Liquid layer ~ N(loc, scale) (N, 32, 32), Gaussian blur (sigma, mode
    nearest, truncate 4), values below threshold -> 0. Water: ``x +
    intensity·water_mask·turquoise``. Mud: mask ``layer > threshold``,
    Gaussian (mud sigma), below 0.8 -> 0; ``x·(1-m) + brown·m``. Clip to [0, 1], ×255.

    Returns:
        (N, 32, 32, 3) uint8.
    """
    _ops.check_rgb_batch(images, severity)
    loc, scale, sigma, threshold, strength, mode = SPATTER_PARAMS[severity - 1]
    n, h, w, _ = images.shape
    x = images.astype(np.float32) / np.float32(255)
    liquid = rng.normal(loc, scale, size=(n, h, w))
    liquid = _filters.gaussian_filter(liquid, (0, sigma, sigma), mode="nearest", truncate=4.0)
    liquid[liquid < threshold] = 0
    if mode == 0:
        shade = water_mask(liquid) * np.float32(strength)
        out = x + shade[..., None] * WATER_RGB
    else:
        mud = (liquid > threshold).astype(np.float32)
        mud = _filters.gaussian_filter(mud, (0, strength, strength), mode="nearest", truncate=4.0)
        mud[mud < 0.8] = 0
        out = x * (1 - mud[..., None]) + MUD_RGB * mud[..., None]
    return _ops.to_uint8(np.clip(out, 0, 1) * 255)
