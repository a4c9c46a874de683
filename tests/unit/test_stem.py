"""models.stem: the fixed projection, the learned energy share, perturbation and the plain-conv baseline."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from models import spectral
from models.resnet import build_resnet18
from models.stem import FrequencySettings, FrequencyStem, count_low_filters, initial_alpha

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


def split_cutoffs(k: int) -> list[float]:
    """One cutoff for every way the k×k grid splits into two non-empty bands: each distinct
    radius below the largest (``r <= r_c`` holds it) and the midpoint above it."""
    radii = sorted({round(r, 12) for r in spectral.normalised_radius(k).flatten().tolist()})
    out = []
    for r, nxt in zip(radii[:-1], radii[1:], strict=True):
        out += [r, (r + nxt) / 2] if r > 0 else [(r + nxt) / 2]
    return out


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("sigma", [0.0, 0.6])
def test_learned_low_band_energy_share_is_alpha_for_every_filter_and_cutoff(k, sigma):
    """``L_o(W) = α_o`` to 1e-6, every filter, every split of the grid, perturbation on and off;
    the perturbed training weight is the effective weight's spectrum times the noise (as before)."""
    cutoffs = split_cutoffs(k)
    assert len(cutoffs) >= 3
    for i, cutoff in enumerate(cutoffs):
        torch.manual_seed(100 * k + i)
        stem = FrequencyStem(
            out_channels=24, kernel_size=k, mode="learned", cutoff=cutoff, perturbation=sigma
        )
        with torch.no_grad():
            stem.alpha_logits.normal_(0.0, 2.5)  # shares all over (0, 1), not just the start
            stem.alpha_logits[0] = 9.0  # and near the ends
            stem.alpha_logits[1] = -9.0
        for train in (False, True):
            stem.train(train)
            ratio = spectral.low_energy_ratio(stem.effective_weight().detach().double(), cutoff)
            alpha = stem.alpha().double()
            assert (ratio - alpha).abs().max() < 1e-6, (k, cutoff, train)
            assert stem.measured_proportion() == stem.alpha_proportion()  # p̂ from W = p̂ from α
        # The training forward weight: the very perturbation of W the other modes get.
        torch.manual_seed(7)
        w = stem.forward_weight().detach()
        if sigma == 0:
            assert torch.equal(w, stem.effective_weight().detach())
        else:
            torch.manual_seed(7)
            noise = stem._perturbation_gains()
            clean = stem.effective_weight().detach()
            expected = torch.fft.ifft2(torch.fft.fft2(clean) * noise[:, None]).real
            torch.testing.assert_close(w, expected, rtol=0, atol=1e-6)
        stem.eval()
        assert torch.equal(stem.forward_weight(), stem.effective_weight())  # evaluation never perturbs


def test_learned_weight_keeps_the_kernel_norm_and_is_v_where_alpha_is_vs_own_share():
    torch.manual_seed(11)
    stem = FrequencyStem(out_channels=8, kernel_size=5, mode="learned", cutoff=0.6)
    v = stem.weight.detach()
    w = stem.effective_weight().detach()
    torch.testing.assert_close(w.flatten(1).norm(dim=1), v.flatten(1).norm(dim=1), rtol=1e-6, atol=0)
    own_share = spectral.low_energy_ratio(v, 0.6)
    with torch.no_grad():
        stem.alpha_logits.copy_(torch.logit(own_share))
    torch.testing.assert_close(stem.effective_weight().detach(), v, rtol=1e-5, atol=1e-6)


def test_learned_alpha_starts_evenly_spread_and_gets_gradients():
    torch.manual_seed(7)
    stem = FrequencyStem(out_channels=8, mode="learned")
    torch.testing.assert_close(stem.alpha(), (torch.arange(8) + 0.5) / 8, rtol=0, atol=1e-6)
    torch.testing.assert_close(stem.alpha(), initial_alpha(8), rtol=0, atol=1e-6)
    assert stem.alpha_proportion() == 0.5 == stem.measured_proportion()
    stem(torch.randn(2, 3, 8, 8)).square().mean().backward()
    assert (stem.alpha_logits.grad != 0).all()
    assert (
        FrequencyStem(mode="fixed").alpha() is None and FrequencyStem(mode="fixed").alpha_proportion() is None
    )


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_gradients_reach_alpha_through_the_whole_network(sigma):
    """Cross-entropy of a learned-mode ResNet-18 (BN after the stem) reaches every a_o, finite and
    non-zero, in training mode with and without perturbation."""
    torch.manual_seed(12)
    model = build_resnet18(
        width=8, stem_kernel=5, frequency=FrequencySettings(mode="learned", cutoff=0.6, perturbation=sigma)
    ).train()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    F.cross_entropy(model(x), y).backward()
    grad = model.stem.alpha_logits.grad
    assert grad is not None and torch.isfinite(grad).all() and (grad != 0).all(), grad
    assert torch.isfinite(model.stem.weight.grad).all() and model.stem.weight.grad.abs().sum() > 0


