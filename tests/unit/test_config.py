"""The trial config: defaults, validation errors that name the key, the flat
dotted form both ways, YAML files and ``--set`` overrides."""

from __future__ import annotations

import dataclasses

import pytest

from study import yamlfiles
from study.config import TrialConfig, known_keys, parse_overrides


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message  # one line, for the command's one-line error
    return message


def test_defaults_are_the_full_recipe():
    c = TrialConfig()
    assert (c.model.width, c.model.stem_kernel, c.frequency.mode) == (64, 3, "free")
    assert c.frequency.perturbation == 0.0 and c.train.epochs >= 30 and c.seed == 0
    assert c.eval.corruption_limit is None and len(c.eval.corruptions) == 19
    assert (c.eval.fourier_images, c.eval.fourier_eps) == (0, 4.0)  # the Fourier heat map is off


@pytest.mark.parametrize(
    "flat, key",
    [
        ({"train.learning_rate": 0.1}, "train.learning_rate"),
        ({"frequency.sigma": 0.1}, "frequency.sigma"),
        ({"optimiser.lr": 0.1}, "optimiser"),
        ({"seeds": 1}, "seeds"),
    ],
)
def test_unknown_key_is_named(flat, key):
    message = error_of(TrialConfig.from_flat, flat)
    assert key in message and "unknown key" in message


@pytest.mark.parametrize(
    "flat, key",
    [
        ({"train.epochs": "ten"}, "train.epochs"),
        ({"train.epochs": 2.5}, "train.epochs"),
        ({"train.lr": "fast"}, "train.lr"),
        ({"train.nesterov": "yes"}, "train.nesterov"),
        ({"model.width": True}, "model.width"),
        ({"eval.corruptions": 3}, "eval.corruptions"),
        ({"train": 5}, "train"),
    ],
)
def test_wrong_type_is_named(flat, key):
    message = error_of(TrialConfig.from_flat, flat)
    assert message.startswith(f"config {key}")


@pytest.mark.parametrize(
    "flat, key, allowed",
    [
        ({"frequency.proportion": 1.5}, "frequency.proportion", "[0.0, 1.0]"),
        ({"frequency.perturbation": -0.1}, "frequency.perturbation", "[0.0"),
        ({"frequency.mode": "adaptive"}, "frequency.mode", "free, fixed, learned"),
        ({"train.lr": 0.0}, "train.lr", "(0.0"),
        ({"train.epochs": 0}, "train.epochs", "1..10000"),
        ({"model.stem_kernel": 4}, "model.stem_kernel", "3, 5, 7"),
        ({"data.val_fraction": 1.0}, "data.val_fraction", "(0.0, 1.0)"),
        ({"eval.corruptions": ["fog", "rain"]}, "eval.corruptions", "gaussian_noise"),
        ({"eval.severities": [0]}, "eval.severities", "1..5"),
        ({"eval.fourier_images": -1}, "eval.fourier_images", "0..10000"),
        ({"eval.fourier_images": 10, "eval.test": False}, "eval.fourier_images", "eval.test: true"),
        ({"eval.fourier_eps": 0.0}, "eval.fourier_eps", "(0.0, inf)"),
        ({"eval.fourier_eps": float("inf")}, "eval.fourier_eps", "(0.0, inf)"),
        ({"eval.fourier_eps": float("nan")}, "eval.fourier_eps", "(0.0, inf)"),
        ({"frequency.cutoff": 1.4}, "frequency.cutoff", ""),  # at k=3 no bin is above 0.943: empty high band
    ],
)
def test_out_of_range_is_named_with_what_is_allowed(flat, key, allowed):
    message = error_of(TrialConfig.from_flat, flat)
    assert message.startswith(f"config {key}") and allowed in message


def test_flat_round_trip_covers_every_key():
    c = TrialConfig.from_flat(
        {
            "frequency.mode": "learned",
            "frequency.proportion_weight": 0.5,
            "eval.corruptions": ["fog", "frost"],
            "data.train_limit": 100,
            "seed": 3,
        }
    )
    flat = c.to_flat()
    assert set(flat) == set(known_keys())
    assert TrialConfig.from_flat(flat) == c
    assert flat["eval.corruptions"] == ["fog", "frost"] and flat["seed"] == 3


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "trial.yaml"
    path.write_text(
        "model:\n  width: 32\nfrequency:\n  mode: fixed\n  proportion: 0.25\ntrain:\n  epochs: 5\n"
    )
    c = TrialConfig.from_yaml(
        path,
        ["train.epochs=7", "frequency.cutoff=0.8", "eval.corruptions=[fog,frost]", "data.train_limit=null"],
    )
    assert c.model.width == 32 and c.frequency.mode == "fixed" and c.frequency.proportion == 0.25
    assert c.train.epochs == 7 and c.frequency.cutoff == 0.8
    assert c.eval.corruptions == ("fog", "frost") and c.data.train_limit is None
    assert TrialConfig.from_yaml(path).train.epochs == 5
    again = tmp_path / "again.yaml"
    again.write_text(c.to_yaml())
    assert TrialConfig.from_yaml(again) == c


