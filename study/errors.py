"""The error a library function raises for a value it refuses, named by its field.

``FieldError(field, detail)`` reads ``<field><detail>`` (``num_trials 0: must be > 0``;
``resume: no study 'x' at ...``): ``field`` is the keyword argument or config key a
caller passed, never a command-line flag. The ``freqstudy`` command maps the field to
its flag (``num_trials`` -> ``--num-trials``) when it prints the one-line error, so a
notebook sees the names it used and a shell user the flags they typed. It is a
``ValueError``: code that catches those keeps working.
"""

from __future__ import annotations


class FieldError(ValueError):
    """A refused value of the option ``field``.

    Attributes:
        field: the library's name of the option (``study``, ``num_trials``, ``max_clean_drop``).
        detail: the rest of the line, from the character after the field's name
            (`` 0: must be > 0`` or ``: no study 'x' at ...``).
    """

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        self.detail = detail
        super().__init__(f"{field}{detail}")

    def with_name(self, name: str) -> str:
        """The line with ``name`` (a flag) in place of the field."""
        return f"{name}{self.detail}"


class Stopped(BaseException):
    """The process was asked to stop (SIGTERM: ``ray job stop``, a scheduler, ``kill``).

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` on the
    way (Ray's, a library's) swallows it; the command prints its one line and exits 143.
    """

    def __init__(self, signum: int, study: str | None = None) -> None:
        self.signum = signum
        self.study = study
        super().__init__(f"stopped by signal {signum}")
