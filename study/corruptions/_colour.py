"""scikit-image's HSV conversions, bit for bit, vectorised over channel planes,
and the uint8 round trip through them that brightness and saturate make.

Planes are float64 on 0-1, any one shape; every value goes through the same
float operations as in skimage's ``rgb2hsv``/``hsv2rgb``.
"""

from __future__ import annotations

import numpy as np

# Pixels per block of adjust_hsv (64 images of 32x32): its temporaries stay in the CPU cache.
HSV_BLOCK = 64 * 32 * 32


def rgb_to_hsv_planes(
    r: np.ndarray, g: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-image ``rgb2hsv`` on channel planes: float64 R, G, B on 0-1 (any one shape) -> H, S, V on 0-1.

    H from whichever channel is the maximum, with blue over green over red on
    ties (skimage assigns red, then green, then blue, later overwriting);
    ``H = S = 0`` where max == min. Every value is computed by the same float
    operations as skimage's (so results are bit-identical), on contiguous
    planes and with each division done once.
    """
    v = np.maximum(np.maximum(r, g), b)
    delta = v - np.minimum(np.minimum(r, g), b)
    is_b = b == v
    is_g = (g == v) & ~is_b
    numerator = np.where(is_b, r - g, np.where(is_g, b - r, g - b))
    grey = delta == 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        s = delta / v
        h = numerator / delta
    h = np.where(is_b, 4.0 + h, np.where(is_g, 2.0 + h, h))
    h /= 6.0
    # h/6 lies in [-1/6, 1): numpy's "% 1.0" is exactly "+ 1.0" on the negative part.
    h = np.where(h < 0.0, h + 1.0, h)
    h[grey] = 0.0
    s[grey] = 0.0
    return h, s, v


def hsv_to_rgb_planes(
    h: np.ndarray, s: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-image ``hsv2rgb`` on channel planes: float64 H, S, V on 0-1 -> R, G, B on 0-1, bit-identical.

    skimage computes ``p = v(1-s)``, ``q = v(1-fs)``, ``t = v(1-(1-f)s)`` and
    picks (r, g, b) per sextant; every sextant uses ``v``, ``p`` and one of
    ``q`` (odd sextants) or ``t`` (even), so only that one is computed, with
    the same operations.
    """
    h6 = h * 6
    hi = np.floor(h6)
    f = h6 - hi
    sextant = hi.astype(np.uint8) % 6  # skimage casts to uint8 before the modulo
    odd = (sextant & 1).astype(bool)
    p = v * (1 - s)
    third = v * (1 - np.where(odd, f, 1 - f) * s)
    v_channel, p_channel = _SEXTANT_V[sextant], _SEXTANT_P[sextant]
    r, g, b = (np.where(v_channel == c, v, np.where(p_channel == c, p, third)) for c in range(3))
    return r, g, b


# Sextant -> the channel (0 r, 1 g, 2 b) that takes v, and the one that takes p, as in skimage's hsv2rgb:
# (v,t,p), (q,v,p), (p,v,t), (p,q,v), (t,p,v), (v,p,q).
_SEXTANT_V = np.array([0, 1, 1, 2, 2, 0], dtype=np.uint8)
_SEXTANT_P = np.array([2, 2, 0, 0, 1, 1], dtype=np.uint8)


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """scikit-image ``rgb2hsv``: float ``(..., 3)`` RGB on 0-1 -> HSV, each on 0-1.

    See :func:`rgb_to_hsv_planes`.
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    return np.stack(rgb_to_hsv_planes(rgb[..., 0], rgb[..., 1], rgb[..., 2]), axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """scikit-image ``hsv2rgb``: float ``(..., 3)`` HSV on 0-1 -> RGB on 0-1.

    See :func:`hsv_to_rgb_planes`.
    """
    hsv = np.asarray(hsv, dtype=np.float64)
    return np.stack(hsv_to_rgb_planes(hsv[..., 0], hsv[..., 1], hsv[..., 2]), axis=-1)


def adjust_hsv(images: np.ndarray, adjust) -> np.ndarray:
    """``uint8(clip(hsv2rgb(adjust(rgb2hsv(x/255))), 0, 1)·255)`` for a uint8 ``(N, H, W, 3)`` batch.

    Args:
        images: uint8 ``(N, H, W, 3)``.
        adjust: ``(h, s, v) -> (h, s, v)``, elementwise, on float64 planes of shape ``(P,)``
            (a block of the batch's pixels).

    Returns:
        uint8, same shape.
    """
    pixels = images.reshape(-1, 3)
    out = np.empty_like(pixels)
    # A block of pixels at a time: each value's operations are its own, so the blocks only keep the
    # dozen temporaries of the formulas in the CPU cache (half the time of whole-batch planes).
    for lo in range(0, len(pixels), HSV_BLOCK):
        x = pixels[lo : lo + HSV_BLOCK].T / 255.0  # (P, 3) -> (3, P): contiguous channel planes
        rgb = np.stack(hsv_to_rgb_planes(*adjust(*rgb_to_hsv_planes(x[0], x[1], x[2]))))
        np.clip(rgb, 0, 1, out=rgb)
        rgb *= 255
        out[lo : lo + HSV_BLOCK] = rgb.T.astype(np.uint8)  # the original's np.uint8: truncation
    return out.reshape(images.shape)