def test_torch_compile_traces_the_learned_stem_in_one_graph():
    """Dynamo traces the learned stem (forward and backward, perturbed) without a graph break
    (``fullgraph``) and gives eager's output and gradients."""
    torch._dynamo.reset()
    torch.manual_seed(13)
    stem = FrequencyStem(out_channels=8, kernel_size=5, mode="learned", cutoff=0.6, perturbation=0.3).train()
    x = torch.randn(2, 3, 12, 12)
    compiled = torch.compile(stem, fullgraph=True, backend="eager")
    results = []
    for run in (stem, compiled):
        stem.zero_grad()
        torch.manual_seed(1)
        out = run(x)
        (out.square().mean() + stem.proportion_loss()).backward()
        results.append((out.detach(), stem.alpha_logits.grad.clone(), stem.weight.grad.clone()))
    for eager, traced in zip(*results, strict=True):
        torch.testing.assert_close(traced, eager, rtol=1e-5, atol=1e-6)


def test_soft_count_pull_sets_the_hard_proportion_to_the_target():
    """From p̂ = ½, λ = 5 (T = 0.05) pulls the count of α_o ≥ τ to round(p·O) against a toy task
    that by itself leaves it elsewhere; λ = 0 leaves it where the task puts it."""

    def train(weight: float, target: float) -> FrequencyStem:
        torch.manual_seed(8)
        # cutoff 0.5 (DC alone in LOW at k = 3) as when the test was written: this toy teacher then
        # pulls the count down from ½ on its own, so 0.75 is a pull against the task
        stem = FrequencyStem(
            out_channels=8, mode="learned", proportion=target, proportion_weight=weight, cutoff=0.5
        )
        teacher = 0.2 * torch.randn(8, 3, 3, 3)
        x = torch.randn(8, 3, 8, 8)
        opt = torch.optim.SGD(stem.parameters(), lr=0.2)
        for _ in range(300):
            loss = F.mse_loss(stem(x), F.conv2d(x, teacher, padding=1)) + stem.proportion_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return stem

    free = train(0.0, 0.25)
    for target in (0.25, 0.75):
        pulled = train(5.0, target)
        assert pulled.alpha_proportion() == target == pulled.measured_proportion(), pulled.alpha()
        assert abs(pulled.soft_proportion().item() - target) < 0.5 / 8  # within half a filter
    assert free.alpha_proportion() == 0.25  # the task's own pull: down from ½ (so 0.75 is against it)


def test_proportion_loss_value_and_zero_outside_learned_mode():
    stem = FrequencyStem(
        out_channels=4, mode="learned", proportion=0.2, proportion_weight=3.0, temperature=0.1
    )
    with torch.no_grad():
        stem.alpha_logits.copy_(torch.tensor([0.0, 1.0, -2.0, 4.0]))
    soft = torch.sigmoid((torch.sigmoid(stem.alpha_logits) - 0.5) / 0.1).mean()
    torch.testing.assert_close(stem.soft_proportion(), soft)
    torch.testing.assert_close(stem.proportion_loss(), 3.0 * (soft - 0.2) ** 2)
    assert stem.alpha_proportion() == 0.75  # α = 0.5 counts as low (α ≥ τ)
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
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
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
    """The stem's matrix form equals its definition computed with torch.fft: ``Re(IDFT(g ⊙ DFT(V)))``
    (fixed), ``‖V‖·(√α·L̂ + √(1−α)·Ĥ)`` (learned); perturbed: ``Re(IDFT(s ⊙ DFT(W)))``."""
    torch.manual_seed(k)
    stem = FrequencyStem(
        out_channels=12, kernel_size=k, mode=mode, proportion=0.4, cutoff=0.6, perturbation=0.5
    )
    v = stem.weight.detach()
    if mode == "learned":
        with torch.no_grad():
            stem.alpha_logits.normal_()
        low_mask, _ = spectral.band_masks(k, 0.6)
        low = torch.fft.ifft2(torch.fft.fft2(v) * low_mask).real
        high = v - low
        a = stem.alpha().detach()[:, None, None, None]

        def unit(t):
            return t / t.flatten(1).norm(dim=1)[:, None, None, None]

        expected = v.flatten(1).norm(dim=1)[:, None, None, None] * (
            a.sqrt() * unit(low) + (1 - a).sqrt() * unit(high)
        )
    else:
        expected = torch.fft.ifft2(torch.fft.fft2(v) * stem.band_gains[:, None]).real
    torch.testing.assert_close(stem.effective_weight().detach(), expected, rtol=0, atol=1e-6)
    # The perturbed forward weight: same draw (same seed) through both definitions.
    stem.train()
    torch.manual_seed(1)
    perturbed = stem.forward_weight().detach()
    torch.manual_seed(1)
    noise = stem._perturbation_gains()
    expected = torch.fft.ifft2(torch.fft.fft2(expected) * noise[:, None]).real
    torch.testing.assert_close(perturbed, expected, rtol=0, atol=1e-6)
