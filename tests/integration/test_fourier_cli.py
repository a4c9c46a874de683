"""The Fourier heat map end to end, against a real ``mlflow server``: a smoke-size trial
with ``eval.fourier_images`` logs the map and its band metrics, and ``freqstudy fourier``
reloads the logged model and prints a map of the documented shape, symmetry and range
(the trial's own map, for the same images and ε); bad flags are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from study.analysis.fourier import (
    FOURIER_ERROR_HIGH,
    FOURIER_ERROR_LOW,
    FOURIER_ERROR_MIDDLE,
    FOURIER_HEATMAP_NPY,
    FOURIER_HEATMAP_PNG,
    band_errors,
)
from study.cli import main
from study.data import load_cifar10
from study.engine.evaluate import EvalSettings, clean_accuracy, eval_loader
from study.tracking import load_logged_model
from tests.support import QUICK_TRAIN, set_flags

pytestmark = [pytest.mark.integration, pytest.mark.slow]

S, C = 32, 16
IMAGES = 8
TINY = set_flags(
    {
        "train.epochs": 1,
        "model.width": 8,
        **QUICK_TRAIN,
        "eval.fourier_images": IMAGES,
        "eval.fourier_eps": 4,
        "tracking.experiment": "cli-fourier",
    }
)


@pytest.fixture(scope="module")
def run_id(mlflow_server, subset_dir, home, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("fourier-train") / "result.json"
    argv = ["train", "--data-dir", str(subset_dir), "--tracking-uri", mlflow_server.uri]
    assert main([*argv, *TINY, "--output-json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["status"] == "finished"
    return result["run_id"]


def assert_is_a_heat_map(heatmap: np.ndarray) -> None:
    assert heatmap.shape == (S, S) and np.isfinite(heatmap).all()
    # Percent of IMAGES images: each bin counts 0..IMAGES misclassified images.
    wrong = heatmap * IMAGES / 100
    np.testing.assert_allclose(wrong, np.round(wrong), atol=1e-9)
    assert wrong.min() >= 0 and wrong.max() <= IMAGES
    # A bin and its conjugate give the same image: map[c+a, c+b] == map[c-a, c-b] where both exist.
    for a in range(-C + 1, C):
        for b in range(-C + 1, C):
            assert heatmap[C + a, C + b] == heatmap[C - a, C - b], (a, b)


def test_the_trial_logs_the_map_and_its_band_metrics(run_id, mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server.uri)
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {FOURIER_HEATMAP_NPY, FOURIER_HEATMAP_PNG} <= names, names
    logged = np.load(
        client.download_artifacts(run_id, FOURIER_HEATMAP_NPY, str(tmp_path)), allow_pickle=False
    )
    assert logged.dtype == np.float64
    assert_is_a_heat_map(logged)
    png = client.download_artifacts(run_id, FOURIER_HEATMAP_PNG, str(tmp_path))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    metrics = client.get_run(run_id).data.metrics
    bands = band_errors(logged)
    for key, band in [
        (FOURIER_ERROR_LOW, "low"),
        (FOURIER_ERROR_MIDDLE, "middle"),
        (FOURIER_ERROR_HIGH, "high"),
    ]:
        assert metrics[key] == pytest.approx(bands[band], abs=1e-9)
    params = client.get_run(run_id).data.params
    assert (params["eval.fourier_images"], params["eval.fourier_eps"]) == (str(IMAGES), "4.0")


def test_command_prints_one_json_document_with_the_map(run_id, mlflow_server, subset_dir, tmp_path, capsys):
    argv = ["fourier", run_id, "--images", str(IMAGES), "--eps", "4", "--json"]
    assert main([*argv, "--tracking-uri", mlflow_server.uri]) == 0
    doc = json.loads(capsys.readouterr().out)  # the whole of stdout: one document, nothing else
    assert set(doc) == {"run_id", "eps", "images", "shape", "heatmap", "bands", "clean_error"}
    assert (doc["run_id"], doc["eps"], doc["images"], doc["shape"]) == (run_id, 4.0, IMAGES, [S, S])
    heatmap = np.array(doc["heatmap"], dtype=np.float64)
    assert_is_a_heat_map(heatmap)
    assert doc["bands"] == pytest.approx(band_errors(heatmap))
    # The clean error is the logged model's, on the first IMAGES test images, computed apart.
    model = load_logged_model(run_id, mlflow_server.uri)
    cifar = load_cifar10(subset_dir)
    settings = EvalSettings(device=torch.device("cpu"), batch_size=IMAGES)
    first = eval_loader(cifar.test_images[:IMAGES], cifar.test_labels[:IMAGES], settings)
    assert doc["clean_error"] == pytest.approx(100 - clean_accuracy(model, first, settings), abs=1e-9)
    # The same images, ε, sign seed and settings as the trial: the map the trial logged.
    client = MlflowClient(mlflow_server.uri)
    logged = np.load(
        client.download_artifacts(run_id, FOURIER_HEATMAP_NPY, str(tmp_path)), allow_pickle=False
    )
    np.testing.assert_array_equal(heatmap, logged)


def test_command_text_summary_and_png(run_id, mlflow_server, tmp_path, capsys):
    png = tmp_path / "map.png"
    argv = ["fourier", run_id, "--images", "4", "--out", str(png), "--tracking-uri", mlflow_server.uri]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"run {run_id}: Fourier heat map, ε = 4, the first 4 test images" in text
    assert "clean error" in text and "mean error by band    low" in text
    assert text.count("    1. vertical") == 1 and "    5. vertical" in text and "    6. " not in text
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    "flags, flag",
    [
        (["--images", "0"], "--images"),
        (["--images", "-3"], "--images"),
        (["--eps", "0"], "--eps"),
        (["--eps", "-1"], "--eps"),
        (["--eps", "nan"], "--eps"),
        (["--eps", "inf"], "--eps"),
        (["--images", "100000"], "--images"),  # more than the test set
        (["--images", "4", "--data-dir", "/nonexistent/cifar"], "--data-dir"),
    ],
)
def test_bad_flags_are_one_line_errors(run_id, mlflow_server, flags, flag, capsys):
    capsys.readouterr()
    assert main(["fourier", run_id, *flags, "--tracking-uri", mlflow_server.uri]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"freqstudy fourier: error: {flag}"), lines[0]


def test_unknown_run_is_a_one_line_error(mlflow_server, capsys):
    assert main(["fourier", "0" * 32, "--images", "4", "--tracking-uri", mlflow_server.uri]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "0" * 32 in lines[0]
