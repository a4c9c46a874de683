"""models.stem: the fixed projection, learned gains, perturbation and the plain-conv baseline."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from models import spectral
from models.stem import FrequencyStem, count_low_filters

PROPORTIONS = [i / 10 for i in range(11)] + [1 / 3, 0.55, 0.97]


def sgd_steps(stem: FrequencyStem, steps: int, *, lr: float = 0.5, seed: int = 0) -> None:
    """A few SGD steps on a random regression target through the stem's forward."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, stem.in_channels, 8, 8, generator=gen)
    target = torch.randn(4, stem.out_channels, 8, 8, generator=gen)
    opt = torch.optim.SGD(stem.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(stem(x), target).backward()
        opt.step()


@pytest.mark.parametrize("k", [3, 5, 7])
def test_fixed_mode_measures_exactly_round_p_o_over_o(k):
    out = 32
    for cutoff in (0.5, 0.8):
        for p in PROPORTIONS:
            torch.manual_seed(0)
            stem = FrequencyStem(out_channels=out, kernel_size=k, mode="fixed", proportion=p, cutoff=cutoff)
            expected = round(p * out) / out
            assert stem.n_low() == round(p * out)
            assert stem.measured_proportion() == expected, (p, cutoff, "init")
            sgd_steps(stem, 3)
            assert stem.measured_proportion() == expected, (p, cutoff, "after SGD")
            classes = spectral.classify_filters(stem.effective_weight().detach(), cutoff)
            assert torch.equal(
                classes, (torch.arange(out) < round(p * out)).long()
            )  # the first round(p·O) are low


@pytest.mark.parametrize("k", [3, 5, 7])
def test_fixed_projection_is_idempotent_real_and_band_limited(k):
    torch.manual_seed(1)
    stem = FrequencyStem(out_channels=16, kernel_size=k, mode="fixed", proportion=0.5, cutoff=0.6)
    once = stem.effective_weight().detach().clone()
    assert once.dtype == torch.float32 and torch.isfinite(once).all()
    with torch.no_grad():
        stem.weight.copy_(once)
    twice = stem.effective_weight().detach()
    torch.testing.assert_close(twice, once, atol=1e-6, rtol=1e-5)
    # The discarded band carries (numerically) nothing, and the imaginary part
    # that Re() drops is rounding only.
    low, high = spectral.band_masks(k, 0.6)
    power = spectral.power_spectrum(once)
    assert power[:8][:, high].max() < 1e-10 * power[:8].sum()
    assert power[8:][:, low].max() < 1e-10 * power[8:].sum()
    imag = torch.fft.ifft2(torch.fft.fft2(stem.weight.detach()) * stem.band_gains[:, None]).imag
    assert imag.abs().max() < 1e-6


@pytest.mark.parametrize("k", [3, 5, 7])
def test_free_mode_without_perturbation_is_a_plain_conv2d(k):
    torch.manual_seed(2)
    for stride in (1, 2):
        stem = FrequencyStem(out_channels=16, kernel_size=k, stride=stride)
        conv = nn.Conv2d(3, 16, k, stride=stride, padding=k // 2, bias=False)
        conv.load_state_dict(stem.state_dict())  # same keys and shapes: a baseline checkpoint loads
        x = torch.randn(2, 3, 16, 16)
        for train in (True, False):
            stem.train(train)
            assert torch.equal(stem(x), conv(x))
    assert stem.effective_weight() is stem.weight


@pytest.mark.parametrize("mode", ["free", "fixed", "learned"])
def test_sigma_zero_is_bit_identical_and_eval_never_perturbs(mode):
    torch.manual_seed(3)
    plain = FrequencyStem(out_channels=8, mode=mode, perturbation=0.0)
    noisy = FrequencyStem(out_channels=8, mode=mode, perturbation=0.8)
    noisy.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 12, 12)
    plain.eval()
    reference = plain(x)
    plain.train()
    assert torch.equal(plain(x), reference)  # σ = 0 while training: the same bits
    noisy.eval()
    assert torch.equal(noisy(x), reference) and torch.equal(noisy(x), reference)  # eval: never perturbed
    noisy.train()
    assert not torch.allclose(noisy(x), reference)  # and training does perturb


def test_perturbation_scales_power_symmetrically_and_is_unbiased_within_two_percent():
    torch.manual_seed(4)
    sigma, filters, draws = 0.3, 1024, 24  # 24 draws of 1024 filters: ~25k draws per bin
    stem = FrequencyStem(out_channels=filters, kernel_size=5, perturbation=sigma).train()
    clean = spectral.power_spectrum(stem.effective_weight().detach().double())  # (O, k, k)
    with torch.no_grad():
        perturbed = torch.stack([stem.forward_weight() for _ in range(draws)])  # (D, O, C, k, k)
    assert torch.isfinite(perturbed).all() and not perturbed.is_complex()
    spectra = torch.fft.fft2(perturbed.double())
    power = (spectra.abs() ** 2).sum(2)  # (D, O, k, k)
    factor = power / clean  # = max(0, 1 + σξ) per draw, filter and bin
    neg = (-torch.arange(5)) % 5
    torch.testing.assert_close(factor, factor[..., neg, :][..., neg], rtol=1e-3, atol=1e-4)  # Hermitian
    # Mean perturbed power within 2% of the unperturbed power, bin by bin and for the whole layer.
    assert (factor.mean((0, 1)) - 1).abs().max() < 0.02
    assert abs(power.sum((1, 2, 3)).mean() / clean.sum() - 1) < 0.02
    # Each bin keeps an N(0, 1) draw (mirrored bins too): spread of the factor ≈ σ.
    assert (factor.std((0, 1)) - sigma).abs().max() < 0.1 * sigma
    # Phase untouched (channel by channel) wherever the power was not clipped to zero.
    clean_spectra = torch.fft.fft2(stem.weight.detach().double())  # (O, C, k, k)
    phase_error = torch.angle(spectra[:2] * clean_spectra.conj()).abs()  # (2, O, C, k, k)
    kept = (factor[:2] > 1e-6)[:, :, None].expand_as(phase_error)
    assert phase_error[kept].max() < 1e-3


def test_large_sigma_clips_power_at_zero_and_stays_real():
    torch.manual_seed(5)
    stem = FrequencyStem(out_channels=8, mode="fixed", kernel_size=7, cutoff=0.7, perturbation=3.0).train()
    w = stem.forward_weight().detach()
    assert torch.isfinite(w).all()
    factor = spectral.power_spectrum(w.double()) / spectral.power_spectrum(
        stem.effective_weight().detach().double()
    )
    assert (factor.nan_to_num(1.0) < 1e-8).any()  # some bins were zeroed by max(0, ·)


@pytest.mark.parametrize("mode", ["free", "fixed", "learned"])
def test_gradients_flow_through_v_under_perturbation(mode):
    torch.manual_seed(6)
    stem = FrequencyStem(out_channels=8, mode=mode, perturbation=0.5).train()
    stem(torch.randn(2, 3, 8, 8)).square().mean().backward()
    assert torch.isfinite(stem.weight.grad).all() and stem.weight.grad.abs().sum() > 0
    if mode == "learned":
        assert torch.isfinite(stem.alpha_logits.grad).all() and (stem.alpha_logits.grad != 0).all()


def test_learned_alpha_gets_gradients_and_starts_at_one_half():
    torch.manual_seed(7)
    stem = FrequencyStem(out_channels=8, mode="learned")
    assert torch.equal(stem.alpha(), torch.full((8,), 0.5))
    stem(torch.randn(2, 3, 8, 8)).square().mean().backward()
    assert (stem.alpha_logits.grad != 0).all()
    assert FrequencyStem(mode="fixed").alpha() is None


def test_proportion_loss_pulls_mean_alpha_toward_p():
    def train(weight: float, target: float) -> float:
        torch.manual_seed(8)
        stem = FrequencyStem(out_channels=8, mode="learned", proportion=target, proportion_weight=weight)
        teacher = 0.2 * torch.randn(8, 3, 3, 3)  # a toy task that by itself moves α elsewhere
        x = torch.randn(8, 3, 8, 8)
        opt = torch.optim.SGD(stem.parameters(), lr=0.05)
        for _ in range(300):
            loss = F.mse_loss(stem(x), F.conv2d(x, teacher, padding=1)) + stem.proportion_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return stem.alpha().mean().item()

    free = train(0.0, 0.9)
    for target in (0.9, 0.1):
        pulled = train(20.0, target)
        assert abs(pulled - target) < 0.5 * abs(0.5 - target)  # from α = 0.5, at least half way to p
        assert abs(pulled - target) < abs(free - target)


def test_proportion_loss_value_and_zero_outside_learned_mode():
    stem = FrequencyStem(out_channels=4, mode="learned", proportion=0.2, proportion_weight=3.0)
    with torch.no_grad():
        stem.alpha_logits.copy_(torch.tensor([0.0, 1.0, -2.0, 4.0]))
    expected = 3.0 * (torch.sigmoid(stem.alpha_logits).mean() - 0.2) ** 2
    torch.testing.assert_close(stem.proportion_loss(), expected)
    for kwargs in (
        {"mode": "learned", "proportion_weight": 0.0},
        {"mode": "fixed", "proportion_weight": 3.0},
        {},
    ):
        loss = FrequencyStem(**kwargs).proportion_loss()
        assert loss.shape == () and loss.item() == 0.0


def test_state_dict_holds_only_the_free_parameters():
    assert set(FrequencyStem(mode="free").state_dict()) == {"weight"}
    assert set(FrequencyStem(mode="fixed").state_dict()) == {"weight"}
    assert set(FrequencyStem(mode="learned").state_dict()) == {"weight", "alpha_logits"}


def test_bf16_autocast_and_channels_last_give_the_fp32_result():
    torch.manual_seed(9)
    stem = FrequencyStem(out_channels=16, kernel_size=5, mode="fixed", cutoff=0.6).eval()
    x = torch.randn(2, 3, 16, 16)
    reference = stem(x)
    assert stem.effective_weight().dtype == torch.float32
    torch.testing.assert_close(
        stem(x.contiguous(memory_format=torch.channels_last)), reference, atol=1e-5, rtol=1e-5
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = stem(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.05)


def test_perturbation_follows_the_torch_seed():
    stem = FrequencyStem(out_channels=8, perturbation=0.5).train()
    x = torch.randn(1, 3, 8, 8)
    torch.manual_seed(10)
    a = stem(x)
    torch.manual_seed(10)
    assert torch.equal(stem(x), a)


def test_n_low_counts_measured_filters_outside_fixed_mode():
    stem = FrequencyStem(out_channels=6, mode="free", cutoff=0.5)  # LOW = the DC bin alone
    with torch.no_grad():
        stem.weight.zero_()
        stem.weight[:2] = 1.0  # two constant (DC) filters, four without energy
        stem.weight[2, 0, 0, 0] = 1.0  # an impulse: flat spectrum, 1/9 of it at DC -> high
    assert stem.n_low() == 2
    assert stem.measured_proportion() == pytest.approx(2 / 3)
    assert count_low_filters(out_channels=64, proportion=0.3) == 19


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"proportion": -0.1}, "proportion"),
        ({"proportion": 1.5}, "proportion"),
        ({"proportion": math.nan}, "proportion"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"kernel_size": -3}, "kernel_size"),
        ({"perturbation": -0.5}, "perturbation"),
        ({"cutoff": 0.0}, "cutoff"),
        ({"cutoff": 1.5}, "cutoff"),
        ({"cutoff": 0.95}, "cutoff"),  # leaves HIGH empty at k = 3
        ({"mode": "adaptive"}, "mode"),
        ({"proportion_weight": -1.0}, "proportion_weight"),
        ({"threshold": 2.0}, "threshold"),
        ({"out_channels": 0}, "out_channels"),
        ({"stride": 0}, "stride"),
    ],
)
def test_constructor_rejects_bad_arguments_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name) as info:
        FrequencyStem(**kwargs)
    assert "\n" not in str(info.value)
    assert np.any([word in str(info.value) for word in ("must", "allowed", "work")])


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("mode", ["fixed", "learned"])
def test_effective_weight_is_the_fft_definition(mode, k):
    """The stem's matrix form equals ``Re(IDFT(g ⊙ s ⊙ DFT(V)))`` computed with torch.fft."""
    torch.manual_seed(k)
    stem = FrequencyStem(
        out_channels=12, kernel_size=k, mode=mode, proportion=0.4, cutoff=0.6, perturbation=0.5
    )
    if mode == "learned":
        with torch.no_grad():
            stem.alpha_logits.normal_()
    gains = stem._gains()
    expected = torch.fft.ifft2(torch.fft.fft2(stem.weight.detach()) * gains[:, None]).real
    torch.testing.assert_close(stem.effective_weight().detach(), expected, rtol=0, atol=1e-6)
    # The perturbed forward weight: same draw (same seed) through both definitions.
    stem.train()
    torch.manual_seed(1)
    perturbed = stem.forward_weight().detach()
    torch.manual_seed(1)
    noise = stem._perturbation_gains()
    expected = torch.fft.ifft2(torch.fft.fft2(stem.weight.detach()) * (gains * noise)[:, None]).real
    torch.testing.assert_close(perturbed, expected, rtol=0, atol=1e-6)
