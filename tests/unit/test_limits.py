"""study.limits and the config's bounds on every size-like setting: the parameter count in
closed form against the real network, bounds derived from the machine's memory (stated in
the error), fixed ceilings where the cost is time, and CIFAR-10's own sizes for image counts."""

from __future__ import annotations

import pytest

from study import limits
from study.config import TrialConfig


def refusal(overrides: list[str]) -> str:
    with pytest.raises(ValueError) as info:
        TrialConfig.from_yaml(None, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("width, k, classes", [(64, 3, 10), (8, 5, 10), (3, 7, 100), (17, 3, 2)])
def test_parameter_count_matches_the_real_network(width, k, classes):
    from models.resnet import build_resnet18

    model = build_resnet18(width=width, stem_kernel=k, num_classes=classes)
    assert limits.resnet18_parameters(width, k, classes) == sum(p.numel() for p in model.parameters())


def test_conv_outputs_per_image_match_the_real_network():
    """The training lower bound counts each convolution's output once: checked with hooks."""
    import torch

    from models.resnet import build_resnet18

    model = build_resnet18(width=8)
    counted = []
    for m in model.modules():  # the stem convolves functionally: hooked as a whole
        if m is model.stem or isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda mod, inp, out: counted.append(out[0].numel()))
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert sum(counted) * limits.ACTIVATION_BYTES == limits.train_bytes_per_image(8)


def test_the_issues_examples_are_refused_at_load_time_with_the_bound():
    m = refusal(["model.width=1000000"])
    assert m.startswith("config model.width: 1000000 needs ") and "for the network's weights alone" in m
    top = int(m.rsplit("allowed 1..", 1)[1])
    memory = limits.machine_memory_bytes()
    # The stated bound is exact: its weights fit, one more channel's do not.
    assert (
        4 * limits.resnet18_parameters(top, 3, 10) <= memory < 4 * limits.resnet18_parameters(top + 1, 3, 10)
    )
    assert refusal(["train.epochs=1000000000"]) == (
        f"config train.epochs: 1000000000 is not allowed; allowed 1..{limits.MAX_EPOCHS}"
    )


def test_bounds_follow_the_memory_setting(monkeypatch):
    """FREQSTUDY_MEMORY_GB sizes the bounds for other machines (a driver validating for GPU
    workers); a width that fits 80 GiB is refused at 1 GiB, naming the variable."""
    monkeypatch.setenv(limits.MEMORY_ENV, "80")
    TrialConfig.from_yaml(None, ["model.width=512", "train.batch_size=256"])
    monkeypatch.setenv(limits.MEMORY_ENV, "1")
    m = refusal(["model.width=512"])
    assert "FREQSTUDY_MEMORY_GB says 1.0 GB" in m and m.startswith("config model.width: 512")
    monkeypatch.setenv(limits.MEMORY_ENV, "lots")
    assert refusal([]) == "FREQSTUDY_MEMORY_GB='lots': allowed a positive number of GiB, e.g. 80"


def test_training_and_evaluation_batches_are_bounded_by_memory(monkeypatch):
    monkeypatch.setenv(limits.MEMORY_ENV, "4")
    memory = 4 * 2**30
    state = 12 * limits.resnet18_parameters(64, 3, 10)
    m = refusal(["train.batch_size=20000"])
    top = (memory - state) // limits.train_bytes_per_image(64)
    assert m.startswith("config train.batch_size: 20000 needs at least") and m.endswith(f"allowed 1..{top}")
    TrialConfig.from_yaml(None, [f"train.batch_size={top}"])
    m = refusal(["eval.batch_size=10000000"])
    assert m.startswith("config eval.batch_size: 10000000 needs at least")
    # Training state alone (weights, gradients, momentum) can exceed memory where weights do not.
    m = refusal(["model.width=512"])
    assert "training holds weights, gradients and momentum" in m


def test_the_classifier_is_named_when_it_is_what_does_not_fit():
    m = refusal(["model.num_classes=100000000000"])
    assert m.startswith("config model.num_classes: 100000000000 needs")


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.train_limit=10000000", "allowed 10..50000 (CIFAR-10's training images) or null"),
        ("train.batch_size=60000", "allowed 1..50000 (CIFAR-10's training images)"),
        ("eval.corruption_limit=1000000", "allowed 1..50000"),
        ("eval.fourier_images=20000", "allowed 0..10000 (CIFAR-10's test images"),
        ("eval.severities=[]", "eval.severities: empty, but corruptions are evaluated"),
        ("eval.severities=[3,3]", "eval.severities: [3, 3]: severities must not repeat"),
    ],
)
def test_image_counts_are_bounded_by_cifar10(override, message):
    assert message in refusal([override])


def test_a_space_cannot_search_past_the_bound(tmp_path):
    """Every bound of a searched parameter builds a config, so the bound applies to spaces."""
    from study.search.space_parser import load_space

    path = tmp_path / "wide.yaml"
    path.write_text(
        "objectives:\n  - {metric: val/clean_acc, direction: maximize}\n"
        "parameters:\n  model.width: {type: int, low: 8, high: 1000000}\n"
    )
    with pytest.raises(ValueError, match=r"line 4: parameters\[model.width\]: 1000000 needs"):
        load_space(path)


def test_a_grid_is_counted_not_listed(tmp_path):
    """A grid step of 5e-7 over [0, 1] is 2,000,001 values, and Optuna's grid sampler lists
    every combination in memory (a step of 1e-12 would be 10**12): refused at the parameter,
    counted without listing. The old check listed them, and accepted this one."""
    from study.search.space_parser import load_space
    from study.search.spaces import MAX_GRID_POINTS

    path = tmp_path / "grid.yaml"
    head = (
        "objectives:\n  - {metric: val/clean_acc, direction: maximize}\nsampler: {name: grid}\nparameters:\n"
    )
    path.write_text(
        head + "  frequency.perturbation: {type: uniform, low: 0.0, high: 1.0, step: 0.0000005}\n"
    )
    with pytest.raises(ValueError) as info:
        load_space(path)
    assert str(info.value) == (
        f"space {path} line 5: parameters[frequency.perturbation]: the grid reaches 2,000,001 combinations "
        f"here; the grid sampler lists every one in memory: allowed at most {MAX_GRID_POINTS:,} "
        "(a coarser step, or another sampler)"
    )
    path.write_text(head + "  frequency.perturbation: {type: uniform, low: 0.0, high: 1.0, step: 1.0e-12}\n")
    with pytest.raises(ValueError, match="the grid reaches 1,000,000,000,001 combinations"):
        load_space(path)
    path.write_text(
        "num_trials: 4\n"
        + head
        + "  frequency.perturbation: {type: uniform, low: 0.0, high: 0.5, step: 0.25}\n"
    )
    assert [p.grid_size() for p in load_space(path).parameters] == [3]
