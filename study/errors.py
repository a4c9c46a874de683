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
