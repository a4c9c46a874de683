"""The command line's side of library errors and notes: a FieldError names the keyword in the
library and the flag on the command line; --debug / FREQSTUDY_DEBUG shows the traceback behind
the one-line error; library notes reach stderr as ``freqstudy <command>: note: ...``."""

from __future__ import annotations

import logging

import pytest

from study.cli import DEBUG_ENV, library_notes, main
from study.errors import FieldError
from study.selection.choose import check_max_clean_drop

BAD = ["pareto", "--study", "x", "--max-clean-drop", "-1"]  # refused before any server starts


def test_the_library_names_its_keyword():
    with pytest.raises(FieldError) as e:
        check_max_clean_drop(-1.0)
    assert e.value.field == "max_clean_drop" and str(e.value).startswith("max_clean_drop: -1.0 ")
    assert isinstance(e.value, ValueError)


def test_the_command_names_the_flag_in_one_line(capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert main(BAD) == 2
    err = capsys.readouterr().err
    assert err == "freqstudy pareto: error: --max-clean-drop: -1.0 must be a number of points >= 0\n"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback_then_the_line(capsys, monkeypatch, how):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    if how == "env":
        monkeypatch.setenv(DEBUG_ENV, "1")
    assert main((["--debug"] if how == "flag" else []) + BAD) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert any("check_max_clean_drop" in line for line in err)
    assert err[-1] == "freqstudy pareto: error: --max-clean-drop: -1.0 must be a number of points >= 0"


def test_library_notes_reach_stderr_only_through_the_command(capsys):
    log = logging.getLogger("study.search.phases")
    with library_notes("run"):
        log.info("a resumed study keeps %s", "its resources")
        log.warning("storage is shared")
    log.info("outside a command: not printed by freqstudy")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "freqstudy run: note: a resumed study keeps its resources",
        "freqstudy run: warning: storage is shared",
    ]