def test_override_errors_name_the_key(tmp_path):
    assert "train.batch_size" in error_of(TrialConfig.from_yaml, None, ["train.batch_size=big"])
    assert "train.epoch" in error_of(TrialConfig.from_yaml, None, ["train.epoch=3"])
    assert "expected section.key=value" in error_of(parse_overrides, ["train.epochs"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    assert str(bad) in error_of(TrialConfig.from_yaml, bad)
    assert "not found" in error_of(TrialConfig.from_yaml, tmp_path / "missing.yaml")


def test_replace_changes_only_named_keys():
    c = TrialConfig()
    d = c.replace(**{"train.epochs": 2, "model.width": 16})
    assert (d.train.epochs, d.model.width) == (2, 16)
    assert d.frequency == c.frequency and c.train.epochs != 2  # frozen original untouched
    assert "train.epoc" in error_of(c.replace, **{"train.epoc": 2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.train.epochs = 3  # frozen


def test_exponent_notation_without_a_dot_is_a_number():
    # YAML 1.1 reads "1e6" as a string; the config must still take it as a float.
    cfg = TrialConfig.from_yaml(None, ["train.lr=1e6", "train.weight_decay=1e-3"])
    assert cfg.train.lr == 1e6 and cfg.train.weight_decay == 1e-3
    with pytest.raises(ValueError, match="train.lr: expected a number"):
        TrialConfig.from_yaml(None, ["train.lr=fast"])


def float_keys() -> list[str]:
    flat = TrialConfig().to_flat()
    return [k for k in known_keys() if isinstance(flat[k], float)]


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "inf"])
def test_no_float_key_takes_an_infinite_or_nan_value(value):
    keys = float_keys()
    assert {"train.lr", "frequency.perturbation", "eval.fourier_eps", "train.divergence_factor"} <= set(keys)
    for key in keys:
        message = error_of(TrialConfig.from_yaml, None, [f"{key}={value}"])
        assert message.startswith(f"config {key}: ") and "finite" in message and "allowed" in message
    with pytest.raises(ValueError, match=r"config train\.lr: inf is not a finite number"):
        TrialConfig.from_flat({"train.lr": float("inf")})
    with pytest.raises(ValueError, match=r"config train\.checkpoint_min_seconds: inf is not a finite"):
        dataclasses.replace(TrialConfig().train, checkpoint_min_seconds=float("inf"))


@pytest.mark.parametrize("key", ["seed", "data.split_seed", "eval.corruption_seed"])
def test_seeds_are_named_with_their_range(key):
    for bad in (-1, 2**32):
        assert error_of(TrialConfig.from_yaml, None, [f"{key}={bad}"]) == (
            f"config {key}: {bad} is out of range; allowed integers 0..4294967295 (2**32 - 1)"
        )
    assert TrialConfig.from_flat({key: 2**32 - 1}).to_flat()[key] == 2**32 - 1


def test_device_must_be_auto_cpu_cuda_or_cuda_with_an_index():
    for ok in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"):
        assert TrialConfig.from_flat({"device": ok}).device == ok
    for bad in ("cuda:abc", "cuda:", "cuda:-1", "cuda:1:2", "gpu"):
        assert error_of(TrialConfig.from_flat, {"device": bad}) == (
            f"config device: {bad!r} is not one of auto, cpu, cuda, cuda:N (N a non-negative integer)"
        )


def test_config_file_that_is_a_folder_not_utf8_or_repeats_a_key_is_one_line(tmp_path):
    assert (
        error_of(TrialConfig.from_yaml, tmp_path) == f"config file {tmp_path}: is a folder; give a YAML file"
    )
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("train:\n  schedule: cosine # é\n".encode("latin-1"))
    offset = latin.read_bytes().index(b"\xe9")
    assert error_of(TrialConfig.from_yaml, latin) == (
        f"config file {latin}: not UTF-8 text (byte 0xe9 at offset {offset})"
    )
    twice = tmp_path / "twice.yaml"
    twice.write_text("train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.4\nmodel:\n  width: 8\n")
    assert error_of(TrialConfig.from_yaml, twice) == (
        f"config file {twice} line 4: duplicate key 'lr' (first at line 2)"
    )
    twice.write_text("train: {epochs: 3}\nmodel: {width: 8}\ntrain: {lr: 0.4}\n")
    assert "line 3: duplicate key 'train' (first at line 1)" in error_of(TrialConfig.from_yaml, twice)
    # YAML merge keys still work: keys written beside a merge override the merged ones.
    merged = "defaults: &d {epochs: 3, lr: 0.1}\ntrain:\n  <<: *d\n  lr: 0.4\n"
    assert yamlfiles.safe_load(merged)["train"] == {"epochs": 3, "lr": 0.4}


def test_config_errors_from_the_command_are_one_line_exit_2(tmp_path, capsys):
    from study.cli import main

    twice = tmp_path / "twice.yaml"
    twice.write_text("seed: 1\nseed: 2\n")
    cases = [
        (["--config", str(tmp_path)], f"config file {tmp_path}: is a folder; give a YAML file"),
        (["--config", str(twice)], f"config file {twice} line 2: duplicate key 'seed' (first at line 1)"),
        (["--set", "seed=-1"], "config seed: -1 is out of range; allowed integers 0..4294967295 (2**32 - 1)"),
        (["--set", "device=cuda:abc"], "config device: 'cuda:abc' is not one of auto, cpu, cuda, cuda:N"),
        (
            ["--set", "train.lr=.inf"],
            "config train.lr: inf is not a finite number; allowed a finite number in (0.0, inf)",
        ),
    ]
    for argv, message in cases:
        assert main(["train", "--data-dir", str(tmp_path / "none"), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"freqstudy train: error: {message}") and err.count("\n") == 1, err
