"""The trial loop on small synthetic CIFAR-10 batches (official layout, written
here): per-epoch reports, determinism on the CPU, checkpoint and resume,
divergence as a result, exact fixed-mode proportion, early stop, and the
accuracy arithmetic of clean and corrupted evaluation against brute force."""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from study import metrics as M
from study.analysis.outcomes import summarize
from study.config import TrialConfig
from study.data import CIFAR10_MEAN, CIFAR10_STD
from study.engine.checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint, restore_optimizer
from study.engine.evaluate import EvalSettings, clean_accuracy, corrupted_accuracy, eval_loader
from study.engine.prepare import prepare_data
from study.engine.trial import build_model, build_optimizer, diverged_reason, lr_factor, run_trial
from tests.support import Payload

PER_EPOCH = {
    "epoch",
    M.TRAIN_LOSS,
    M.TRAIN_LR,
    M.VAL_CLEAN_ACC,
    M.FILTER_PROPORTION,
    M.FILTER_CENTROID,
    M.EPOCH_SECONDS,
}


def write_cifar(root: Path, *, per_batch: int = 40, n_test: int = 50, seed: int = 0) -> Path:
    """Synthetic CIFAR-10 in the official python-batch layout; images carry a class colour."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def batch(n):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 120, (n, 3, 32, 32)).astype(np.uint8)
        images[np.arange(n), labels % 3] += (labels * 12).astype(np.uint8)[:, None, None]
        return {"data": images.reshape(n, 3072), "labels": labels.tolist()}

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_batch)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(n_test)))
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FREQSTUDY_HOME", str(tmp_path / "home"))


def tiny(data_dir: Path, **flat) -> TrialConfig:
    base = {
        "data.dir": str(data_dir),
        "data.download": False,
        "data.val_fraction": 0.2,
        "model.width": 8,
        "train.epochs": 2,
        "train.batch_size": 32,
        "train.lr": 0.05,
        "eval.corruptions": [],
        "eval.batch_size": 64,
        "device": "cpu",
    }
    base.update(flat)
    return TrialConfig.from_flat(base)


def without_time(history):
    return [{k: v for k, v in row.items() if k != M.EPOCH_SECONDS} for row in history]


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_lr_schedules_follow_their_closed_forms():
    one = dict(total_steps=100, schedule="onecycle", warmup_fraction=0.1)
    assert [lr_factor(s, **one) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, **one) == pytest.approx(1.0)
    assert lr_factor(55, **one) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lr_factor(99, **one) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    cos = dict(total_steps=50, schedule="cosine", warmup_fraction=0.3)  # no warm-up in cosine
    assert lr_factor(0, **cos) == 1.0 and lr_factor(25, **cos) == pytest.approx(0.5)


def test_weight_decay_spares_batchnorm_biases_and_alpha_whose_lr_is_multiplied(data_dir):
    flat = {"frequency.mode": "learned", "train.weight_decay": 1e-3, "train.alpha_lr_multiplier": 7.0}
    config = tiny(data_dir, **flat)
    model = build_model(config)
    decay, no_decay, alpha = build_optimizer(model, config, torch.device("cpu")).param_groups
    assert decay["weight_decay"] == 1e-3 and no_decay["weight_decay"] == 0.0 == alpha["weight_decay"]
    assert decay["lr"] == no_decay["lr"] == config.train.lr and alpha["lr"] == 7.0 * config.train.lr
    ids = {id(p) for p in no_decay["params"]}
    assert id(model.bn1.weight) in ids and id(model.bn1.bias) in ids
    assert [id(p) for p in alpha["params"]] == [id(model.stem.alpha_logits)]
    assert id(model.stem.weight) in {id(p) for p in decay["params"]}
    assert sum(len(g["params"]) for g in (decay, no_decay, alpha)) == len(list(model.parameters()))
    assert all(p.ndim > 1 for p in decay["params"])
    free = tiny(data_dir, **{"train.weight_decay": 1e-3})
    assert len(build_optimizer(build_model(free), free, torch.device("cpu")).param_groups) == 2


@pytest.fixture(scope="module")
def learned_result(data_dir, tmp_path_factory):
    """A 2-epoch learned-mode trial with perturbation, checkpointing every epoch."""
    ckpt = tmp_path_factory.mktemp("ckpt")
    rows = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FREQSTUDY_HOME", str(tmp_path_factory.mktemp("home")))
        config = tiny(
            data_dir,
            **{
                "frequency.mode": "learned",
                "frequency.perturbation": 0.2,
                "frequency.proportion_weight": 0.5,
                "train.checkpoint_min_seconds": 0.0,
            },
        )
        result = run_trial(config, report=rows.append, checkpoint_dir=ckpt, keep_checkpoints=None)
    return config, result, rows, ckpt


def test_trial_reports_each_epoch_and_ends_with_final_metrics(learned_result):
    config, result, rows, _ = learned_result
    assert result.status == "finished" and result.reason is None
    assert [r["epoch"] for r in rows] == [1, 2]
    n_val = len(result.outcomes.arrays["val/clean"])
    for row in rows:
        assert PER_EPOCH | {M.FILTER_MEAN_ALPHA, M.FILTER_ALPHA_STD, M.FILTER_ALPHA_PROPORTION} == set(row)
        assert row[M.FILTER_ALPHA_PROPORTION] == row[M.FILTER_PROPORTION]  # p̂ from α = p̂ from W
        assert all(math.isfinite(v) for v in row.values())
        # Counts: of the validation images classified right, of the 8 filters that are low-frequency.
        correct, low = row[M.VAL_CLEAN_ACC] * n_val / 100, row[M.FILTER_PROPORTION] * 8
        assert correct == pytest.approx(round(correct)) and low == pytest.approx(round(low))
    assert rows[-1][M.TRAIN_LR] == pytest.approx(
        config.train.lr
        * lr_factor(9, total_steps=10, schedule="onecycle", warmup_fraction=config.train.warmup_fraction)
    )
    assert without_time(result.history) == without_time(rows)
    assert result.metrics[M.EPOCHS_COMPLETED] == 2 and result.metrics[M.PEAK_MEMORY_MB] > 0
    assert result.metrics[M.VAL_CLEAN_ACC] == pytest.approx(rows[-1][M.VAL_CLEAN_ACC])
    # The final accuracies, under the names consumers read, are what the stored per-image outcomes give.
    recomputed = {k: v for split in ("val", "test") for k, v in summarize(result.outcomes, split).items()}
    assert {M.VAL_CLEAN_ACC, M.TEST_CLEAN_ACC, M.VAL_CORRUPTION_ACC} <= set(recomputed) <= set(result.metrics)
    for key, value in recomputed.items():
        assert value == pytest.approx(result.metrics[key], nan_ok=True), key
    assert result.alpha_history.shape == (2, 8)
    assert result.alpha_history.mean(axis=1) == pytest.approx(
        [r[M.FILTER_MEAN_ALPHA] for r in rows], rel=1e-6
    )
    assert result.alpha_history.std(axis=1) == pytest.approx([r[M.FILTER_ALPHA_STD] for r in rows], rel=1e-5)
    assert not result.model.training and next(result.model.parameters()).device.type == "cpu"
    assert len(result.fingerprint) == 16


def test_cpu_trial_is_deterministic(learned_result, data_dir):
    config, first, _, _ = learned_result
    second = run_trial(config)
    assert without_time(second.history) == without_time(first.history)
    assert same_weights(second.model, first.model)


def test_resume_from_checkpoint_reproduces_the_uninterrupted_run(learned_result):
    config, full, _, ckpt = learned_result
    assert latest_checkpoint(ckpt) == checkpoint_path(ckpt, 2)
    assert load_checkpoint(checkpoint_path(ckpt, 1))["epoch"] == 1
    rows = []
    resumed = run_trial(config, resume_from=checkpoint_path(ckpt, 1), report=rows.append)
    assert [r["epoch"] for r in rows] == [2]  # continues at the next epoch
    assert without_time(resumed.history) == without_time(full.history)
    assert same_weights(resumed.model, full.model)
    assert np.array_equal(resumed.alpha_history, full.alpha_history)
    assert resumed.metrics[M.TEST_CLEAN_ACC] == full.metrics[M.TEST_CLEAN_ACC]


def test_huge_learning_rate_is_a_diverged_result(data_dir):
    rows = []
    result = run_trial(tiny(data_dir, **{"train.lr": 1e6, "train.epochs": 3}), report=rows.append)
    assert result.status == "diverged"
    assert result.reason.endswith(f" in epoch {len(rows) + 1} at lr 1e+06")
    assert "\n" not in result.reason
    assert result.metrics[M.EPOCHS_COMPLETED] == len(rows) < 3
    assert M.TEST_CLEAN_ACC not in result.metrics


@pytest.mark.parametrize(
    "flat, reason",
    [
        # The case: lr 1e9 for one epoch used to end "finished" (loss ~1e28, p-hat NaN)
        # and count among the trials pareto chooses from; here its loss is already NaN.
        (
            {"train.lr": 1e9},
            r"training loss (became non-finite \(nan\)|\S+ exceeded the divergence bound .*)",
        ),
        # A loss that stays finite but explodes (~3e9): caught by the bound, 1000 x ln 10.
        (
            {"train.lr": 100.0, "train.schedule": "cosine"},
            r"training loss \S+ exceeded the divergence bound 2303 "
            r"\(train\.divergence_factor 1000 x max\(ln 10\)\)",
        ),
    ],
    ids=["lr-1e9", "finite-explosion"],
)
def test_an_exploded_first_epoch_is_diverged_not_finished(data_dir, flat, reason):
    rows = []
    result = run_trial(tiny(data_dir, **{"train.epochs": 1, **flat}), report=rows.append)
    assert result.status == "diverged" and rows == []
    assert re.fullmatch(
        rf"{reason} in epoch 1 at lr {re.escape(format(flat['train.lr'], 'g'))}", result.reason
    ), result.reason
    assert result.metrics[M.EPOCHS_COMPLETED] == 0 and M.VAL_CLEAN_ACC not in result.metrics
    assert result.outcomes is None and result.filters == {}


FINE_STATS = {"proportion": 0.5, "centroid": 0.3, "weights": np.ones((4, 3, 3, 3)), "alpha": None}


def test_diverged_reason_bounds_the_loss_by_the_first_epoch_or_ln_classes():
    kw = dict(factor=1000.0, num_classes=10)
    ln10 = math.log(10)
    assert diverged_reason(1, 2.3, None, FINE_STATS, **kw) is None
    # The first epoch: bounded by factor x ln num_classes (2302.6).
    assert diverged_reason(1, 1000 * ln10 - 1e-6, None, FINE_STATS, **kw) is None
    reason = diverged_reason(1, 3.7e28, None, FINE_STATS, **kw)
    assert reason == (
        "training loss 3.7e+28 exceeded the divergence bound 2303 "
        "(train.divergence_factor 1000 x max(ln 10)) in epoch 1"
    )
    # Later epochs: factor x max(first-epoch loss, ln num_classes).
    assert diverged_reason(4, 4999.0, 5.0, FINE_STATS, **kw) is None
    assert diverged_reason(4, 5001.0, 5.0, FINE_STATS, **kw) == (
        "training loss 5001 exceeded the divergence bound 5000 "
        "(train.divergence_factor 1000 x max(first-epoch loss 5, ln 10)) in epoch 4"
    )
    assert "bound 23.03" in diverged_reason(3, 24.0, 0.01, FINE_STATS, factor=10.0, num_classes=10)
    assert (
        diverged_reason(2, math.inf, 2.0, FINE_STATS, **kw)
        == "training loss became non-finite (inf) in epoch 2"
    )
    assert "non-finite (nan)" in diverged_reason(2, math.nan, 2.0, None, **kw)


def test_diverged_reason_catches_non_finite_first_layer_statistics():
    kw = dict(factor=1000.0, num_classes=10)
    assert diverged_reason(1, 2.0, None, None, **kw) is None  # statistics not given: not checked
    nan_weights = np.ones((4, 3, 3, 3))
    nan_weights[0, 0, 0, :2] = np.nan
    cases = [
        ({"proportion": math.nan}, "p̂ nan"),
        ({"centroid": math.inf}, "centroid inf"),
        ({"weights": nan_weights}, "effective weight has 2 non-finite values"),
        ({"alpha": np.array([0.5, math.nan])}, "alpha has 1 non-finite values"),
    ]
    for change, named in cases:
        reason = diverged_reason(3, 2.0, 2.1, {**FINE_STATS, **change}, **kw)
        assert reason == f"first-layer statistics became non-finite ({named}) in epoch 3"


def test_divergence_factor_is_a_validated_config_key():
    assert TrialConfig().train.divergence_factor == 1000.0
    assert TrialConfig.from_flat({"train.divergence_factor": 20}).train.divergence_factor == 20.0
    for bad, problem in ((0.5, "out of range; allowed [1.0, inf)"), (math.inf, "not a finite number")):
        with pytest.raises(ValueError, match=rf"config train\.divergence_factor: .*{re.escape(problem)}"):
            TrialConfig.from_flat({"train.divergence_factor": bad})


def test_resume_from_a_checkpoint_of_another_width_names_the_parameter_and_shapes(data_dir, tmp_path):
    run_trial(tiny(data_dir, **{"train.epochs": 1}), checkpoint_dir=tmp_path)
    ckpt = checkpoint_path(tmp_path, 1)
    with pytest.raises(ValueError) as e:
        run_trial(tiny(data_dir, **{"model.width": 16}), resume_from=ckpt)
    assert str(e.value) == (
        f"checkpoint {ckpt}: parameter stem.weight has shape (8, 3, 3, 3), this config's model has "
        "(16, 3, 3, 3); resume with the config the checkpoint was written with"
    )
    with pytest.raises(ValueError, match=r"parameter fc\.weight has shape \(10, 64\), .* has \(12, 64\)"):
        run_trial(tiny(data_dir, **{"model.num_classes": 12}), resume_from=ckpt)
    with pytest.raises(ValueError, match=r"checkpoint .*: lacks parameter stem\.alpha_logits of this config"):
        run_trial(tiny(data_dir, **{"frequency.mode": "learned"}), resume_from=ckpt)


def test_fewer_classes_than_the_data_has_is_a_config_error_before_training(data_dir):
    with pytest.raises(ValueError) as e:
        prepare_data(tiny(data_dir, **{"model.num_classes": 2}))
    assert str(e.value) == "config model.num_classes: 2, but the data has labels 0..9; allowed >= 10"
    assert prepare_data(tiny(data_dir, **{"model.num_classes": 12})).train_labels.max() == 9


def test_train_cli_refuses_fewer_classes_before_any_run_or_server(data_dir, tmp_path, monkeypatch, capsys):
    from study.cli import main

    home = tmp_path / "home"
    monkeypatch.setenv("FREQSTUDY_HOME", str(home))
    argv = ["train", "--data-dir", str(data_dir), "--set", "data.download=false"]
    rc = main([*argv, "--set", "eval.corruptions=[]", "--set", "model.num_classes=2"])
    err = capsys.readouterr().err
    assert rc == 2 and err == (
        "freqstudy train: error: config model.num_classes: 2, but the data has labels 0..9; allowed >= 10\n"
    )
    assert not (home / "mlflow").exists()  # no local store, no server, no run


def test_fixed_mode_measures_its_target_every_epoch(data_dir):
    rows = []
    result = run_trial(
        tiny(data_dir, **{"frequency.mode": "fixed", "frequency.proportion": 0.25}), report=rows.append
    )
    assert [r[M.FILTER_PROPORTION] for r in rows] == [0.25, 0.25]  # round(0.25 * 8) / 8
    assert M.FILTER_MEAN_ALPHA not in rows[0] and result.alpha_history is None


def test_should_stop_ends_training_early_but_evaluates(data_dir):
    result = run_trial(tiny(data_dir, **{"train.epochs": 3}), should_stop=lambda: True)
    assert result.status == "stopped" and "after epoch 1 of 3" in result.reason
    assert result.metrics[M.EPOCHS_COMPLETED] == 1 and M.TEST_CLEAN_ACC in result.metrics


def test_only_the_newest_checkpoint_is_kept_by_default(data_dir, tmp_path):
    run_trial(tiny(data_dir, **{"train.epochs": 3}), checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0003.pt"]


def test_checkpoints_wait_for_their_interval_but_the_last_epoch_always_gets_one(data_dir, tmp_path):
    every = {"train.epochs": 3, "train.checkpoint_min_seconds": 0.0}
    run_trial(tiny(data_dir, **every), checkpoint_dir=tmp_path / "a", keep_checkpoints=None)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "epoch-0001.pt",
        "epoch-0002.pt",
        "epoch-0003.pt",
    ]
    hourly = {"train.epochs": 3, "train.checkpoint_min_seconds": 3600.0}
    run_trial(tiny(data_dir, **hourly), checkpoint_dir=tmp_path / "b", keep_checkpoints=None)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["epoch-0003.pt"]
    off = {"train.epochs": 2, "train.checkpoint_every": 0}
    run_trial(tiny(data_dir, **off), checkpoint_dir=tmp_path / "c", keep_checkpoints=None)
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").iterdir())


def test_checkpoint_errors_name_the_file(tmp_path):
    bad = tmp_path / "epoch-0001.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="epoch-0001.pt"):
        load_checkpoint(bad)
    with pytest.raises(ValueError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_checkpoint_that_would_run_code_is_refused_unread(tmp_path):
    marker = tmp_path / "marker"
    crafted = tmp_path / "epoch-0002.pt"
    torch.save({"version": 1, "model": Payload(marker)}, crafted)
    with pytest.raises(ValueError, match="epoch-0002.pt: not a readable freqstudy checkpoint"):
        load_checkpoint(crafted)
    assert not marker.exists()
    torch.load(crafted, weights_only=False)  # the payload is real
    assert marker.exists()


def test_resume_keeps_this_devices_optimiser_kernels(data_dir):
    """A checkpoint saved where SGD ran fused (CUDA) resumes here with this device's
    choice, momentum buffers and step size from the file."""
    config = tiny(data_dir)
    model = build_model(config)
    saved = build_optimizer(model, config, torch.device("cpu"))
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    saved.step()
    state = saved.state_dict()
    for group in state["param_groups"]:
        group["fused"], group["lr"] = True, 0.123  # as written by a CUDA trial, mid-schedule
    fresh = build_optimizer(model, config, torch.device("cpu"))
    restore_optimizer(fresh, state)
    assert all(g["fused"] is None and g["lr"] == 0.123 for g in fresh.param_groups)
    first = next(iter(model.parameters()))
    assert torch.equal(fresh.state[first]["momentum_buffer"], saved.state[first]["momentum_buffer"])


class MeanColour(nn.Module):
    """A fixed classifier: class = argmax of a linear map of the channel means."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 10)
        torch.manual_seed(0)
        nn.init.normal_(self.fc.weight)

    def forward(self, x):  # (B, 3, H, W) -> (B, 10)
        return self.fc(x.mean(dim=(2, 3)))


