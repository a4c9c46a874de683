"""The published study (``docs/results/paper-cpu.md``) regenerated from the files shipped beside it
(``docs/results/paper-cpu/data/``, written by ``freqstudy export``), and the file-backed study source
refusing what it must not read. No server: the export is read by ``study.exported.load_export``."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from study import metrics as M
from study.analysis.outcomes import clean_key
from study.exported import load_export
from study.reporting.published import blocks, first_table, results_body, splice

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "docs" / "results" / "paper-cpu" / "data"
DOC = REPO / "docs" / "results" / "paper-cpu.md"
README = REPO / "README.md"


@pytest.fixture(scope="module")
def results_md(tmp_path_factory) -> str:
    from study.cli.report import results_from_export

    return results_from_export(DATA, tmp_path_factory.mktemp("results") / "results.md").read_text()


@pytest.mark.slow
def test_the_published_tables_are_regenerated_from_the_shipped_outcomes(results_md):
    doc = blocks(DOC.read_text())
    assert "results" in doc, f"{DOC}: no generated results block"
    assert doc["results"] == results_body(results_md), (
        f"{DOC}: the generated block differs from what the shipped export gives; "
        "rerun python scripts/republish.py docs/results/paper-cpu/data docs/results/paper-cpu.md README.md"
    )
    readme = blocks(README.read_text())
    assert readme.get("results-test-table") == first_table(results_md), f"{README}: Results table is stale"


def test_the_shipped_export_is_small_whole_and_from_the_corrected_study():
    manifest = json.loads((DATA / "manifest.json").read_text())
    total = sum(f["bytes"] for f in manifest["files"].values())
    assert total < 5e6, f"the export is {total:,} bytes; it should be a few MB"
    runs, outcomes = load_export(DATA)  # every file against its sha256
    trials = runs["trials"]
    assert len(trials) == 30 and len(outcomes) == 30
    assert {t["tags"][M.TAG_CODE_VERSION] for t in trials} == {"64102c4"}
    learned = [t for t in trials if t["params"]["frequency.mode"] == "learned"]
    assert len(learned) == 6 and {M.learned_form_of(t) for t in learned} == {"energy-share"}
    # Clean and CIFAR-10-C on the same images: every corrupted copy as long as the clean split.
    for o in outcomes.values():
        for split, n in (("val", 466), ("test", 500)):
            assert len(o.arrays[clean_key(split)]) == n
            assert {len(a) for a in o.corrupted(split).values()} == {n}
            assert len(o.corrupted(split)) == 19 * 5


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(DATA, dst)
    return dst


def _rehash(root: Path, name: str) -> None:
    """Update the manifest for a changed file, as someone forging an export would."""
    manifest = json.loads((root / "manifest.json").read_text())
    data = (root / name).read_bytes()
    manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_a_changed_file_is_refused_by_its_sha256(tmp_path):
    root = _copy(tmp_path)
    text = (root / "runs.json").read_text()
    (root / "runs.json").write_text(text.replace('"FINISHED"', '"FAILED"', 1))
    with pytest.raises(ValueError, match=r"runs\.json: sha256 differs"):
        load_export(root)


def test_a_pickle_in_place_of_outcomes_is_never_unpickled(tmp_path):
    root = _copy(tmp_path)
    marker = tmp_path / "pwned"
    victim = sorted((root / "outcomes").glob("*.npz"))[0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # an npz whose member is a pickle that would touch a file
        payload = pickle.dumps(np.array([_Touch(str(marker))], dtype=object))
        zf.writestr("keys.npy", payload)
    victim.write_bytes(buf.getvalue())
    _rehash(root, f"outcomes/{victim.name}")
    with pytest.raises(ValueError, match=victim.name):
        load_export(root)
    assert not marker.exists()


class _Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_run_id_with_a_path_in_it_is_refused(tmp_path):
    root = _copy(tmp_path)
    doc = json.loads((root / "runs.json").read_text())
    doc["trials"][0]["run_id"] = "../../etc/passwd"
    (root / "runs.json").write_text(json.dumps(doc))
    _rehash(root, "runs.json")
    with pytest.raises(ValueError, match="is not a run id"):
        load_export(root)


def test_oversized_and_non_json_files_are_one_line_errors(tmp_path, monkeypatch):
    root = _copy(tmp_path)
    import study.exported as E

    monkeypatch.setattr(E, "MAX_JSON_BYTES", 100)
    with pytest.raises(ValueError, match=r"manifest\.json: is [\d,]+ bytes; allowed at most 100"):
        load_export(root)
    monkeypatch.undo()
    (root / "manifest.json").write_text("[" * 100_000)
    with pytest.raises(ValueError, match=r"manifest\.json: "):
        load_export(root)
    with pytest.raises(ValueError, match="not a folder"):
        load_export(tmp_path / "missing")


def test_generated_blocks_splice_and_refuse_a_missing_one():
    text = "a\n<!-- generated: t begin -->\nold\n<!-- generated: t end -->\nb\n"
    new = splice(text, "t", "new")
    assert blocks(new) == {"t": "new\n"} and new.startswith("a\n") and new.endswith("end -->\nb\n")
    with pytest.raises(ValueError, match="found 0 times"):
        splice(text, "u", "x")
    md = "# s: title\n\nintro\n\n## Test\n\n| a |\n|---|\n| 1 |\n\n### more\n\n| b |\n"
    assert results_body(md) == "intro\n\n### Test\n\n| a |\n|---|\n| 1 |\n\n#### more\n\n| b |\n"
    assert first_table(md) == "| a |\n|---|\n| 1 |\n"


def test_report_takes_a_study_or_an_export_not_both(tmp_path, capsys):
    from study.cli import main

    for argv in (["report"], ["report", "--study", "s", "--from-export", str(DATA)]):
        assert main([*argv, "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "give --study" in err[0] and "--from-export" in err[0]
    assert main(["report", "--from-export", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    assert "not a folder" in capsys.readouterr().err
