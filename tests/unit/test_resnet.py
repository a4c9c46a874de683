"""models.resnet: the CIFAR ResNet-18 shape, its parameter count and the injected stem."""

import pytest
import torch
from torch import nn

from models.resnet import ResNet18, build_resnet18
from models.stem import FrequencyStem


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_width_64_has_the_standard_cifar_resnet18_parameter_count():
    # 11,173,962: the usual CIFAR ResNet-18 (3x3 stem, bias-free convs, 1x1 projection shortcuts).
    assert n_params(ResNet18()) == 11_173_962
    # A learned stem adds one logit per filter; a 7x7 stem adds (49 - 9)·3·64 weights.
    assert n_params(build_resnet18(mode="learned")) == 11_173_962 + 64
    assert n_params(build_resnet18(stem_kernel=7)) == 11_173_962 + 40 * 3 * 64


@pytest.mark.parametrize("k", [3, 5, 7])
def test_forward_shapes_and_the_stem_kernel(k):
    torch.manual_seed(0)
    model = build_resnet18(width=8, stem_kernel=k, num_classes=7, mode="fixed", proportion=0.25, cutoff=0.6)
    assert isinstance(model.stem, FrequencyStem) and model.stem.weight.shape == (8, 3, k, k)
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (2, 64, 4, 4)  # widths 8, 16, 32, 64; strides 1, 2, 2, 2, no max-pool
    assert model(x).shape == (2, 7)
    assert model.stem.measured_proportion() == 2 / 8


def test_build_passes_every_frequency_setting_to_the_stem():
    model = build_resnet18(
        width=16,
        stem_kernel=5,
        mode="learned",
        proportion=0.3,
        cutoff=0.7,
        threshold=0.4,
        perturbation=0.2,
        proportion_weight=1.5,
    )
    stem = model.stem
    assert (stem.out_channels, stem.kernel_size, stem.mode) == (16, 5, "learned")
    assert (stem.proportion, stem.cutoff, stem.threshold) == (0.3, 0.7, 0.4)
    assert (stem.perturbation, stem.proportion_weight) == (0.2, 1.5)
    with pytest.raises(ValueError, match="cutoff"):
        build_resnet18(stem_kernel=3, cutoff=1.0)


def test_gradients_reach_the_stem_and_a_custom_stem_can_be_injected():
    torch.manual_seed(1)
    model = build_resnet18(width=8, mode="learned", perturbation=0.3).train()
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss = loss + model.stem.proportion_loss()
    loss.backward()
    assert model.stem.weight.grad.abs().sum() > 0 and (model.stem.alpha_logits.grad != 0).any()
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    custom = ResNet18(width=8, stem=conv)
    assert custom.stem is conv and custom(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_default_free_resnet_equals_plain_conv_stem_network():
    # The baseline: a free stem with σ = 0 and the same weights is exactly an nn.Conv2d stem.
    torch.manual_seed(2)
    free = build_resnet18(width=8).eval()
    plain = ResNet18(width=8, stem=nn.Conv2d(3, 8, 3, padding=1, bias=False)).eval()
    plain.load_state_dict(free.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(free(x), plain(x))


def test_channels_last_and_bf16_autocast():
    torch.manual_seed(3)
    model = build_resnet18(width=8, mode="fixed").eval()
    x = torch.randn(2, 3, 32, 32)
    reference = model(x)
    model = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(
        model(x.contiguous(memory_format=torch.channels_last)), reference, atol=1e-4, rtol=1e-4
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    # The body runs in bf16; the classifier head stays float32 so close logits never tie.
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out, reference, atol=0.1, rtol=0.05)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"width": 0}, "width"), ({"num_classes": 0}, "num_classes"), ({"stem_kernel": 4}, "kernel_size")],
)
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ResNet18(**kwargs)
