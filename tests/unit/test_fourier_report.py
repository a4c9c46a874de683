"""The report's "Frequency sensitivity" section, from synthetic maps and plain records (no MLflow):
maps drawn on one scale with differences from the baseline, and a study without maps gets one
sentence instead of a crash. Reading the maps out of MLflow without pickle is tested against a
real server in tests/integration/test_report_artifacts.py."""

from __future__ import annotations

import re

import numpy as np

from study import metrics as M
from study.analysis.fourier import (
    FOURIER_ERROR_HIGH,
    FOURIER_ERROR_LOW,
    FOURIER_ERROR_MIDDLE,
    FOURIER_HEATMAP_NPY,
    radius_map,
)
from study.reporting.report import FOURIER_FIGURE, FOURIER_METRICS, write_report
from study.selection.choice import choose
from study.selection.choose import parse_objectives
from study.tracking.queries import FOURIER_ARTIFACT

PNG = b"\x89PNG\r\n\x1a\n"


def record(run_id, clean, corr, *, baseline=False, mode="fixed", bands=None):
    tags = {M.TAG_STATUS: "finished", M.TAG_ROLE: "trial"}
    if baseline:
        tags[M.TAG_BASELINE] = "true"
    metrics = {
        M.VAL_CLEAN_ACC: clean,
        M.VAL_CORRUPTION_ACC: corr,
        M.EPOCHS_COMPLETED: 2.0,
        M.TEST_CLEAN_ACC: clean,
        M.TEST_CORRUPTION_ACC: corr,
        M.corruption_key("test", "fog"): corr,
    }
    if bands is not None:
        metrics.update(zip((FOURIER_ERROR_LOW, FOURIER_ERROR_MIDDLE, FOURIER_ERROR_HIGH), bands))
    params = {"train.epochs": "2", "frequency.mode": mode, "frequency.perturbation": "0.0"}
    return {
        "run_id": run_id,
        "name": run_id,
        "params": params,
        "metrics": metrics,
        "tags": tags,
        "start_time": 0,
    }


def study(trials):
    return choose(
        {"study": "s", "experiment_id": "1", "parent": None, "trials": trials}, parse_objectives(None), None
    )


def test_metric_names_agree_with_the_analysis_module():
    assert FOURIER_ARTIFACT == FOURIER_HEATMAP_NPY
    assert FOURIER_METRICS == (FOURIER_ERROR_LOW, FOURIER_ERROR_MIDDLE, FOURIER_ERROR_HIGH)


def test_maps_are_drawn_against_the_baseline(tmp_path):
    trials = [
        record("base", 87, 60, baseline=True, mode="free", bands=(10.0, 20.0, 30.0)),  # dominated by a
        record("a", 88, 70, bands=(11.0, 15.0, 18.0)),
        record("b", 85, 75),
        record("c", 80, 50),  # dominated: not in the section
    ]
    choice = study(trials)
    assert [c.run_id for c in choice.result.front] == ["b", "a"]
    r = radius_map(32)
    base_map = 10.0 + 20.0 * r  # more error at high frequencies
    a_map = base_map - 5.0 * (r > 2 / 3)
    maps = {"baseline": base_map, "pareto-2": a_map}  # b (pareto-1) logged no map

    out = tmp_path / "report"
    written = write_report(choice, out, alpha={}, fourier=maps)
    assert out / FOURIER_FIGURE in written and (out / FOURIER_FIGURE).read_bytes().startswith(PNG)
    page = (out / "report.html").read_text()
    section = page[page.index("<h2>Frequency sensitivity</h2>") : page.index("<h2>Against the baseline")]
    assert section.count('src="data:image/png;base64,') == 1
    assert "minus the baseline" in section and "pareto-2: a" in section
    assert "1 model(s) without a map" in section  # b
    # The band means of the models that logged them, from their metrics.
    assert re.search(r"<td>baseline</td><td>base</td><td>10\.00</td><td>20\.00</td><td>30\.00</td>", section)
    assert re.search(r"<td>pareto-2</td><td>a</td><td>11\.00</td><td>15\.00</td><td>18\.00</td>", section)
    assert not re.search(r"https?://", page)


def test_without_a_baseline_map_differences_are_from_the_first_model(tmp_path):
    choice = study([record("base", 90, 60, baseline=True, mode="free"), record("a", 88, 70)])
    written = write_report(choice, tmp_path, alpha={}, fourier={"pareto-1": np.full((32, 32), 40.0)})
    assert tmp_path / FOURIER_FIGURE in written
    page = (tmp_path / "report.html").read_text()
    assert "The baseline logged no map: differences are from pareto-1." in page


def test_no_maps_is_one_sentence_not_a_crash(tmp_path):
    choice = study([record("base", 90, 60, baseline=True, mode="free"), record("a", 88, 70)])
    for fourier in (None, {}):
        written = write_report(choice, tmp_path, alpha={}, fourier=fourier)
        assert tmp_path / FOURIER_FIGURE not in written
        page = (tmp_path / "report.html").read_text()
        section = page[page.index("<h2>Frequency sensitivity</h2>") : page.index("<h2>Against the baseline")]
        assert section.count("<p>") == 1 and "logged a Fourier heat map" in section
        assert "<img" not in section
