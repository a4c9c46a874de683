"""Frequency analysis of first-layer convolution filters (docs/method.md).

Pure functions over a weight tensor of shape ``(O, C, k, k)``: the DFT grid of a
``k×k`` kernel with its signed frequencies (cycles/pixel) and normalised radius
(1.0 = the Nyquist frequency along one axis), the radial LOW/HIGH band masks
for a cutoff ``r_c``, per-filter power spectra (``k×k`` and zero-padded
``N×N`` with DC centred, for pictures), and the statistics the study records
every epoch: low-frequency energy ratio, low/high classification with a
threshold ``τ``, the layer's frequency proportion ``p̂`` and the spectral
centroid. Everything returns torch tensors (or a float for ``p̂``) and works on
any device; spectra are computed in at least float32 because the FFT has no
reduced-precision path on most backends.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = [
    "frequency_grid",
    "normalised_radius",
    "band_masks",
    "dft_basis",
    "valid_cutoffs",
    "check_cutoff",
    "power_spectrum",
    "padded_power_spectrum",
    "low_energy_ratio",
    "classify_filters",
    "frequency_proportion",
    "spectral_centroid",
    "radial_power_profile",
]

# The largest normalised radius on any grid is sqrt(2) (the corner bin at
# f_u = f_v = -0.5 of an even grid); odd grids stay strictly below it.
MAX_RADIUS = math.sqrt(2.0)

LOW, HIGH, UNCLASSIFIED = 1, 0, -1
# How people read the classes (figures, tables, JSON).
CLASS_NAMES: dict[int, str] = {LOW: "low", HIGH: "high", UNCLASSIFIED: "none"}


def _check_kernel_size(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0 or k % 2 == 0:
        raise ValueError(
            f"kernel size k={k!r} is not allowed; k must be a positive odd integer (3, 5, 7, ...)"
        )
    return k


def _radius(n: int) -> torch.Tensor:
    """Normalised radius of an ``n×n`` unshifted DFT grid, any ``n``; (n, n) float64."""
    f = torch.fft.fftfreq(n, dtype=torch.float64)  # cycles/pixel, signed
    return torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2) / 0.5


def _spectrum_dtype(weight: torch.Tensor) -> torch.dtype:
    # bf16/fp16 FFTs are unsupported (CPU) or limited to powers of two (CUDA).
    return torch.float64 if weight.dtype == torch.float64 else torch.float32


def _check_weight(weight: torch.Tensor) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4 or weight.shape[-1] != weight.shape[-2]:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight of shape {shape} is not allowed; expected (O, C, k, k) with square kernels")
    if weight.is_complex():
        raise ValueError("weight must be real; got a complex tensor")
    return weight.detach().to(_spectrum_dtype(weight))


def frequency_grid(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed frequencies of the unshifted ``k×k`` DFT grid.

    Args:
        k: odd kernel size.

    Returns:
        ``(fu, fv)``, each (k, k) float64 in cycles/pixel: bin ``u`` has
        ``u/k`` for ``u <= k//2`` and ``u/k - 1`` above; ``fu`` varies along
        rows (dim -2), ``fv`` along columns (dim -1).
    """
    _check_kernel_size(k)
    f = torch.fft.fftfreq(k, dtype=torch.float64)
    fu, fv = torch.meshgrid(f, f, indexing="ij")
    return fu, fv


def normalised_radius(k: int) -> torch.Tensor:
    """``r = sqrt(fu² + fv²) / 0.5`` on the ``k×k`` grid; (k, k) float64, 1.0 = Nyquist."""
    _check_kernel_size(k)
    return _radius(k)


def valid_cutoffs(k: int) -> tuple[float, float]:
    """The open interval ``(lo, hi)`` of cutoffs (fraction of Nyquist) leaving both bands non-empty.

    LOW always holds DC (r = 0) for a positive cutoff, and HIGH is non-empty
    while the cutoff is below the largest radius on the grid, so the interval
    is ``(0, max r)``; for k = 3 that is ``(0, 0.943)``.
    """
    return 0.0, float(normalised_radius(k).max())


