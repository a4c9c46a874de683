"""The report reads its per-trial arrays (Fourier heat maps, learned α) out of a real
``mlflow server`` without pickle: a study's runs are logged there with metrics, tags and
``.npy`` artifacts, some of which are pickles whose loading would create a marker file
(numpy with ``allow_pickle=True`` creates it). Those models are left out of the section and
the marker never appears; the others' maps come back exactly as logged."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

from study import metrics as M
from study.analysis.fourier import FOURIER_ERROR_HIGH, FOURIER_ERROR_LOW, FOURIER_ERROR_MIDDLE, radius_map
from study.selection.choice import choose, trial_label
from study.selection.choose import parse_objectives
from study.tracking.queries import (
    ALPHA_ARTIFACT,
    FOURIER_ARTIFACT,
    client_for,
    fourier_maps,
    learned_alpha,
    load_study,
)
from tests.support import object_array_npy, pickled_payload

pytestmark = pytest.mark.integration

BANDS = (FOURIER_ERROR_LOW, FOURIER_ERROR_MIDDLE, FOURIER_ERROR_HIGH)


def log_trial(client, experiment_id, name, clean, corr, *, artifacts, mode="fixed", baseline=False):
    """A finished trial run as freqstudy logs one, with ``artifacts`` ({artifact name: file})."""
    tags = {M.TAG_STATUS: "finished", M.TAG_ROLE: "trial", M.TAG_MODE: mode}
    if baseline:
        tags[M.TAG_BASELINE] = "true"
    run_id = client.create_run(experiment_id, tags=tags, run_name=name).info.run_id
    metrics = {
        M.VAL_CLEAN_ACC: clean,
        M.VAL_CORRUPTION_ACC: corr,
        M.TEST_CLEAN_ACC: clean,
        M.TEST_CORRUPTION_ACC: corr,
        M.EPOCHS_COMPLETED: 2.0,
        M.corruption_key("test", "fog"): corr,
        **dict(zip(BANDS, (clean / 10, corr / 10, 50.0))),
    }
    if mode == "learned":
        metrics[M.FILTER_MEAN_ALPHA] = 0.5
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    params = {
        "train.epochs": "2",
        "frequency.mode": mode,
        "frequency.perturbation": "0.0",
        "model.width": "4",
    }
    for key, value in params.items():
        client.log_param(run_id, key, value)
    for name_, path in artifacts.items():
        assert path.name == name_  # MLflow keeps the file's own name
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture(scope="module")
def crafted_study(mlflow_server, tmp_path_factory):
    """``(client, choice, marker, run ids by name, maps by name)`` of a six-trial study."""
    tmp = tmp_path_factory.mktemp("report-artifacts")
    marker = tmp / "marker"
    client = MlflowClient(mlflow_server.uri)
    study = "report-artifacts"
    experiment_id = client.create_experiment(study)
    r = radius_map(32)
    maps = {"base": 10.0 + 20.0 * r, "a": 10.0 + 20.0 * r - 5.0 * (r > 2 / 3)}

    def folder(name):
        (tmp / name).mkdir()
        return tmp / name

    files = {name: folder(name) / FOURIER_ARTIFACT for name in ("base", "a", "b", "d", "c")}
    for name, heatmap in maps.items():
        np.save(files[name], heatmap, allow_pickle=False)
    object_array_npy(files["b"], marker)  # a well-formed .npy of dtype object
    files["d"].write_bytes(pickled_payload(marker))  # a bare pickle under the .npy name
    files["c"].write_bytes(files["a"].read_bytes())
    alpha = object_array_npy(folder("alpha") / ALPHA_ARTIFACT, marker)
    ids = {
        # Front by robustness: d (77), b (75), a (70), e (65); c is dominated by a, the baseline by e.
        "base": log_trial(
            client,
            experiment_id,
            "base",
            87,
            60,
            artifacts={FOURIER_ARTIFACT: files["base"]},
            baseline=True,
            mode="free",
        ),
        "a": log_trial(client, experiment_id, "a", 88, 70, artifacts={FOURIER_ARTIFACT: files["a"]}),
        "b": log_trial(client, experiment_id, "b", 85, 75, artifacts={FOURIER_ARTIFACT: files["b"]}),
        "d": log_trial(
            client,
            experiment_id,
            "d",
            84,
            77,
            artifacts={FOURIER_ARTIFACT: files["d"], ALPHA_ARTIFACT: alpha},
            mode="learned",
        ),
        "c": log_trial(client, experiment_id, "c", 80, 50, artifacts={FOURIER_ARTIFACT: files["c"]}),
        "e": log_trial(client, experiment_id, "e", 90, 65, artifacts={}),
    }
    choice = choose(load_study(study, client=client_for(mlflow_server.uri)), parse_objectives(None), None)
    assert [c.run_id for c in choice.result.front] == [ids["d"], ids["b"], ids["a"], ids["e"]]
    # The payloads are real: numpy with allow_pickle=True creates the marker from either file.
    for name in ("b", "d"):
        np.load(files[name], allow_pickle=True)
        assert marker.exists()
        marker.unlink()
    return client, choice, marker, ids, maps


def test_maps_are_read_without_pickle_and_drawn_against_the_baseline(crafted_study, tmp_path):
    client, choice, marker, ids, maps = crafted_study
    read = fourier_maps(choice, client, tmp_path / "downloads")
    # d (pareto-1) and b (pareto-2) hold pickles and e (pareto-4) no map: left out; c is not a
    # Pareto model.
    assert list(read) == ["baseline", "pareto-3"]
    np.testing.assert_array_equal(read["baseline"], maps["base"])
    np.testing.assert_array_equal(read["pareto-3"], maps["a"])
    assert not marker.exists()


def test_learned_alpha_is_read_without_pickle(crafted_study, tmp_path):
    client, choice, marker, ids, _ = crafted_study
    (learned,) = [c.trial for c in choice.result.candidates if c.run_id == ids["d"]]
    try:
        alpha = learned_alpha(choice, client, tmp_path / "downloads")
    except ValueError:  # refused: numpy's own error for an object array without allow_pickle
        alpha = {}
    assert trial_label(learned) not in alpha
    assert not marker.exists()
