"""``--json`` output: exactly one JSON document on stdout, everything else on stderr.

A command in ``--json`` mode runs inside :func:`json_mode`: for the duration
of its work, file descriptor 1 is pointed at stderr (``os.dup2``), so writes by
Python, C libraries, Ray and any subprocess started meanwhile all land on
stderr, and ``sys.stdout`` is pointed at ``sys.stderr`` as well (for callers
that replaced it, such as pytest's capture). The command hands its document to
:func:`print_json`, which holds it; once stdout is restored, the document is
written there, and nothing else. A command that fails prints no document.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

from study.metrics import finite_or_none

_held: list[str] | None = None  # the document of the --json command now running, once printed


def _strict(value: Any) -> Any:
    """``value`` with NaN and infinities as None: strict JSON has no literal for them."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()  # a numpy scalar
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def print_json(document: Any, **dumps_kwargs: Any) -> None:
    """Print ``document`` as strict JSON (NaN as null): held until :func:`json_mode` ends, else at once."""
    text = json.dumps(_strict(document), allow_nan=False, **dumps_kwargs)
    if _held is None:
        print(text, flush=True)
        return
    if _held:
        raise RuntimeError("a --json command prints exactly one JSON document")
    _held.append(text)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout (fd 1 and ``sys.stdout``) to stderr for the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 (a detached process): Python-level redirection only
        saved = None
    if saved is not None:
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


@contextlib.contextmanager
def json_mode() -> Iterator[None]:
    """Run a ``--json`` command: all output but its one document goes to stderr."""
    global _held
    _held = []
    try:
        with stdout_to_stderr():
            yield
        for text in _held:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()
    finally:
        _held = None


def add_overrides(p: argparse.ArgumentParser, help_text: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``: the commands that build trial configs."""
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


# MLflow's run ids are 32 hex digits; other stores' may differ, but none holds a space, a slash
# or nothing at all (an empty id made the server retry for minutes, a slash addresses a path).
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_run_id(name: str, value: str) -> None:
    """A run id argument before any server is asked: one line naming ``name`` when it is not one."""
    if not RUN_ID.fullmatch(value):
        raise ValueError(
            f"{name} {value!r}: not a run id; allowed 1-64 letters, digits, - and _ (MLflow: 32 hex)"
        )
