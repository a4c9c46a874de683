"""CIFAR-10-C digital and colour corruptions: brightness, contrast, pixelate,
jpeg_compression (benchmark) and saturate (extra), at the CIFAR parameters of
``docs/cifar10c.md``. All five are deterministic.

brightness and saturate go through scikit-image's HSV formulas
(``_ops.rgb_to_hsv``). pixelate uses Pillow's BOX resampling exactly: Pillow
resizes horizontally then vertically, each pass with its own 8-bit rounding,
and skips a pass whose size does not change, so the whole batch is resized
as one tall strip per pass (the vertical pass on the transposed strip).
JPEG has no batch form; it is the one per-image loop. Inputs are uint8
``(N, 32, 32, 3)``; outputs the same shape and dtype.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from study.corruptions import _ops
from study.corruptions._ops import severity_params, to_uint8

BRIGHTNESS_SHIFT = (0.05, 0.1, 0.15, 0.2, 0.3)  # added to HSV value, 0-1
CONTRAST_SCALE = (0.75, 0.5, 0.4, 0.3, 0.15)  # deviation from the per-channel mean is scaled by this
PIXELATE_SCALE = (0.95, 0.9, 0.85, 0.75, 0.65)  # intermediate size int(32·c) = 30, 28, 27, 24, 20
JPEG_QUALITY = (80, 65, 58, 50, 40)  # Pillow quality, default 4:2:0 subsampling
SATURATE = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))  # HSV saturation (scale, shift)


def brightness(images: np.ndarray, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """RGB→HSV, ``V = clip(V + c, 0, 1)``, HSV→RGB, clip, ·255."""
    c = severity_params("brightness", BRIGHTNESS_SHIFT, severity)
    return _ops.adjust_hsv(images, lambda h, s, v: (h, s, np.clip(v + c, 0, 1)))


def saturate(images: np.ndarray, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """RGB→HSV, ``S = clip(S·scale + shift, 0, 1)``, HSV→RGB, clip, ·255."""
    scale, shift = severity_params("saturate", SATURATE, severity)
    return _ops.adjust_hsv(images, lambda h, s, v: (h, np.clip(s * scale + shift, 0, 1), v))


def contrast(images: np.ndarray, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """``(x − m)·c + m`` on 0-1 with ``m`` the per-image, per-channel mean; clip, ·255."""
    c = severity_params("contrast", CONTRAST_SCALE, severity)
    x = images / 255.0
    means = np.mean(x, axis=(1, 2), keepdims=True)  # (N, 1, 1, 3)
    return to_uint8(np.clip((x - means) * c + means, 0, 1) * 255)


def _box_resize_width(strip: np.ndarray, width: int) -> np.ndarray:
    """Pillow BOX resize of the width of a uint8 ``(rows, W, 3)`` strip (height kept, so one pass)."""
    rows = strip.shape[0]
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(strip), mode="RGB").resize((width, rows), Image.Resampling.BOX)
    )


def box_resize(images: np.ndarray, size: int) -> np.ndarray:
    """Pillow ``resize((size, size), BOX)`` of every image of a uint8 ``(N, H, W, 3)`` batch.

    Horizontal pass then vertical pass, as Pillow does, each a single call on
    the batch stacked into one strip.
    """
    n, h, w, _ = images.shape
    if n == 0:
        return np.empty((0, size, size, 3), dtype=np.uint8)
    # (N, H, W, 3) -> (N·H, size, 3): horizontal pass over all rows of all images.
    x = _box_resize_width(images.reshape(n * h, w, 3), size).reshape(n, h, size, 3)
    # Vertical pass: transpose H and W so that columns become rows of one strip.
    x = _box_resize_width(x.transpose(0, 2, 1, 3).reshape(n * size, h, 3), size)
    return x.reshape(n, size, size, 3).transpose(0, 2, 1, 3)


def pixelate(images: np.ndarray, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Pillow BOX resize to ``int(32c)`` and back to 32."""
    c = severity_params("pixelate", PIXELATE_SCALE, severity)
    size = images.shape[1]
    return np.ascontiguousarray(box_resize(box_resize(images, int(size * c)), size))


def jpeg_compression(images: np.ndarray, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Pillow JPEG encode at ``quality`` (default 4:2:0) and decode, per image.

    The bytes go straight to Pillow's JPEG decoder (``Image.frombytes`` with
    the ``jpeg`` codec and the tile arguments ``Image.open`` would use), which
    skips re-parsing the file we just wrote: the same libjpeg decode, in half
    the time.
    """
    quality = severity_params("jpeg_compression", JPEG_QUALITY, severity)
    out = np.empty_like(images)
    size = (images.shape[2], images.shape[1])  # Pillow's (width, height)
    buf = io.BytesIO()
    for i, img in enumerate(images):
        buf.seek(0)
        buf.truncate()
        Image.fromarray(img, mode="RGB").save(buf, format="JPEG", quality=quality)
        out[i] = np.asarray(Image.frombytes("RGB", size, buf.getvalue(), "jpeg", "RGB", ""))
    return out
