"""The suite's one rule for the command line (issue 25): no traceback unless ``--debug``. Every
in-process ``main`` is the checked one, the check can fail (and lets ``--debug`` through), and
no test builds a ``python -m study.cli`` command except through ``tests/cli_runner.py``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import study.cli
from tests.cli_runner import TRACEBACK, checked_main, no_traceback, run_freqstudy

TESTS = Path(__file__).resolve().parents[1]
BAD = ["pareto", "--study", "x", "--max-clean-drop", "-1"]  # refused before any server starts


def test_every_in_process_main_is_the_checked_one():
    from study.cli import main

    assert getattr(main, "checks_tracebacks", False) and main is study.cli.main


def test_the_check_fails_on_a_traceback_and_an_escaping_exception_unless_debug(capsys, monkeypatch):
    monkeypatch.delenv("FREQSTUDY_DEBUG", raising=False)

    def noisy(argv):
        import traceback

        try:
            raise KeyError("inner")
        except KeyError:
            traceback.print_exc(file=sys.stderr)
        return 2

    def crashing(argv):
        raise RuntimeError("a bug")

    with pytest.raises(AssertionError, match="printed a traceback without --debug"):
        checked_main(noisy)(["pareto"])
    assert TRACEBACK in capsys.readouterr().err  # passed through to the test's capture
    assert checked_main(noisy)(["--debug", "pareto"]) == 2
    with pytest.raises(AssertionError, match="let RuntimeError escape"):
        checked_main(crashing)(["pareto"])
    monkeypatch.setenv("FREQSTUDY_DEBUG", "1")
    with pytest.raises(RuntimeError):
        checked_main(crashing)(["pareto"])
    assert checked_main(noisy)(["pareto"]) == 2


def test_the_real_command_passes_and_debug_shows_its_traceback(capsys, monkeypatch):
    monkeypatch.delenv("FREQSTUDY_DEBUG", raising=False)
    assert study.cli.main(BAD) == 2
    assert TRACEBACK not in capsys.readouterr().err
    assert study.cli.main(["--debug", *BAD]) == 2
    assert TRACEBACK in capsys.readouterr().err
    done = run_freqstudy(*BAD)  # a subprocess, checked the same way
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    with pytest.raises(AssertionError, match="printed a traceback"):
        no_traceback(f"{TRACEBACK}:\n  File ...\nKeyError: 1\n", ["pareto"], env={})


def _cli_commands(tree: ast.AST):
    """Line numbers of list or tuple literals holding ``"-m", "study.cli"``."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)):
            words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            if any(a == "-m" and b == "study.cli" for a, b in zip(words, words[1:])):
                yield node.lineno


def test_no_test_runs_the_command_line_around_the_checked_runners():
    found = [
        f"{path.relative_to(TESTS)}:{line}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != "cli_runner.py"
        for line in _cli_commands(ast.parse(path.read_text()))
    ]
    assert not found, (
        f"build freqstudy commands with tests.cli_runner (run_freqstudy, freqstudy_command): {found}"
    )
