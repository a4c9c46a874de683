"""models.spectral against closed forms and a brute-force DFT written out as sums."""

import math

import numpy as np
import pytest
import torch

from models import spectral

KERNELS = (3, 5, 7)


def brute_power(weight: np.ndarray, size: int | None = None) -> np.ndarray:
    """Σ_c |Σ_{m,n} w[m,n] e^{-2πi(um+vn)/N}|², unshifted; (O, N, N)."""
    o, c, k, _ = weight.shape
    n = size or k
    idx = np.arange(k)
    freq = np.arange(n)
    basis = np.exp(-2j * np.pi * np.outer(freq, idx) / n)  # (N, k)
    spectrum = np.einsum("um,ocmn,vn->ocuv", basis, weight, basis)
    return (np.abs(spectrum) ** 2).sum(axis=1)


def test_frequency_grid_matches_definition():
    for k in KERNELS:
        fu, fv = spectral.frequency_grid(k)
        expected = np.array([u / k if u <= k // 2 else u / k - 1 for u in range(k)])
        assert fu.shape == fv.shape == (k, k)
        np.testing.assert_allclose(fu.numpy(), np.repeat(expected[:, None], k, axis=1))
        np.testing.assert_allclose(fv.numpy(), np.repeat(expected[None, :], k, axis=0))
        r = spectral.normalised_radius(k)
        np.testing.assert_allclose(r.numpy(), np.sqrt(fu.numpy() ** 2 + fv.numpy() ** 2) / 0.5)


def test_radii_for_k3_are_those_of_the_design():
    assert sorted(set(np.round(spectral.normalised_radius(3).numpy().ravel(), 3))) == [0.0, 0.667, 0.943]


@pytest.mark.parametrize("k", [0, -3, 2, 4, 3.0, True])
def test_even_or_non_positive_kernel_is_rejected(k):
    with pytest.raises(ValueError, match="k="):
        spectral.frequency_grid(k)
    with pytest.raises(ValueError, match="k="):
        spectral.normalised_radius(k)


def test_band_masks_are_complementary_hermitian_and_split_dc_at_default_cutoff():
    low, high = spectral.band_masks(3, 0.5)
    assert low.dtype == torch.bool and low.shape == (3, 3)
    assert low.sum() == 1 and low[0, 0]
    for k in KERNELS:
        for cutoff in (0.3, 0.5, 0.8):
            low, high = spectral.band_masks(k, cutoff)
            assert torch.equal(low, ~high)
            neg = (-torch.arange(k)) % k
            assert torch.equal(low, low[neg][:, neg])  # mask(-u, -v) == mask(u, v)
            assert low.any() and high.any()


def test_valid_cutoffs_agree_with_brute_force():
    for k in KERNELS:
        lo, hi = spectral.valid_cutoffs(k)
        r = spectral.normalised_radius(k)
        for cutoff in np.linspace(0.001, math.sqrt(2) - 0.001, 400):
            both = bool((r <= cutoff).any() and (r > cutoff).any())
            assert both == (lo < cutoff < hi), (k, cutoff)
            if both:
                spectral.check_cutoff(k, float(cutoff))
            else:
                with pytest.raises(ValueError):
                    spectral.check_cutoff(k, float(cutoff))


def test_check_cutoff_messages_name_the_working_cutoffs():
    with pytest.raises(
        ValueError, match=r"leaves the high band empty for k=3; cutoffs that work for k=3: \(0, 0\.943\)"
    ):
        spectral.check_cutoff(3, 0.95)
    for bad in (0.0, -0.1, math.sqrt(2), 2.0, math.nan, math.inf, "0.5", None):
        with pytest.raises(ValueError, match="cutoffs that work for k=5"):
            spectral.check_cutoff(5, bad)
    assert spectral.check_cutoff(7, 1.2) == 1.2


def test_constant_kernel_has_all_energy_at_dc():
    for k in KERNELS:
        w = torch.full((2, 3, k, k), 0.25)
        power = spectral.power_spectrum(w)
        expected = torch.zeros(2, k, k)
        expected[:, 0, 0] = 3 * (0.25 * k * k) ** 2  # |Σ w|² summed over 3 channels
        torch.testing.assert_close(power, expected, atol=1e-5, rtol=1e-6)
        assert torch.equal(spectral.classify_filters(w, 0.5), torch.ones(2, dtype=torch.int64))
        torch.testing.assert_close(spectral.low_energy_ratio(w, 0.5), torch.ones(2))
        torch.testing.assert_close(spectral.spectral_centroid(w), torch.zeros(2), atol=1e-6, rtol=0)
        padded = spectral.padded_power_spectrum(w, 32)
        assert padded[0].argmax() == (32 // 2) * 32 + 32 // 2  # DC centred after the shift
        torch.testing.assert_close(padded[:, 16, 16], torch.full((2,), 3 * (0.25 * k * k) ** 2))


def test_checkerboard_kernel_has_its_energy_at_the_highest_frequency():
    for k in KERNELS:
        idx = torch.arange(k)
        board = ((-1.0) ** (idx[:, None] + idx[None, :])).expand(1, 1, k, k).double()
        power = spectral.power_spectrum(board)[0]
        # Closed form for odd k: |Σ_n (-1)^n e^{-2πiun/k}| = 1/|sin(θ_u/2)|, θ_u = π(1 - 2u/k).
        theta = math.pi * (1 - 2 * idx.double() / k)
        axis = 1 / torch.sin(theta / 2) ** 2
        torch.testing.assert_close(power, axis[:, None] * axis[None, :])
        r = spectral.normalised_radius(k)
        assert torch.equal(power == power.max(), torch.isclose(r, r.max()))
        assert spectral.classify_filters(board, 0.5).item() == 0
        # On an even padded grid f = 0.5 exists: all of Σ w lands in the corner, |Σ|w||² = k⁴.
        padded = spectral.padded_power_spectrum(board, 32)[0]
        assert padded.argmax() == 0  # (-0.5, -0.5) after the shift
        torch.testing.assert_close(padded[0, 0], torch.tensor(float(k**4), dtype=torch.float64))


def test_power_spectra_match_brute_force_and_parseval():
    gen = torch.Generator().manual_seed(0)
    for k in KERNELS:
        w = torch.randn(5, 3, k, k, generator=gen, dtype=torch.float64)
        power = spectral.power_spectrum(w)
        np.testing.assert_allclose(power.numpy(), brute_power(w.numpy()), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(
            power.sum((1, 2)).numpy(), k * k * (w**2).sum((1, 2, 3)).numpy(), rtol=1e-12
        )
        for size in (k, 16, 32, 33):
            padded = spectral.padded_power_spectrum(w, size)
            assert padded.shape == (5, size, size)
            np.testing.assert_allclose(
                padded.numpy(),
                np.fft.fftshift(brute_power(w.numpy(), size), axes=(-2, -1)),
                rtol=1e-10,
                atol=1e-10,
            )
            # Parseval: Σ_bins P = N² Σ w².
            np.testing.assert_allclose(
                padded.sum((1, 2)).numpy(), size**2 * (w**2).sum((1, 2, 3)).numpy(), rtol=1e-12
            )


def test_ratio_centroid_and_proportion_match_brute_force():
    gen = torch.Generator().manual_seed(1)
    for k in KERNELS:
        w = torch.randn(16, 3, k, k, generator=gen, dtype=torch.float64)
        w[3] = 0  # a filter without energy has no class
        p = brute_power(w.numpy())
        r = spectral.normalised_radius(k).numpy()
        for cutoff in (0.3, 0.5, 0.9):
            total = p.sum((1, 2))
            with np.errstate(invalid="ignore"):
                ratio = (p * (r <= cutoff)).sum((1, 2)) / total
                centroid = (p * r).sum((1, 2)) / total
            np.testing.assert_allclose(spectral.low_energy_ratio(w, cutoff).numpy(), ratio, rtol=1e-10)
            np.testing.assert_allclose(spectral.spectral_centroid(w).numpy(), centroid, rtol=1e-10)
            for tau in (0.1, 0.5, 0.9):
                classes = spectral.classify_filters(w, cutoff, tau)
                expected = np.where(np.isnan(ratio), -1, (ratio >= tau).astype(int))
                assert classes.dtype == torch.int64
                np.testing.assert_array_equal(classes.numpy(), expected)
                valid = ~np.isnan(ratio)
                assert spectral.frequency_proportion(w, cutoff, tau) == pytest.approx(
                    (ratio[valid] >= tau).mean()
                )


def test_no_energy_anywhere_gives_nan_proportion():
    w = torch.zeros(4, 3, 3, 3)
    assert torch.isnan(spectral.low_energy_ratio(w, 0.5)).all()
    assert torch.equal(spectral.classify_filters(w, 0.5), torch.full((4,), -1))
    assert math.isnan(spectral.frequency_proportion(w, 0.5))
    assert torch.isnan(spectral.spectral_centroid(w)).all()


def test_radial_profile_is_the_ring_mean_of_the_padded_spectrum():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(3, 3, 5, 5, generator=gen, dtype=torch.float64)
    radii, profile = spectral.radial_power_profile(w, size=32, bins=16)
    assert radii.shape == (16,) and profile.shape == (3, 16)
    assert torch.all(radii[1:] > radii[:-1]) and 0 < radii[0] and radii[-1] < math.sqrt(2)
    padded = spectral.padded_power_spectrum(w, 32).numpy()
    f = np.fft.fftshift(np.fft.fftfreq(32))
    r = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2) / 0.5
    edges = [i * math.sqrt(2) / 16 - 1e-9 for i in range(16)] + [math.inf]  # diagonal bins sit on edges
    for i in range(16):
        ring = (edges[i] <= r) & (r < edges[i + 1])
        np.testing.assert_allclose(profile[:, i].numpy(), padded[:, ring].mean(axis=1), rtol=1e-10)
        np.testing.assert_allclose(radii[i].item(), (i + 0.5) * math.sqrt(2) / 16)


def test_spectra_keep_float64_and_lift_reduced_precision():
    w = torch.randn(2, 3, 3, 3)
    assert spectral.power_spectrum(w.double()).dtype == torch.float64
    assert spectral.power_spectrum(w.bfloat16()).dtype == torch.float32
    with pytest.raises(ValueError, match="weight of shape"):
        spectral.power_spectrum(torch.randn(3, 3, 3))
    with pytest.raises(ValueError, match="size"):
        spectral.padded_power_spectrum(w, 2)
    with pytest.raises(ValueError, match="threshold"):
        spectral.classify_filters(w, 0.5, 1.5)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_dft_basis_gives_the_fft_and_band_limits_like_ifft(k):
    gen = torch.Generator().manual_seed(k)
    v = torch.randn(4, 3, k, k, dtype=torch.float64, generator=gen)
    basis = spectral.dft_basis(k)
    assert basis.shape == (k * k, 2 * k * k) and basis.dtype == torch.float64
    coeffs = v.reshape(4, 3, k * k) @ basis  # (O, C, 2k²)
    spectrum = torch.fft.fft2(v).reshape(4, 3, k * k)
    torch.testing.assert_close(coeffs[..., : k * k], spectrum.real, rtol=0, atol=1e-12)
    torch.testing.assert_close(coeffs[..., k * k :], -spectrum.imag, rtol=0, atol=1e-12)
    # Any real per-bin gains, Hermitian-symmetric or not: the real part of the inverse.
    gains = torch.rand(4, 1, k * k, dtype=torch.float64, generator=gen)
    limited = ((coeffs * gains.repeat(1, 1, 2)) @ basis.T / k**2).reshape(4, 3, k, k)
    expected = torch.fft.ifft2(torch.fft.fft2(v) * gains.reshape(4, 1, k, k)).real
    torch.testing.assert_close(limited, expected, rtol=0, atol=1e-12)
