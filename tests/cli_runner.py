"""Every test that runs the command line runs it through here, so that one rule holds suite-wide
(issue 25): **freqstudy prints no traceback unless ``--debug`` (or ``FREQSTUDY_DEBUG``) asks
for one** -- a refusal is one line, a crash is a bug to fix at its root.

- In-process: ``tests/conftest.py`` replaces ``study.cli.main`` with :func:`checked_main` before
  any test module imports it, so every ``main([...])`` call in the suite is checked: what it
  writes to ``sys.stderr`` is passed through (``capsys``/``capfd`` see it unchanged) and
  searched, and an exception escaping ``main`` (which a user would see as a traceback) fails
  the test.
- In a subprocess: :func:`run_freqstudy` (``python -m study.cli ...`` to its end, output
  captured) checks the stderr it returns; a test that drives a long-running process itself
  builds the command with :func:`freqstudy_command` and checks what it collected with
  :func:`no_traceback`. ``tests/unit/test_cli_runner.py`` fails on any ``-m study.cli``
  command built elsewhere.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRACEBACK = "Traceback (most recent call last)"
DEBUG_ENV = "FREQSTUDY_DEBUG"  # study.cli.DEBUG_ENV (not imported: this module stays import-light)


def debug_asked(argv: Sequence[object], env: Mapping[str, str] | None = None) -> bool:
    """Whether the command asked for tracebacks: ``--debug`` before the command or ``FREQSTUDY_DEBUG``."""
    env = os.environ if env is None else env
    return "--debug" in [str(a) for a in argv] or env.get(DEBUG_ENV, "") not in ("", "0")


def no_traceback(
    text: str | bytes | None, argv: Sequence[object], env: Mapping[str, str] | None = None
) -> None:
    """Fail when ``text`` (a freqstudy command's stderr or output) holds a traceback that
    ``--debug`` did not ask for."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    if text and TRACEBACK in text and not debug_asked(argv, env):
        words = " ".join(str(a) for a in argv)
        raise AssertionError(f"`freqstudy {words}` printed a traceback without --debug:\n{text[-4000:]}")


def freqstudy_command(*argv: object) -> list[str]:
    """``python -m study.cli ARGV`` with this interpreter."""
    return [sys.executable, "-m", "study.cli", *(str(a) for a in argv)]


def run_freqstudy(*argv: object, **kwargs) -> subprocess.CompletedProcess:
    """``freqstudy ARGV`` in a subprocess, to its end (``subprocess.run`` keywords; by default
    from the repository root with text output captured); what it printed (stderr, and stdout,
    where stderr may be merged) checked by :func:`no_traceback`."""
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("cwd", REPO)
    done = subprocess.run(freqstudy_command(*argv), **kwargs)
    for text in (done.stderr, done.stdout):
        no_traceback(text, argv, kwargs.get("env"))
    return done


def finished_study(*argv: object, storage: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """``freqstudy run ARGV --storage STORAGE`` in a subprocess as a user runs it, in this
    process's environment (its ``FREQSTUDY_HOME``) with the repository on the path, to its
    end: the test fails, showing the tails of its output, unless it exited 0."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = run_freqstudy("run", *argv, "--storage", storage, env=env, timeout=timeout)
    assert out.returncode == 0, f"freqstudy run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


class _Tee:
    """A text stream that writes through to ``inner`` and remembers what passed."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.seen: list[str] = []

    def write(self, text: str) -> int:
        self.seen.append(text)
        return self.inner.write(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def checked_main(main: Callable[..., int]) -> Callable[..., int]:
    """``study.cli.main`` that fails the calling test when the command printed a traceback to
    ``sys.stderr``, or let an exception escape, without ``--debug`` (see the module's text)."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        words = list(sys.argv[1:] if argv is None else argv)
        saved = sys.stderr
        tee = sys.stderr = _Tee(saved)
        try:
            code = main(argv)
        except SystemExit:
            raise  # argparse's usage error: a usage line, not a traceback
        except Exception as e:
            if debug_asked(words):
                raise
            raise AssertionError(
                f"`freqstudy {' '.join(map(str, words))}` let {type(e).__name__} escape: a user "
                f"sees a traceback ({e})"
            ) from e
        finally:
            if sys.stderr is tee:
                sys.stderr = saved
        no_traceback("".join(tee.seen), words)
        return code

    run.checks_tracebacks = True  # type: ignore[attr-defined]
    return run


def install() -> None:
    """Put :func:`checked_main` in place of ``study.cli.main`` (once, from ``tests/conftest.py``)."""
    import study.cli

    if not getattr(study.cli.main, "checks_tracebacks", False):
        study.cli.main = checked_main(study.cli.main)
