"""Which DFT bins each band holds on a ``k×k`` grid, and when a split has no spatial structure.

A band is a set of bins of the ``k×k`` DFT grid (docs/method.md §1). On a
small grid a cutoff can leave a band with nothing but the DC bin: a
"low-frequency filter" is then a constant filter (its whole energy is its mean),
and ``p̂`` counts near-constant filters rather than smooth ones. A band that is
a single conjugate pair ``±(u, v)`` (with or without DC) is as degenerate: its
filters are one sinusoid of one orientation. On the odd square grids of the
stem every ring of equal radius holds 4 or 8 bins (2 or 4 pairs), so for the
radial split only the DC-alone low band arises; :func:`band_problem` still
names the pair cases, for any set of bins.

Bins are signed integer indices ``(u, v)``, ``-k//2 <= u, v <= k//2``, standing
for ``(f_u, f_v) = (u/k, v/k)`` cycles/pixel; radii are fractions of Nyquist
(``r = sqrt(u² + v²)/k / 0.5``), as in ``models.spectral``. Plain Python: no
torch, so a config can be checked without loading it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Ring",
    "band_bins",
    "band_problem",
    "radius",
    "rings",
    "split_problem",
    "structured_cutoffs",
    "structured_cutoffs_text",
]

Bin = tuple[int, int]
DC: Bin = (0, 0)


@dataclass(frozen=True)
class Ring:
    """The bins at one radius: ``radius`` (fraction of Nyquist) and ``bins`` (signed indices)."""

    radius: float
    bins: tuple[Bin, ...]


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0 or k % 2 == 0:
        raise ValueError(
            f"kernel size k={k!r} is not allowed; k must be a positive odd integer (3, 5, 7, ...)"
        )
    return k


def radius(k: int, b: Bin) -> float:
    """Normalised radius of bin ``b``, computed as ``models.spectral`` does (the same float)."""
    fu, fv = b[0] / k, b[1] / k
    return math.sqrt(fu**2 + fv**2) / 0.5


def _bins(k: int) -> list[Bin]:
    half = _check_k(k) // 2
    return [(u, v) for u in range(-half, half + 1) for v in range(-half, half + 1)]


def rings(k: int) -> tuple[Ring, ...]:
    """The ``k×k`` grid's bins grouped by radius (``u² + v²``), innermost (DC) first."""
    by_norm: dict[int, list[Bin]] = {}
    for u, v in _bins(k):
        by_norm.setdefault(u * u + v * v, []).append((u, v))
    return tuple(Ring(radius(k, by_norm[n][0]), tuple(by_norm[n])) for n in sorted(by_norm))


def band_bins(k: int, cutoff: float) -> tuple[tuple[Bin, ...], tuple[Bin, ...]]:
    """``(low, high)``: the bins with ``r <= cutoff`` and those with ``r > cutoff``."""
    bins = _bins(k)
    return (
        tuple(b for b in bins if radius(k, b) <= cutoff),
        tuple(b for b in bins if radius(k, b) > cutoff),
    )


def band_problem(bins: Sequence[Bin], band: str) -> str | None:
    """What is degenerate about a (Hermitian-symmetric) band, as a clause, or None.

    Args:
        bins: the band's bins, signed indices; ``(-u, -v)`` is in it whenever ``(u, v)`` is.
        band: ``"low"`` or ``"high"``, for the wording.

    Returns:
        ``"the low band is the DC bin alone, so a low-frequency filter is a constant filter"``
        and the like when the band's bins other than DC form at most one conjugate pair;
        None when the band holds spatial structure, or is empty (validation's business).
    """
    others = [b for b in bins if b != DC]
    has_dc = len(others) < len(bins)
    if len(others) > 2 or not bins:
        return None
    if not others:
        return f"the {band} band is the DC bin alone, so a {band}-frequency filter is a constant filter"
    u, v = max(others)
    pair = f"the conjugate pair ±({u}, {v})"
    if has_dc:
        return (
            f"the {band} band is the DC bin and {pair} alone, so a {band}-frequency filter is "
            "a constant plus one sinusoid"
        )
    return f"the {band} band is {pair} alone, so a {band}-frequency filter is a single sinusoid"


def split_problem(k: int, cutoff: float) -> str | None:
    """The degenerate band(s) of the split at ``cutoff`` on the ``k×k`` grid, as a clause, or None."""
    low, high = band_bins(k, cutoff)
    problems = [p for p in (band_problem(low, "low"), band_problem(high, "high")) if p]
    return "; ".join(problems) or None


def structured_cutoffs(k: int) -> tuple[float, float] | None:
    """``(lo, hi)``: cutoffs in ``[lo, hi)`` leave both bands with spatial structure; None if none do.

    The split changes only at ring radii, so each interval between two radii
    is checked once; on the stem's grids the structured cutoffs are one
    interval, from the first ring after DC to the outermost ring.
    """
    radii = [ring.radius for ring in rings(k)]
    good = [(a, b) for a, b in zip(radii, radii[1:]) if split_problem(k, a) is None]
    if not good:
        return None
    lo, hi = good[0]
    for a, b in good[1:]:
        if a > hi:  # never on a square odd grid; a second interval would need a second line
            break
        hi = b
    return lo, hi


def structured_cutoffs_text(k: int) -> str:
    """``"0.667 to 0.942"``: the structured cutoffs for ``k`` in 3 decimals, rounded inwards so
    that every printed value works (the interval is ``[2/3, 0.9428)`` for k = 3)."""
    interval = structured_cutoffs(k)
    if interval is None:
        return "none"
    lo, hi = interval
    lo_txt, hi_txt = round(lo, 3), round(hi, 3)
    if lo_txt < lo:
        lo_txt += 0.001
    if hi_txt >= hi:
        hi_txt -= 0.001
    return f"{lo_txt:.3f} to {hi_txt:.3f}"
