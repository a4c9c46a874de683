"""Generated sections of a hand-written document: text between marker comments
``<!-- generated: NAME begin -->`` and ``<!-- generated: NAME end -->`` that a program writes and a
test regenerates (``docs/results/paper-cpu.md`` from the study's shipped export). Pure text in, text out.
"""

from __future__ import annotations

import re

__all__ = ["begin_marker", "blocks", "end_marker", "first_table", "results_body", "splice"]

_BLOCK = re.compile(
    r"<!-- generated: (?P<name>[\w.-]+) begin -->\n(?P<body>.*?)<!-- generated: (?P=name) end -->",
    re.DOTALL,
)


def begin_marker(name: str) -> str:
    return f"<!-- generated: {name} begin -->"


def end_marker(name: str) -> str:
    return f"<!-- generated: {name} end -->"


def blocks(text: str) -> dict[str, str]:
    """name -> the text between its markers (without the marker lines)."""
    return {m["name"]: m["body"] for m in _BLOCK.finditer(text)}


def splice(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` replaced by ``body`` (a trailing newline added if missing).

    Raises:
        ValueError: when ``text`` has no such block, or it twice.
    """
    body = body if body.endswith("\n") else body + "\n"
    found = [m for m in _BLOCK.finditer(text) if m["name"] == name]
    if len(found) != 1:
        raise ValueError(f"generated block {name!r}: found {len(found)} times, expected once")
    m = found[0]
    return text[: m.start("body")] + body + text[m.end("body") :]


def results_body(results_md: str) -> str:
    """``results.md`` without its ``# title`` line, its headings one level deeper (to sit under a
    document's ``## Results``)."""
    lines = results_md.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    while lines and not lines[0].strip():
        lines = lines[1:]
    out = ["#" + line if line.startswith("#") else line for line in lines]
    return "\n".join(out).rstrip("\n") + "\n"


def first_table(results_md: str) -> str:
    """The first Markdown table of ``results.md`` (its test-set table), as lines."""
    lines, table = results_md.splitlines(), []
    for line in lines:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    if not table:
        raise ValueError("results.md: holds no table")
    return "\n".join(table) + "\n"
