"""One tracked trial end to end against a real ``mlflow server`` and the real
CIFAR-10 subset: what the run holds (params, per-epoch and final metrics,
tags, every artifact, the model), fixed-mode proportion, learned-mode alpha
history, divergence and failures recorded as FAILED runs, and learning on
real images.

Most runs use the first 1,000 subset images and two corruptions with 20
images per severity, so they share one cached corrupted copy and take
seconds; the learning check trains on the whole subset and is marked slow.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from models.stem import initial_alpha
from study import metrics as M
from study.config import TrialConfig
from study.data import load_cifar10
from study.engine.checkpoint import checkpoint_path
from study.engine.evaluate import EvalSettings, clean_accuracy, eval_loader
from study.reporting.trial_artifacts import ARTIFACTS
from study.tracking import load_logged_model, run_tracked_trial
from study.tracking.experiments import EXPERIMENT_KIND_TAG, EXPERIMENT_KIND_TRAINING
from study.tracking.runs import PARENT_RUN_TAG

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("home")]


def quick_config(subset_dir: Path, experiment: str, **flat) -> TrialConfig:
    base = {
        "data.dir": str(subset_dir),
        "data.download": False,
        "data.train_limit": 1000,
        "model.width": 16,
        "train.epochs": 2,
        "train.batch_size": 100,
        "train.lr": 0.1,
        "eval.corruptions": ["gaussian_noise", "fog"],
        "eval.corruption_limit": 20,
        "eval.batch_size": 500,
        "tracking.experiment": experiment,
    }
    base.update(flat)
    return TrialConfig.from_flat(base)


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def artifact_json(client: MlflowClient, run_id: str, path: str, tmp_path: Path) -> dict:
    return json.loads(Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text())


@pytest.fixture(scope="module")
def fixed_run(mlflow_server, subset_dir):
    """A 2-epoch fixed-mode width-16 run (p = 0.25 -> 4 of 16 filters low), nested under a parent."""
    client = MlflowClient(mlflow_server.uri)
    config = quick_config(subset_dir, "it-fixed", **{"frequency.mode": "fixed", "frequency.proportion": 0.25})
    experiment_id = client.create_experiment("it-fixed")
    parent = client.create_run(experiment_id, tags={M.TAG_ROLE: "study"}).info.run_id
    epochs_seen = []
    tracked = run_tracked_trial(
        config,
        tracking_uri=mlflow_server.uri,
        parent_run_id=parent,
        tags={M.TAG_TRIAL_ID: "trial-7"},
        on_epoch=epochs_seen.append,
    )
    return config, tracked, epochs_seen, parent


def test_run_holds_params_tags_metrics_and_every_artifact(fixed_run, mlflow_server, tmp_path):
    config, tracked, epochs_seen, parent = fixed_run
    client = MlflowClient(mlflow_server.uri)
    assert tracked.status == "finished" and tracked.reason is None
    experiment = client.get_experiment_by_name("it-fixed")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND_TRAINING
    trials = client.search_runs([experiment.experiment_id], f"tags.`{M.TAG_ROLE}` = 'trial'")
    assert [r.info.run_id for r in trials] == [tracked.run_id]
    run = client.get_run(tracked.run_id)
    assert run.info.status == "FINISHED"

    tags = run.data.tags
    assert tags[PARENT_RUN_TAG] == parent
    assert tags[M.TAG_STUDY] == "it-fixed" and tags[M.TAG_ROLE] == "trial" and tags[M.TAG_MODE] == "fixed"
    assert tags[M.TAG_STATUS] == "finished" and M.TAG_FAILURE not in tags
    assert tags[M.TAG_TRIAL_ID] == "trial-7"
    assert tags[M.TAG_NODE] and tags[M.TAG_CODE_VERSION] and tags[M.TAG_CODE_VERSION] != "unknown"
    assert len(tags[M.TAG_DATA]) == 16 and tags[M.TAG_DATA] == tracked.result.fingerprint

    params = run.data.params
    assert set(config.to_flat()) <= set(params)
    assert params["train.epochs"] == "2" and params["frequency.mode"] == "fixed"
    assert params["eval.corruptions"] == "gaussian_noise,fog"

    # Per-epoch metrics at steps 1 and 2, equal to what the callback saw.
    assert [int(r["epoch"]) for r in epochs_seen] == [1, 2]
    for key in M.EPOCH_KEYS:
        logged = history(client, tracked.run_id, key)
        assert [s for s, _ in logged if s in (1, 2)] == [1, 2], key
        assert logged[0][1] == pytest.approx(epochs_seen[0][key], rel=1e-6), key
    assert not set(M.LEARNED_EPOCH_KEYS) & set(run.data.metrics)  # not learned

    final = run.data.metrics
    for key in (
        M.VAL_CLEAN_ACC,
        M.VAL_CORRUPTION_ACC,
        M.TEST_CLEAN_ACC,
        M.TEST_CORRUPTION_ACC,
        "test/corruption/fog",
        "test/corruption/gaussian_noise/3",
        "test/severity/5",
        "test/category/noise",
        "test/category/weather",
        "val/corruption/fog/1",
        M.PEAK_MEMORY_MB,
    ):
        assert key in final and math.isfinite(final[key]), key
        assert final[key] == pytest.approx(tracked.metrics[key], rel=1e-6), key
    assert final[M.EPOCHS_COMPLETED] == 2
    # The logged accuracy is the share of the test images the trial's per-image outcomes mark right.
    assert final[M.TEST_CLEAN_ACC] == pytest.approx(100 * tracked.result.outcomes.arrays["test/clean"].mean())
    # Two benchmark corruptions: the mean is over them and all severities.
    per = [final[f"test/corruption/{n}/{s}"] for n in ("gaussian_noise", "fog") for s in range(1, 6)]
    assert final[M.TEST_CORRUPTION_ACC] == pytest.approx(np.mean(per), rel=1e-6)

    names = {a.path for a in client.list_artifacts(tracked.run_id)}
    assert set(ARTIFACTS) <= names, set(ARTIFACTS) - names
    for png in (
        "filters.png",
        "spectra.png",
        "radial_profile.png",
        "corruption_heatmap.png",
        "proportion_history.png",
    ):
        data = Path(client.download_artifacts(tracked.run_id, png, str(tmp_path))).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, png
    filters = np.load(client.download_artifacts(tracked.run_id, "filters.npy", str(tmp_path)))
    assert filters.shape == (16, 3, 3, 3) and np.isfinite(filters).all()
    doc = artifact_json(client, tracked.run_id, "metrics.json", tmp_path)
    assert doc["status"] == "finished" and doc["reason"] is None and doc["epochs"] == 2
    assert doc["metrics"][M.TEST_CLEAN_ACC] == pytest.approx(final[M.TEST_CLEAN_ACC], rel=1e-6)
    assert [h["epoch"] for h in doc["history"]] == [1, 2]
    logged_config = TrialConfig.from_yaml(
        client.download_artifacts(tracked.run_id, "config.yaml", str(tmp_path))
    )
    assert logged_config == config


def test_fixed_mode_logs_target_proportion_every_epoch(fixed_run, mlflow_server):
    _, tracked, _, _ = fixed_run
    logged = history(MlflowClient(mlflow_server.uri), tracked.run_id, M.FILTER_PROPORTION)
    assert [v for _, v in logged] == [0.25, 0.25]


def test_logged_model_reloads_and_reproduces_test_accuracy(fixed_run, mlflow_server, subset_dir):
    config, tracked, _, _ = fixed_run
    model = load_logged_model(tracked.run_id, mlflow_server.uri)
    assert type(model).__name__ == type(tracked.result.model).__name__ and not model.training
    assert model.stem.mode == "fixed" and model.stem.measured_proportion() == 0.25
    # Pickle-free: safetensors weights, the config and a manifest, and the trained network's exact
    # weights and logits back.
    files = {a.path for a in MlflowClient(mlflow_server.uri).list_artifacts(tracked.run_id, "model")}
    assert files == {"model/weights.safetensors", "model/config.yaml", "model/freqstudy-model.json"}
    trained = tracked.result.model.cpu().eval()
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), trained(x), rtol=0, atol=0)
    cifar = load_cifar10(subset_dir)
    settings = EvalSettings(device=torch.device("cpu"), batch_size=config.eval.batch_size)
    acc = clean_accuracy(model, eval_loader(cifar.test_images, cifar.test_labels, settings), settings)
    logged = MlflowClient(mlflow_server.uri).get_run(tracked.run_id).data.metrics[M.TEST_CLEAN_ACC]
    assert acc == pytest.approx(logged, abs=1e-9)


def test_learned_mode_logs_alpha_history(mlflow_server, subset_dir, tmp_path):
    """λ = 5 pulls the soft count toward p = 0.25 from the evenly spread start (p̂ = ½, mean α = ½):
    in 2 epochs of 10 steps p̂ reaches 0.25 ± 1/16, measured from α and from the weights alike,
    and mean α falls by at least 0.05; the logged history is the per-filter history."""
    config = quick_config(
        subset_dir,
        "it-learned",
        **{"frequency.mode": "learned", "frequency.proportion": 0.25, "frequency.proportion_weight": 5.0},
    )
    tracked = run_tracked_trial(config, tracking_uri=mlflow_server.uri)
    client = MlflowClient(mlflow_server.uri)
    assert tracked.status == "finished"
    reloaded = load_logged_model(tracked.run_id, mlflow_server.uri)  # the alpha logits come back too
    torch.testing.assert_close(reloaded.stem.alpha(), tracked.result.model.cpu().stem.alpha(), rtol=0, atol=0)
    alpha = history(client, tracked.run_id, M.FILTER_MEAN_ALPHA)
    assert [s for s, _ in alpha] == [1, 2]
    doc = artifact_json(client, tracked.run_id, "metrics.json", tmp_path)
    per_filter = np.asarray(doc["alpha_history"])
    assert per_filter.shape == (2, 16)
    assert per_filter.mean(axis=1) == pytest.approx([v for _, v in alpha], rel=1e-5)
    spread = history(client, tracked.run_id, M.FILTER_ALPHA_STD)
    assert [v for _, v in spread] == pytest.approx(per_filter.std(axis=1), rel=1e-4)
    start = initial_alpha(16).numpy()
    assert start.mean() == pytest.approx(0.5) and (start >= 0.5).mean() == 0.5
    assert alpha[-1][1] <= start.mean() - 0.05, alpha  # pulled down, not just jittered
    from_alpha = [v for _, v in history(client, tracked.run_id, M.FILTER_ALPHA_PROPORTION)]
    from_weights = [v for _, v in history(client, tracked.run_id, M.FILTER_PROPORTION)]
    assert from_alpha == from_weights == [float((a >= 0.5).mean()) for a in per_filter]
    assert abs(from_alpha[-1] - 0.25) <= 1 / 16, from_alpha
    assert client.get_run(tracked.run_id).data.tags[M.TAG_MODE] == "learned"
    assert client.get_run(tracked.run_id).data.tags[M.TAG_LEARNED_FORM] == "energy-share"


def test_a_trial_resumed_from_its_last_epochs_checkpoint_logs_every_final_metric(
    mlflow_server, subset_dir, tmp_path
):
    """A study driver killed while a trial evaluated after its last epoch: the resumed trial
    continues from that epoch's checkpoint in a new run and trains no epoch, so the new run
    never logged an epoch row; it still holds every final metric, the objectives included
    (the old code skipped val/clean_acc there as already logged, by the run it was not)."""
    client = MlflowClient(mlflow_server.uri)
    config = quick_config(subset_dir, "it-resumed", **{"train.epochs": 1, "model.width": 8})
    first = run_tracked_trial(config, tracking_uri=mlflow_server.uri, checkpoint_dir=tmp_path)
    resumed = run_tracked_trial(
        config, tracking_uri=mlflow_server.uri, resume_from=checkpoint_path(tmp_path / first.run_id, 1)
    )
    assert first.status == resumed.status == "finished" and resumed.run_id != first.run_id
    assert resumed.result.history == first.result.history  # restored, not trained again
    logged = client.get_run(resumed.run_id).data.metrics
    assert set(resumed.metrics) <= set(logged), set(resumed.metrics) - set(logged)
    for key in (M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC, M.TEST_CLEAN_ACC):
        assert logged[key] == pytest.approx(resumed.metrics[key]) == pytest.approx(first.metrics[key])
    assert history(client, resumed.run_id, M.VAL_CLEAN_ACC) == [(1, logged[M.VAL_CLEAN_ACC])]


def test_huge_learning_rate_ends_diverged_as_failed_run(mlflow_server, subset_dir, tmp_path):
    config = quick_config(subset_dir, "it-diverged", **{"train.lr": 1e6, "train.epochs": 1})
    tracked = run_tracked_trial(config, tracking_uri=mlflow_server.uri)
    assert tracked.status == "diverged" and "non-finite" in tracked.reason
    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(tracked.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[M.TAG_STATUS] == "diverged"
    assert run.data.tags[M.TAG_FAILURE] == tracked.reason
    assert run.data.metrics[M.EPOCHS_COMPLETED] == 0
    assert M.TEST_CLEAN_ACC not in run.data.metrics
    doc = artifact_json(client, tracked.run_id, "metrics.json", tmp_path)
    assert doc["status"] == "diverged" and doc["reason"] == tracked.reason


def test_exception_inside_trial_marks_run_failed_and_reraises(mlflow_server, subset_dir):
    config = quick_config(subset_dir, "it-error", **{"train.epochs": 2})

    def explode(row):
        raise RuntimeError(f"callback failed at epoch {int(row['epoch'])}")

    with pytest.raises(RuntimeError, match="callback failed at epoch 1"):
        run_tracked_trial(config, tracking_uri=mlflow_server.uri, on_epoch=explode)
    client = MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name("it-error")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags[M.TAG_STATUS] == "failed"
    assert run.data.tags[M.TAG_FAILURE] == "RuntimeError: callback failed at epoch 1"
    # The epoch was logged before the callback ran.
    assert [m.step for m in client.get_metric_history(run.info.run_id, M.TRAIN_LOSS)] == [1]


@pytest.mark.slow
def test_width16_learns_on_real_subset_in_three_epochs(mlflow_server, subset_dir):
    config = quick_config(
        subset_dir,
        "it-learning",
        **{"data.train_limit": None, "train.epochs": 3, "train.batch_size": 128, "train.lr": 0.1},
    )
    started = time.perf_counter()
    tracked = run_tracked_trial(config, tracking_uri=mlflow_server.uri)
    seconds = time.perf_counter() - started
    print(
        f"width-16 ResNet-18, 3 epochs on {4660 - 466} subset images: "
        f"test {tracked.metrics[M.TEST_CLEAN_ACC]:.1f}% in {seconds:.0f} s"
    )
    assert tracked.status == "finished"
    assert tracked.metrics[M.TEST_CLEAN_ACC] >= 25.0


@pytest.mark.slow
def test_all_nineteen_corruptions_keep_extras_apart(mlflow_server, subset_dir, frost_dir, tmp_path):
    config = quick_config(
        subset_dir,
        "it-all19",
        **{
            "train.epochs": 1,
            "model.width": 8,
            "eval.corruptions": list(M.ALL_CORRUPTIONS),
            "eval.corruption_limit": 2,
            "eval.frost_dir": str(frost_dir),
        },
    )
    tracked = run_tracked_trial(config, tracking_uri=mlflow_server.uri)
    final = MlflowClient(mlflow_server.uri).get_run(tracked.run_id).data.metrics
    for split in ("val", "test"):
        bench = [final[f"{split}/corruption/{n}/{s}"] for n in M.BENCHMARK_CORRUPTIONS for s in range(1, 6)]
        extra = [final[f"{split}/corruption/{n}/{s}"] for n in M.EXTRA_CORRUPTIONS for s in range(1, 6)]
        assert final[f"{split}/corruption_acc"] == pytest.approx(np.mean(bench), rel=1e-6)
        assert final[f"{split}/extra_acc"] == pytest.approx(np.mean(extra), rel=1e-6)
        assert {f"{split}/category/{c}" for c in M.CATEGORIES} <= set(final)
    heatmap = Path(
        MlflowClient(mlflow_server.uri).download_artifacts(
            tracked.run_id, "corruption_heatmap.png", str(tmp_path)
        )
    )
    assert heatmap.read_bytes()[:4] == b"\x89PNG"