def check_cutoff(k: int, cutoff: float) -> float:
    """Validate a cutoff for kernel size ``k``; returns it as a float.

    Raises:
        ValueError: ``k`` is not a positive odd integer, the cutoff is not a
            finite number in (0, √2), or it leaves a band empty on this grid;
            the message names the cutoffs that work for ``k``.
    """
    _check_kernel_size(k)
    lo, hi = valid_cutoffs(k)
    works = f"cutoffs that work for k={k}: ({lo:g}, {hi:.3f})"
    if isinstance(cutoff, bool) or not isinstance(cutoff, numbers.Real) or not math.isfinite(cutoff):
        raise ValueError(f"cutoff {cutoff!r} is not a finite number; {works}")
    cutoff = float(cutoff)
    if not 0.0 < cutoff < MAX_RADIUS:
        raise ValueError(f"cutoff {cutoff:g} is outside (0, {MAX_RADIUS:.4f}); {works}")
    if cutoff >= hi:
        raise ValueError(f"cutoff {cutoff:g} leaves the high band empty for k={k}; {works}")
    return cutoff


def band_masks(k: int, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Radial masks ``LOW = {r <= r_c}`` and ``HIGH = {r > r_c}`` on the unshifted grid.

    Both are Hermitian-symmetric (r(-u, -v) = r(u, v)), so band-limiting a
    real kernel keeps it real.

    Returns:
        ``(low, high)``, each (k, k) bool, complementary, both non-empty.
    """
    cutoff = check_cutoff(k, cutoff)
    r = normalised_radius(k)
    low = r <= cutoff
    return low, ~low


def dft_basis(k: int) -> torch.Tensor:
    """Real DFT basis of the ``k×k`` grid: cosines then sines, (k², 2k²) float64.

    Row ``x = i·k + j`` is a pixel, column ``f = u·k + v`` a bin of the unshifted
    grid (``fft2``'s order): ``B[x, f] = cos(2π(ui + vj)/k)`` and
    ``B[x, k² + f] = sin(2π(ui + vj)/k)``. For a real kernel ``v`` (flattened)
    ``v @ B`` holds ``Re DFT(v)`` then ``-Im DFT(v)``, and for any real gains
    ``g`` (per bin) ``Re IDFT(g ⊙ DFT(v)) = ((v @ B) ⊙ [g, g]) @ Bᵀ / k²``:
    the band-limiting of the stem as two real matrix products, which every
    backend and ``torch.compile`` handle natively (no complex tensors).
    """
    _check_kernel_size(k)
    i = torch.arange(k, dtype=torch.float64)
    phase = (
        2
        * math.pi
        * (i[:, None, None, None] * i[None, None, :, None] + i[None, :, None, None] * i[None, None, None, :])
        / k
    )  # (i, j, u, v)
    phase = phase.reshape(k * k, k * k)  # (pixel, bin)
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=1)


def power_spectrum(weight: torch.Tensor) -> torch.Tensor:
    """``P_o(u, v) = Σ_c |DFT(W[o, c])(u, v)|²``, unshifted (DC at [0, 0]).

    Args:
        weight: (O, C, k, k) real.

    Returns:
        (O, k, k), float32 (float64 for float64 input).
    """
    w = _check_weight(weight)
    spectrum = torch.fft.fft2(w)  # (O, C, k, k) complex
    return (spectrum.real**2 + spectrum.imag**2).sum(dim=1)  # -> (O, k, k)


def padded_power_spectrum(weight: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Power spectrum of each filter zero-padded to ``size×size``, DC centred.

    This is the filter's response seen on a ``size×size`` image. Parseval:
    ``Σ P_o = size² · Σ_c ||W[o, c]||²``. Apply ``log`` yourself for pictures.

    Args:
        weight: (O, C, k, k) real, ``k <= size``.
        size: padded side N in pixels (the image size, 32 for CIFAR).

    Returns:
        (O, size, size), fftshifted so DC sits at index ``size // 2``.
    """
    w = _check_weight(weight)
    if isinstance(size, bool) or not isinstance(size, int) or size < w.shape[-1]:
        raise ValueError(
            f"size {size!r} is not allowed; it must be an integer >= the kernel size {w.shape[-1]}"
        )
    spectrum = torch.fft.fft2(w, s=(size, size))  # (O, C, N, N) complex, zero-padded
    power = (spectrum.real**2 + spectrum.imag**2).sum(dim=1)  # -> (O, N, N)
    return torch.fft.fftshift(power, dim=(-2, -1))


def low_energy_ratio(weight: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``L_o = Σ_LOW P_o / Σ P_o``; (O,), NaN for a filter with zero energy."""
    power = power_spectrum(weight)  # (O, k, k)
    low, _ = band_masks(power.shape[-1], cutoff)
    total = power.sum(dim=(-2, -1))
    low_part = (power * low.to(power.device, power.dtype)).sum(dim=(-2, -1))
    ratio = low_part / torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, ratio, torch.full_like(ratio, math.nan))


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold!r} is not allowed; it must be in [0, 1]")
    return float(threshold)


def classify_filters(weight: torch.Tensor, cutoff: float, threshold: float = 0.5) -> torch.Tensor:
    """Per filter: 1 = low-frequency (``L_o >= τ``), 0 = high, -1 = no energy (no class).

    Returns:
        (O,) int64.
    """
    threshold = _check_threshold(threshold)
    ratio = low_energy_ratio(weight, cutoff)
    classes = torch.where(ratio >= threshold, LOW, HIGH).to(torch.int64)
    return torch.where(torch.isnan(ratio), torch.full_like(classes, UNCLASSIFIED), classes)


def frequency_proportion(weight: torch.Tensor, cutoff: float, threshold: float = 0.5) -> float:
    """The layer's ``p̂ = #low / #classified``; NaN when no filter has energy."""
    classes = classify_filters(weight, cutoff, threshold)
    classified = int((classes != UNCLASSIFIED).sum())
    if classified == 0:
        return math.nan
    return int((classes == LOW).sum()) / classified


def spectral_centroid(weight: torch.Tensor) -> torch.Tensor:
    """``c_o = Σ r·P_o / Σ P_o`` on the ``k×k`` grid, as a fraction of Nyquist; (O,), NaN for zero energy."""
    power = power_spectrum(weight)  # (O, k, k)
    r = _radius(power.shape[-1]).to(power.device, power.dtype)
    total = power.sum(dim=(-2, -1))
    centroid = (power * r).sum(dim=(-2, -1)) / torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, centroid, torch.full_like(centroid, math.nan))


def radial_power_profile(
    weight: torch.Tensor, size: int = 32, bins: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean power of the padded spectrum in equal-width radius rings over [0, √2].

    Args:
        weight: (O, C, k, k) real.
        size: padded side N (see ``padded_power_spectrum``).
        bins: number of rings.

    Returns:
        ``(radii, profile)``: ring centres (bins,) as fractions of Nyquist, and
        the mean power per ring (O, bins); a ring holding no bin is NaN.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins {bins!r} is not allowed; it must be a positive integer")
    power = padded_power_spectrum(weight, size)  # (O, N, N), DC centred
    r = torch.fft.fftshift(_radius(size)).flatten()  # (N*N,) float64
    # Ring i holds edges[i] <= r < edges[i+1], the corner r = √2 in the last ring. Diagonal bins
    # fall exactly on edges (r = j·√2/bins), so the tolerance keeps rounding from picking their ring.
    ring = torch.floor(r * (bins / MAX_RADIUS) + 1e-9).long().clamp(0, bins - 1).to(power.device)
    sums = torch.zeros(power.shape[0], bins, dtype=power.dtype, device=power.device)
    sums.index_add_(1, ring, power.flatten(1))  # (O, N*N) -> (O, bins)
    counts = torch.bincount(ring, minlength=bins).to(power.dtype)
    profile = sums / torch.where(counts > 0, counts, torch.ones_like(counts))
    profile = torch.where(counts > 0, profile, torch.full_like(profile, math.nan))
    radii = (torch.arange(bins, dtype=power.dtype, device=power.device) + 0.5) * (MAX_RADIUS / bins)
    return radii, profile
