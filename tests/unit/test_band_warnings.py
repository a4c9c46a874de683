"""A band split without spatial structure (a band that is the DC bin alone, or one conjugate
pair) is one line, for configs, spaces and reports, and `train` and `run` print it; every shipped
space and the defaults split the grid into two bands that hold structure."""

from __future__ import annotations

import numpy as np
import pytest

from models.band_bins import band_bins, band_problem, rings, split_problem, structured_cutoffs
from models.spectral import band_masks, normalised_radius
from study.band_warnings import config_warning, report_note, space_warnings, split_warning
from study.cli import main
from study.config import TrialConfig
from study.search.space_parser import load_space, parse_space
from study.search.spaces import REPO_SPACES

REPO = REPO_SPACES.parent
# Per k: a cutoff below the first ring after DC (the low band is DC alone), and one above it.
DEGENERATE = {3: 0.5, 5: 0.3, 7: 0.25}
STRUCTURED = {3: 0.75, 5: 0.6, 7: 0.5}
FIRST_RING = {3: 2 / 3, 5: 0.4, 7: 2 / 7}
SPACE = """\
objectives:
  - {metric: val/clean_acc, direction: maximize}
sampler: {name: tpe, seed: 0}
fixed:
  model.width: 8
"""


@pytest.mark.parametrize("k", [3, 5, 7])
def test_rings_and_bands_are_the_spectral_grid(k):
    """The torch-free bins agree with models.spectral, exactly at every ring radius too."""
    r = normalised_radius(k).numpy()
    assert np.allclose([ring.radius for ring in rings(k)], np.unique(r.round(12)))
    assert sum(len(ring.bins) for ring in rings(k)) == k * k
    radii = np.unique(r)
    for cutoff in [1e-3, *radii[1:-1], *(radii[1:] - 1e-12), 0.5, 0.75]:  # on and just below each ring
        low, high = band_bins(k, float(cutoff))
        mask, _ = band_masks(k, float(cutoff))
        assert sorted((u % k, v % k) for u, v in low) == sorted(map(tuple, np.argwhere(mask.numpy())))
        assert len(low) + len(high) == k * k


@pytest.mark.parametrize("k", [3, 5, 7])
def test_a_degenerate_cutoff_warns_in_one_line_naming_what_works(k):
    config = TrialConfig.from_flat({"model.stem_kernel": k, "frequency.cutoff": DEGENERATE[k]})
    line = config_warning(config)
    assert line is not None and "\n" not in line
    assert line.startswith(f"frequency.cutoff {DEGENERATE[k]:g} with model.stem_kernel {k}: ")
    assert "the low band is the DC bin alone, so a low-frequency filter is a constant filter" in line
    # The cutoffs it names work, at both printed ends, and what is just below them does not.
    lo_txt, hi_txt = line.rsplit(f"real structure for k={k}: ", 1)[1].split(" to ")
    lo, hi = float(lo_txt), float(hi_txt)
    assert lo == pytest.approx(FIRST_RING[k], abs=1e-3)
    assert hi == pytest.approx(float(normalised_radius(k).max()), abs=1e-3)
    for c in (lo, hi):
        assert config_warning(config.replace(**{"frequency.cutoff": c})) is None
    assert config_warning(config.replace(**{"frequency.cutoff": FIRST_RING[k] - 1e-9})) is not None


@pytest.mark.parametrize("k", [3, 5, 7])
def test_a_structured_cutoff_is_silent(k):
    config = TrialConfig.from_flat({"model.stem_kernel": k, "frequency.cutoff": STRUCTURED[k]})
    assert config_warning(config) is None
    low, high = band_bins(k, STRUCTURED[k])
    assert len(low) >= 5 and len(high) >= 4  # DC and at least one ring of 4; at least one ring


@pytest.mark.parametrize("k", [3, 5, 7])
def test_structured_cutoffs_match_a_scan(k):
    lo, hi = structured_cutoffs(k)
    for c in np.linspace(1e-3, float(normalised_radius(k).max()) - 1e-6, 2001):
        assert (split_problem(k, float(c)) is None) == (lo <= c < hi), c


@pytest.mark.parametrize("k", [3, 5, 7])
def test_method_doc_gives_the_grid(k):
    """docs/method.md §10 lists every ring with its bins and the bands from it, as computed."""
    text = (REPO / "docs" / "method.md").read_text()
    low = 0
    for ring in rings(k):
        low += len(ring.bins)
        row = f"| {k} | {ring.radius:.3f} | {len(ring.bins)} |"
        assert row in text, row
        assert text.split(row, 1)[1].split("\n", 1)[0].endswith(f"| {low} | {k * k - low} |"), row


def test_one_conjugate_pair_is_degenerate_too():
    """Radial splits of odd grids never give one (every ring has 4 or 8 bins); any band can."""
    assert "constant plus one sinusoid" in band_problem([(0, 0), (0, 1), (0, -1)], "low")
    assert "the high band is the conjugate pair ±(1, 1) alone" in band_problem([(1, 1), (-1, -1)], "high")
    assert band_problem([(0, 0), (0, 1), (0, -1), (1, 0), (-1, 0)], "low") is None
    assert band_problem([], "high") is None
    assert all(len(ring.bins) in (4, 8) for k in (3, 5, 7) for ring in rings(k)[1:])


def test_the_defaults_split_with_structure():
    config = TrialConfig()
    assert config_warning(config) is None
    for k in (3, 5, 7):  # the default cutoff suits every stem kernel a space may choose
        assert config_warning(config.replace(**{"model.stem_kernel": k})) is None


@pytest.mark.parametrize("path", sorted(REPO_SPACES.glob("*.yaml")), ids=lambda p: p.stem)
def test_no_shipped_space_warns(path):
    assert space_warnings(load_space(path)) == []


