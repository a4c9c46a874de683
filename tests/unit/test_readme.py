"""The README's commands are real: its test command is what CI runs, and every
``freqstudy`` example parses with the real command-line parser."""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import REPO

from study.cli import COMMANDS, build_parser

README = (REPO / "README.md").read_text()


def fenced_commands() -> list[str]:
    """Commands in the README's code blocks (fenced or indented), continuation lines joined."""
    lines, out = [], []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        lines += block.splitlines()
    lines += [ln[4:] for ln in README.splitlines() if ln.startswith("    ") and not ln.startswith("     ")]
    joined = "\n".join(lines).replace("\\\n", " ")
    for ln in joined.splitlines():
        ln = ln.split("  #")[0].strip()
        if ln:
            out.append(ln)
    return out


def test_set_up_commands_install_then_run_and_ci_runs_the_same_tests():
    setups = [c for c in fenced_commands() if c.startswith("python3 -m venv")]
    assert len(setups) == 2, setups
    main_job, tests = setups
    assert "pip install torch==2.13.0" in main_job and "freqstudy run" in main_job
    test_cmd = tests.split("&&")[-1].strip()
    assert test_cmd == "python -m pytest -q tests"
    ci = (REPO / ".ci" / "run").read_text()
    assert test_cmd in ci and "torch==2.13.0" in ci


def freqstudy_examples() -> list[str]:
    found = []
    for cmd in fenced_commands():
        for part in cmd.split("&&"):
            part = part.strip().strip("'")
            if part.startswith("freqstudy "):
                found.append(part)
    return found


@pytest.mark.parametrize("command", freqstudy_examples())
def test_every_freqstudy_example_parses(command):
    argv = shlex.split(command.replace('$(hostname -I | cut -d" " -f1)', "10.0.0.1"))[1:]
    args = build_parser().parse_args(argv)
    assert args.command == argv[0]


def test_examples_cover_every_subcommand():
    used = {shlex.split(c)[1] for c in freqstudy_examples()}
    assert set(COMMANDS) <= used, used  # every subcommand has an example