def brute_force_predictions(model, images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32) / 255.0
    x = (x - np.array(CIFAR10_MEAN, np.float32)) / np.array(CIFAR10_STD, np.float32)
    with torch.no_grad():
        return model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).argmax(1).numpy()


def test_clean_and_corrupted_accuracy_match_brute_force(tmp_path):
    rng = np.random.default_rng(1)
    n = 30
    images = rng.integers(0, 256, (5 * n, 32, 32, 3)).astype(np.uint8)  # severity-major, official layout
    labels = np.tile(rng.integers(0, 10, n), 5)
    np.save(tmp_path / "fog.npy", images)
    np.save(tmp_path / "labels.npy", labels)
    model = MeanColour().eval()
    settings = EvalSettings(device=torch.device("cpu"), batch_size=7)  # batches straddle severities
    pred = brute_force_predictions(model, images)
    hits = (pred == labels).reshape(5, n)
    got = corrupted_accuracy(
        model, tmp_path, corruptions=["fog"], severities=[1, 2, 3, 4, 5], limit=None, settings=settings
    )
    assert got == {("fog", s): pytest.approx(100 * hits[s - 1].mean()) for s in range(1, 6)}
    limited = corrupted_accuracy(
        model, tmp_path, corruptions=["fog"], severities=[2, 5], limit=10, settings=settings
    )
    assert limited == {
        ("fog", 2): pytest.approx(100 * hits[1, :10].mean()),
        ("fog", 5): pytest.approx(100 * hits[4, :10].mean()),
    }
    clean = clean_accuracy(model, eval_loader(images[:n], labels[:n], settings), settings)
    assert clean == pytest.approx(100 * hits[0].mean())
