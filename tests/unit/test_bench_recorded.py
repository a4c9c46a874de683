"""The bench's recorded figures are the README's, and a run worse than one of them says so."""

from __future__ import annotations

import re

import pytest
from conftest import REPO

from study.bench.recorded import RECORDED, Recorded, regressions


def performance_rows() -> dict[str, list[str]]:
    """The README's performance table: ``what`` column -> the row's cells."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Performance") :]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 5 and not re.fullmatch(r"-+", cells[0]):
            rows[cells[1]] = cells
    return rows


@pytest.mark.parametrize("figure", RECORDED, ids=lambda r: f"{r.section}.{r.key}.{r.quick}")
def test_each_recorded_figure_is_the_readme_tables(figure: Recorded):
    rows = performance_rows()
    assert figure.what in rows, f"no row {figure.what!r} in the README's performance table"
    number = re.match(r"[0-9][0-9,]*(\.[0-9]+)?", rows[figure.what][4])
    assert number, f"no number first in the last column of {rows[figure.what]}"
    assert float(number.group().replace(",", "")) == figure.value, f"{rows[figure.what]} vs {figure.value}"


def result(quick: bool, **sections) -> dict:
    return {"device": "cpu", "quick": quick, **sections}


def test_worse_than_recorded_by_more_than_the_tolerance_is_a_regression():
    speed = Recorded("corrupt", "speedup_vs_reference", True, 14.0, True, 1.25, "gen")
    start = Recorded("startup", "help_ratio", None, 2.0, False, 1.5, "help")
    rec = (speed, start)
    # 14 / 1.25 = 11.2 and 2.0 * 1.5 = 3.0 are the limits; at the limit is not a regression.
    assert (
        regressions(result(True, corrupt={"speedup_vs_reference": 11.2}, startup={"help_ratio": 3.0}), rec)
        == []
    )
    lines = regressions(
        result(True, corrupt={"speedup_vs_reference": 6.1}, startup={"help_ratio": 25.0}), rec
    )
    assert len(lines) == 2
    assert lines[0].startswith("REGRESSION corrupt.speedup_vs_reference (gen): 6.10, below 11.20")
    assert "README's table: 14" in lines[0] and "load average" in lines[0]
    assert lines[1].startswith("REGRESSION startup.help_ratio (help): 25.00, above 3.00")


def test_only_figures_of_this_kind_of_run_that_ran_are_compared():
    rec = (
        Recorded("corrupt", "speedup_vs_reference", True, 14.0, True, 1.25, "quick"),
        Recorded("corrupt", "speedup_vs_reference", False, 20.0, True, 1.25, "full"),
    )
    # A full run at 12x is below the full figure's limit (16), not the quick one's (11.2).
    lines = regressions(result(False, corrupt={"speedup_vs_reference": 12.0}), rec)
    assert len(lines) == 1 and "(full)" in lines[0]
    assert regressions(result(True, corrupt={"speedup_vs_reference": 12.0}), rec) == []
    assert regressions(result(True, corrupt={"skipped": "no frost textures"}), rec) == []
    assert regressions(result(True), rec) == []
