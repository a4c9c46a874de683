"""The study's console (``study.search.console``) and ``--json`` output (``study.cli.output``),
without Ray: plain lines when stdout is not a terminal, a block redrawn in place
when it is, and one JSON document on stdout whatever else is written."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from study import metrics as M
from study.search import console as C
from study.search.spaces import BASELINE_FLAG

OBJECTIVES = (M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC)
REPO = Path(__file__).resolve().parents[2]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_short_config_names_the_searched_values_briefly():
    assert C.short_config({BASELINE_FLAG: True}) == "baseline"
    cfg = {
        BASELINE_FLAG: False,
        "train.lr": 0.069239,
        "frequency.perturbation": 0.21183,
        "frequency.proportion": 0.52693,
        "frequency.mode": "fixed",
        "model.width": 16,
    }
    assert C.short_config(cfg) == "fixed p=0.527 σ=0.212 lr=0.0692 width=16"
    assert C.short_config({}) == "-"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_at_events_only(monkeypatch):
    out, clock = io.StringIO(), Clock()
    monkeypatch.setattr(sys, "stdout", out)
    view = C.StudyConsole("s", OBJECTIVES, epochs=3, num_trials=2, progress_every_s=10, clock=clock)
    view.started("aaaa1111", {BASELINE_FLAG: True})
    clock.now += 4
    view.result("aaaa1111", {M.EPOCHS_COMPLETED: 1, M.VAL_CLEAN_ACC: 9.0})  # 4 s after its start: silent
    clock.now += 8
    view.result("aaaa1111", {M.EPOCHS_COMPLETED: 2, M.VAL_CLEAN_ACC: 10.5, M.FILTER_PROPORTION: 0.0})
    clock.now += 4
    view.result("aaaa1111", {M.EPOCHS_COMPLETED: 3, M.VAL_CLEAN_ACC: 12.0})  # 4 s after the last line
    final = {M.VAL_CLEAN_ACC: 15.578, M.VAL_CORRUPTION_ACC: 11.111, "trial_status": "finished"}
    clock.now += 20
    view.result("aaaa1111", final)  # the final report: the end line says it
    view.ended("aaaa1111", {**final, M.EPOCHS_COMPLETED: 3})
    view.started("bbbb2222", {"frequency.mode": "learned", "frequency.proportion": 0.4})
    view.failed("bbbb2222", "RuntimeError: injected failure")
    view.close()
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue()
    assert lines[0] == "trial aaaa1111 started   baseline"
    assert lines[1] == (
        "trial aaaa1111 running   baseline  epoch 2/3  "
        "val/clean_acc 10.50  val/corruption_acc -  p̂ 0.000  12 s"
    )
    assert lines[2] == (
        "trial aaaa1111 finished  baseline  epoch 3/3  "
        "val/clean_acc 15.58  val/corruption_acc 11.11  p̂ 0.000  36 s"
    )
    assert lines[3] == "trial bbbb2222 started   learned p=0.4"
    assert lines[4].startswith("trial bbbb2222 failed") and lines[4].endswith(
        "error: RuntimeError: injected failure"
    )
    assert len(lines) == 5


def test_terminal_redraws_a_block_and_keeps_end_lines(monkeypatch):
    out = Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    view = C.StudyConsole("s", OBJECTIVES, epochs=3, num_trials=4)
    view.started("aaaa1111", {"frequency.mode": "free"})
    first = out.getvalue()
    assert "study s: 0/4 trials done, 1 running" in first and "aaaa1111" in first and "\x1b" not in first
    view.result("aaaa1111", {M.EPOCHS_COMPLETED: 1, M.VAL_CLEAN_ACC: 20.0})
    second = out.getvalue()[len(first) :]
    assert second.startswith("\x1b[3F\x1b[J")  # header, table header, one row: up 3 lines, clear, redraw
    assert "1/3" in second and "20.00" in second
    view.ended("aaaa1111", {M.VAL_CLEAN_ACC: 21.0, M.VAL_CORRUPTION_ACC: 9.0, M.EPOCHS_COMPLETED: 3})
    third = out.getvalue()[len(first) + len(second) :]
    assert "trial aaaa1111 finished  free  epoch 3/3  val/clean_acc 21.00  val/corruption_acc 9.00" in third
    assert third.rstrip("\n").splitlines()[-1].startswith("study s: 1/4 trials done (1 finished), 0 running")
    view.close()
    assert out.getvalue().endswith("\x1b[1F\x1b[J")  # the block is gone before the summary


def test_json_mode_sends_everything_else_to_stderr():
    """Python prints, C-level writes to fd 1 and subprocesses all land on stderr; stdout is the document."""
    code = (
        "import os, subprocess, sys\n"
        "from study.cli.output import json_mode, print_json\n"
        "print('before')\n"
        "with json_mode():\n"
        "    print('python print')\n"
        "    os.write(1, b'fd write\\n')\n"
        "    subprocess.run([sys.executable, '-c', 'print(\"child\")'])\n"
        "    print_json({'a': [1, 2]}, indent=1)\n"
        "    print('after the document')\n"
        "print('done')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "before\n" + json.dumps({"a": [1, 2]}, indent=1) + "\ndone\n"
    for text in ("python print", "fd write", "child", "after the document"):
        assert text in proc.stderr


def test_one_document_only():
    from study.cli.output import json_mode, print_json

    with pytest.raises(RuntimeError, match="exactly one JSON document"):
        with json_mode():
            print_json({})
            print_json({})


def test_json_commands_print_their_document_through_print_json():
    """In --json mode plain prints go to stderr: a command's document must go through print_json."""
    for path in sorted((REPO / "study" / "cli").glob("*.py")):
        text = path.read_text()
        if '"--json"' in text:
            assert "print(json.dumps" not in text and "print_json(" in text, path.name


def test_documents_are_strict_json(capsys):
    from study.cli.output import print_json

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    print_json({"nan": float("nan"), "rows": [float("inf"), 1.5]})
    assert json.loads(capsys.readouterr().out, parse_constant=refuse) == {"nan": None, "rows": [None, 1.5]}