def test_space_warnings_cover_fixed_searched_and_conditioned_cutoffs():
    fixed = parse_space(SPACE + "  frequency.cutoff: 0.5\n  model.stem_kernel: 3\n", source="s")
    assert space_warnings(fixed) == [split_warning(3, 0.5)]
    searched = parse_space(
        SPACE + "parameters:\n"
        "  model.stem_kernel: {type: choice, choices: [3, 5, 7]}\n"
        "  frequency.cutoff: {type: uniform, low: 0.3, high: 0.9}\n",
        source="s",
    )
    lines = space_warnings(searched)
    assert [line.split(":")[0] for line in lines] == [
        "frequency.cutoff searched from 0.3 to 0.9 with model.stem_kernel 3",
        "frequency.cutoff searched from 0.3 to 0.9 with model.stem_kernel 5",
    ]
    assert "below 0.667, the low band is the DC bin alone" in lines[0] and "below 0.400" in lines[1]
    # A conditioned cutoff leaves the other trials at the default one, which is checked too.
    conditioned = parse_space(
        SPACE + "parameters:\n"
        "  frequency.mode: {type: choice, choices: [free, fixed]}\n"
        "  frequency.cutoff: {type: uniform, low: 0.7, high: 0.9, when: {frequency.mode: [fixed]}}\n",
        source="s",
    )
    assert space_warnings(conditioned) == []
    # A conditioned kernel leaves the other trials at the fixed or default one (k = 3 here).
    kernel_conditioned = parse_space(
        SPACE.replace("model.width: 8", "model.width: 8\n  frequency.cutoff: 0.5") + "parameters:\n"
        "  frequency.mode: {type: choice, choices: [free, fixed]}\n"
        "  model.stem_kernel: {type: choice, choices: [5], when: {frequency.mode: [fixed]}}\n",
        source="s",
    )
    assert space_warnings(kernel_conditioned) == [split_warning(3, 0.5)]
    # The baseline's own overrides build trial 0, which is checked as built.
    baseline = parse_space(SPACE + "baseline:\n  frequency.cutoff: 0.5\n  model.stem_kernel: 3\n", source="s")
    assert space_warnings(baseline) == [split_warning(3, 0.5)]
    kernel_searched = parse_space(
        SPACE.replace("model.width: 8", "model.width: 8\n  frequency.cutoff: 0.5")
        + "parameters:\n  model.stem_kernel: {type: choice, choices: [3, 5]}\n",
        source="s",
    )
    assert space_warnings(kernel_searched) == [split_warning(3, 0.5)]


def test_report_note_names_each_kernel_once():
    def trial(k, c):
        return {"params": {"model.stem_kernel": str(k), "frequency.cutoff": str(c)}}

    assert report_note([trial(3, 0.75), trial(5, 0.6)]) == ""
    note = report_note([trial(3, 0.5), trial(3, 0.6), trial(5, 0.3), trial(5, 0.6), {"params": {}}])
    assert note.count("Band split: ") == 2
    assert "frequency.cutoff 0.5 to 0.6 (2 values) with model.stem_kernel 3: the low band" in note
    assert "frequency.cutoff 0.3 with model.stem_kernel 5: the low band" in note


def test_train_prints_the_warning_before_anything_runs(tmp_path, capsys):
    """`freqstudy train` with a degenerate split: the warning, then (here) the missing-data error."""
    code = main(
        ["train", "--set", "model.stem_kernel=3", "--set", "frequency.cutoff=0.5"]
        + ["--set", "data.download=false", "--data-dir", str(tmp_path / "no-data")]
    )
    err = capsys.readouterr().err.splitlines()
    assert code != 0
    assert err[0] == f"freqstudy train: warning: {split_warning(3, 0.5)}"


def test_run_prints_the_warning_before_anything_runs(tmp_path, capsys):
    """`freqstudy run` on a degenerate space: the warning, then (here) the bad-flag error."""
    space = tmp_path / "degenerate.yaml"
    space.write_text(SPACE + "  model.stem_kernel: 5\n  frequency.cutoff: 0.3\n")
    code = main(["run", "--space", str(space), "--study", "s", "--num-trials", "0"])
    err = capsys.readouterr().err.splitlines()
    assert code != 0
    assert err[0] == f"freqstudy run: warning: {split_warning(5, 0.3)}"
    assert "--num-trials" in err[1]


def test_the_report_says_it_in_its_opening_paragraph():
    from study import metrics as M
    from study.reporting.report import render_html
    from study.selection import choose as P
    from study.selection.choice import choose

    def record(run_id, clean, corr, cutoff, baseline=False):
        tags = {
            M.TAG_STATUS: "finished",
            M.TAG_ROLE: "trial",
            **({M.TAG_BASELINE: "true"} if baseline else {}),
        }
        metrics = {M.VAL_CLEAN_ACC: clean, M.VAL_CORRUPTION_ACC: corr, M.EPOCHS_COMPLETED: 2.0}
        params = {"train.epochs": "2", "model.stem_kernel": "3", "frequency.cutoff": str(cutoff)}
        return {"run_id": run_id, "name": run_id, "params": params, "metrics": metrics, "tags": tags}

    def opening(cutoff):
        trials = [record("base", 90, 60, cutoff, baseline=True), record("a", 88, 70, cutoff)]
        runs = {"study": "s", "experiment_id": "1", "parent": None, "trials": trials}
        page = render_html(choose(runs, P.parse_objectives(None), None), trials, [], {})
        return page[page.index("<h1>") : page.index("<h2>")]

    assert "Band split" not in opening(0.75)
    assert f"Band split: {split_warning(3, 0.5)}." in opening(0.5)
