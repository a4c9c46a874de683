"""The ``freqstudy`` command: the table of subcommands and error handling.

Each subcommand is one module of this package that owns its flags
(``add_arguments(parser)``) and its action (``run(args) -> exit status``),
importing heavy libraries inside ``run``, so ``freqstudy bench`` needs neither
Ray nor MLflow and ``freqstudy --help`` is instant. Errors that a user can fix
(``ValueError``, ``FileNotFoundError``) end the command with one line on
stderr and exit status 2; other OS errors (a full disk, a permission denied) are
the environment's, not the command line's: one line naming the path and the
errno, exit status 1. A command with ``--json`` prints exactly one JSON
document on stdout (``study.cli.output``): everything else it, its libraries or
its subprocesses write goes to stderr.

Library functions raise :class:`study.errors.FieldError` naming the keyword they
refused; here it becomes the flag (``num_trials`` -> ``--num-trials``). Library
notes and warnings are ``logging`` records of the ``study`` logger; here they
become ``freqstudy <command>: note: ...`` lines on stderr. ``--debug`` (or
``FREQSTUDY_DEBUG=1``) prints the traceback behind any one-line error.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import sys
import traceback

from study.cli.output import json_mode
from study.errors import FieldError

DEBUG_ENV = "FREQSTUDY_DEBUG"

# name -> (module in this package, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train and evaluate one trial, tracked in MLflow (no Ray)"),
    "inspect": ("inspect", "print the first-layer frequency make-up of a logged model"),
    "fourier": (
        "fourier",
        "the Fourier heat map of a logged model: error per frequency under a Fourier-basis perturbation",
    ),
    "ui": ("ui", "serve the local MLflow store for browsing"),
    "corrupt": ("corrupt", "generate a CIFAR-10-C copy of the test set or the validation split"),
    "run": ("run", "run a study: Ray Tune trials, Optuna multi-objective search"),
    "pareto": ("pareto", "the study's Pareto set; optionally register the models"),
    "compare": ("compare", "two runs image by image: differences with intervals and p-values"),
    "report": ("report", "the study report: HTML, CSV and PNGs"),
    "plan": ("plan", "seeds per configuration to detect a difference, from a study's measured variance"),
    "simulate": (
        "simulate",
        "what a seed policy (fixed or racing) would cost and find, with a study's measured noise",
    ),
    "export": ("export", "a study's run table and per-image outcomes as files, for report --from-export"),
    "bench": ("bench", "performance benchmarks (torch and numpy only)"),
}


def _module(name: str):
    return importlib.import_module(f"study.cli.{COMMANDS[name][0]}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="freqstudy",
        description="Frequency-domain robustness studies of CNN first-layer filters.",
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help=f"print the traceback behind an error (or set {DEBUG_ENV}=1)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        _module(name).add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return p


def os_error_line(e: OSError) -> str:
    """``<path>: [Errno 28] No space left on device (ENOSPC)``: one line naming the path and the errno."""
    if e.errno is None:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    where = "" if e.filename is None else f"{e.filename}: "
    if e.filename2 is not None:
        where = f"{e.filename} -> {e.filename2}: "
    name = errno.errorcode.get(e.errno, "")
    return f"{where}[Errno {e.errno}] {e.strerror or os.strerror(e.errno)}" + (f" ({name})" if name else "")


def flag_of(field: str) -> str:
    """The flag of a library field: ``num_trials`` -> ``--num-trials``."""
    return "--" + field.replace("_", "-")


class _NoteFormatter(logging.Formatter):
    """``freqstudy run: note: ...`` (INFO) or ``freqstudy run: warning: ...`` (WARNING and above)."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        kind = "note" if record.levelno < logging.WARNING else record.levelname.lower()
        return f"freqstudy {self.command}: {kind}: {record.getMessage()}"


@contextlib.contextmanager
def library_notes(command: str):
    """The ``study`` logger's notes and warnings on stderr for the command's duration."""
    logger = logging.getLogger("study")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_NoteFormatter(command))
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    # --json: one JSON document on stdout; everything else (Ray, libraries, subprocesses) on stderr.
    quiet = json_mode() if getattr(args, "json", False) else contextlib.nullcontext()

    def fail(line: str, status: int) -> int:
        if debug:
            traceback.print_exc(file=sys.stderr)
        print(f"freqstudy {args.command}: error: {line}", file=sys.stderr)
        return status

    try:
        with quiet, library_notes(args.command):
            return int(_module(args.command).run(args) or 0)
    except FieldError as e:  # the library names its keyword; the user typed a flag
        return fail(e.with_name(flag_of(e.field)), 2)
    except (ValueError, FileNotFoundError) as e:
        return fail(str(e), 2)
    except OSError as e:  # the machine's fault, not the command line's: a full disk, no permission
        return fail(os_error_line(e), 1)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc(file=sys.stderr)
        print(f"freqstudy {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
