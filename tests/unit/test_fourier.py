"""Fourier heat map (study.analysis.fourier) and its figures, against closed forms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from study.analysis.fourier import (
    FOURIER_ERROR_HIGH,
    FOURIER_ERROR_LOW,
    FOURIER_ERROR_MIDDLE,
    FOURIER_HEATMAP_NPY,
    FOURIER_HEATMAP_PNG,
    band_errors,
    basis_image,
    clean_error,
    conjugate_pairs,
    fourier_heatmap,
    radius_map,
)
from study.reporting.fourier_figures import heatmap_grid_png, heatmap_png

S = 32
C = S // 2
# Synthetic-task normalisation: any affine per channel will do; the model undoes it.
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


# -- basis images ------------------------------------------------------------------------


def test_pairs_cover_the_grid_once():
    pairs = conjugate_pairs(S)
    assert len(pairs) == (S * S - 4) // 2 + 4 == 514
    seen = np.zeros((S, S), dtype=int)
    for (u, v), (cu, cv) in pairs:
        assert (cu, cv) == ((-u) % S, (-v) % S)
        seen[u, v] += 1
        if (cu, cv) != (u, v):
            seen[cu, cv] += 1
    assert (seen == 1).all()
    self_conjugate = {rep for rep, partner in pairs if rep == partner}
    assert self_conjugate == {(0, 0), (0, C), (C, 0), (C, C)}


def test_basis_closed_form_real_unit_norm_and_conjugate():
    m, n = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
    for u, v in [
        (0, 0),
        (0, C),
        (C, 0),
        (C, C),
        (1, 0),
        (0, 3),
        (5, 27),
        (C, 7),
        (31, 31),
    ]:
        b = basis_image(u, v, S)
        assert b.shape == (S, S) and b.dtype == np.float64 and np.isrealobj(b)
        assert np.linalg.norm(b) == pytest.approx(1.0, abs=1e-12)
        c = 1.0 / S if ((2 * u) % S == 0 and (2 * v) % S == 0) else np.sqrt(2.0) / S
        np.testing.assert_allclose(b, c * np.cos(2 * np.pi * (u * m + v * n) / S), atol=1e-12)
        np.testing.assert_allclose(basis_image(-u, -v, S), b, atol=1e-14)
        np.testing.assert_allclose(basis_image((-u) % S, (-v) % S, S), b, atol=1e-14)


def test_representatives_are_orthonormal():
    mat = np.stack([basis_image(u, v, S).ravel() for (u, v), _ in conjugate_pairs(S)])  # (514, 1024)
    np.testing.assert_allclose(mat @ mat.T, np.eye(len(mat)), atol=1e-12)


def test_band_errors_closed_form():
    r = radius_map(S)
    assert r[C, C] == 0 and r[C, 0] == pytest.approx(1.0) and r[0, 0] == pytest.approx(np.sqrt(2))
    heat = np.where(r <= 1 / 3, 10.0, np.where(r <= 2 / 3, 20.0, 30.0))
    assert band_errors(heat) == {"low": 10.0, "middle": 20.0, "high": 30.0}
    assert (
        (r <= 1 / 3).sum(),
        ((r > 1 / 3) & (r <= 2 / 3)).sum(),
        (r > 2 / 3).sum(),
    ) == (89, 268, 667)
    assert (FOURIER_ERROR_LOW, FOURIER_ERROR_MIDDLE, FOURIER_ERROR_HIGH) == (
        "fourier/error_low",
        "fourier/error_middle",
        "fourier/error_high",
    )
    assert (FOURIER_HEATMAP_NPY, FOURIER_HEATMAP_PNG) == (
        "fourier_heatmap.npy",
        "fourier_heatmap.png",
    )


# -- a synthetic task: a classifier behind an ideal low-pass filter -----------------------

CUTOFF = 0.5  # in units of r (the axis Nyquist frequency is 1): |k| <= 8 bins
CENTRE = 128 / 255  # mid-grey, exactly representable in uint8
TAU = 1.0  # energy threshold, squared L2 in [0, 1] pixel units


class LowPassEnergy(nn.Module):
    """Class 1 iff the low-passed grey image minus mid-grey has energy above ``TAU``.

    Undoes the normalisation, averages the channels (the perturbation is the same on
    each, so it passes unchanged), keeps the DFT bins with ``r <= CUTOFF`` and sums
    the squares. A unit-norm perturbation ``ε·U`` in the pass band adds ``ε²`` to the
    energy of an image without low-frequency content; one above the cutoff adds nothing.
    """

    def __init__(self, mean=MEAN, std=STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        keep = np.fft.ifftshift(radius_map(S) <= CUTOFF)  # unshifted DFT layout
        self.register_buffer("keep", torch.as_tensor(keep))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = (x * self.std + self.mean).mean(dim=1) - CENTRE  # (B, S, S)
        low = torch.fft.ifft2(torch.fft.fft2(grey) * self.keep).real
        energy = low.pow(2).sum(dim=(1, 2))
        return torch.stack([torch.zeros_like(energy), energy - TAU], dim=1)  # (B, 2) logits


def _high_noise(rng: np.random.Generator, n: int, peak: float) -> np.ndarray:
    """(n, S, S, 3) noise with no DFT content at r <= CUTOFF + 0.1, peak |value| = ``peak``."""
    spec = np.fft.fft2(rng.standard_normal((n, 3, S, S)))
    spec[..., np.fft.ifftshift(radius_map(S) <= CUTOFF + 0.1)] = 0
    noise = np.fft.ifft2(spec).real
    noise *= peak / np.abs(noise).max(axis=(1, 2, 3), keepdims=True)
    return noise.transpose(0, 2, 3, 1)


def synthetic_task(n: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: mid-grey plus high-frequency noise; class 1: also a low-frequency cosine of norm 2.

    Pixels stay within ±0.2 of mid-grey, so perturbations up to ε = 4 (peak 0.18) never clip.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    x = CENTRE + _high_noise(rng, n, 0.03)
    low_bins = [(u, v) for u in range(-3, 4) for v in range(-3, 4) if (u, v) != (0, 0)]
    for i in np.flatnonzero(labels == 1):
        u, v = low_bins[rng.integers(len(low_bins))]
        x[i] += 2.0 * basis_image(u, v, S)[:, :, None]  # peak 2·√2/32 ≈ 0.09
    assert 0.25 < x.min() and x.max() < 0.75
    return np.round(x * 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def task():
    images, labels = synthetic_task()
    model = LowPassEnergy()
    clean = clean_error(model, images, labels, mean=MEAN, std=STD)
    return model, images, labels, clean


def test_synthetic_task_is_clean_and_matches_an_independent_forward(task):
    model, images, labels, clean = task
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)
    x = x / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        direct = (model(x).argmax(1).numpy() != labels).mean() * 100
    assert clean == direct == 0.0


def test_eps_zero_is_the_clean_error_everywhere(task):
    model, images, labels, clean = task
    heat = fourier_heatmap(model, images, labels, 0.0, mean=MEAN, std=STD, batch_size=100)
    assert heat.shape == (S, S) and (heat == clean).all()


def test_eps_zero_random_model_many_batch_layouts():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (12, S, S, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 12)
    clean = clean_error(model, images, labels, mean=MEAN, std=STD)
    assert 0 <= clean <= 100
    for batch_size in (
        5,
        12,
        40,
    ):  # split images, one frequency per batch, several per batch
        heat = fourier_heatmap(model, images, labels, 0.0, mean=MEAN, std=STD, batch_size=batch_size)
        assert (heat == clean).all(), batch_size


def test_low_pass_model_map(task):
    model, images, labels, clean = task
    calls = []
    heat = fourier_heatmap(
        model,
        images,
        labels,
        3.0,
        mean=MEAN,
        std=STD,
        batch_size=512,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert heat.shape == (S, S) and heat.dtype == np.float64
    assert ((0 <= heat) & (heat <= 100)).all()
    r = radius_map(S)
    passband = r <= CUTOFF
    # Above the cutoff the filter removes the perturbation entirely: exactly the clean error.
    assert (heat[~passband] == clean).all()
    # In the pass band every class-0 image gains energy ε² = 9 > TAU: at least half are wrong.
    assert (heat[passband] >= 50.0).all()
    # DC is at the centre (sensitive), the Nyquist corner at [0, 0] is not.
    assert heat[C, C] >= 50.0 and heat[0, 0] == clean
    # Conjugate symmetry of the shifted map: [c+a, c+b] == [c-a, c-b] where both are on the grid.
    for a in range(-C + 1, C):
        for b in range(-C + 1, C):
            assert heat[C + a, C + b] == heat[C - a, C - b]
    bands = band_errors(heat)
    assert bands["low"] >= 50.0 and bands["high"] == clean
    assert calls[-1] == (514, 514) and all(d1 < d2 for (d1, _), (d2, _) in itertools.pairwise(calls))
    # Same seed, other batch layout: the same signs, so the same map.
    again = fourier_heatmap(model, images, labels, 3.0, mean=MEAN, std=STD, batch_size=20)
    np.testing.assert_array_equal(again, heat)


def test_resnet18_runs():
    from models.resnet import build_resnet18

    torch.manual_seed(0)
    model = build_resnet18(width=4)
    rng = np.random.default_rng(2)
    images = torch.as_tensor(rng.integers(0, 256, (16, S, S, 3), dtype=np.uint8))
    labels = torch.as_tensor(rng.integers(0, 10, 16))
    model.train()  # the map runs it in eval mode and restores the flag
    heat = fourier_heatmap(model, images, labels, 4.0, batch_size=1024, seed=3)  # CIFAR-10 normalisation
    assert model.training
    assert heat.shape == (S, S) and np.isfinite(heat).all()
    assert ((0 <= heat) & (heat <= 100)).all()
    assert set(band_errors(heat)) == {"low", "middle", "high"}


def test_rejects_bad_input(task):
    model, images, labels, _ = task
    with pytest.raises(ValueError):
        fourier_heatmap(model, images, labels, -1.0, mean=MEAN, std=STD)
    with pytest.raises(ValueError):
        fourier_heatmap(model, images.astype(np.float32), labels, 1.0, mean=MEAN, std=STD)
    with pytest.raises(ValueError):
        fourier_heatmap(model, images, labels[:-1], 1.0, mean=MEAN, std=STD)


# -- figures -------------------------------------------------------------------------------


def test_figures_are_png():
    r = radius_map(S)
    a, b = 100 * (r <= 0.5), 50 * (r > 0.7)
    assert heatmap_png(a, "low-pass, ε = 3").startswith(b"\x89PNG")
    assert heatmap_png(b, "t", vmin=0, vmax=100).startswith(b"\x89PNG")
    assert heatmap_grid_png({"free": a, "fixed": b, "same": a}, baseline="free").startswith(b"\x89PNG")
    assert heatmap_grid_png({"only": a}, baseline="only").startswith(b"\x89PNG")
    with pytest.raises(ValueError):
        heatmap_grid_png({"free": a}, baseline="missing")
