"""Numbers as people read them, and rows as CSV: the one place that decides both.

Pure. Every table of the report, ``results.md`` and ``freqstudy pareto``'s text table
formats its numbers here: :func:`fmt` for a value, :func:`with_ci` for a value and its
interval, :func:`fmt_p` for a p-value; :func:`csv_bytes` writes every CSV file and
:func:`flat_intervals` splits ``*_ci`` pairs into CSV columns. Terminal text asks for
ASCII (``dash="-"``, ``minus="-"``); HTML and Markdown get the typographic dash and minus.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from study import metrics as M

MINUS = "\u2212"
DASH = "–"


def fmt(v: Any, digits: int = 2, dash: str = DASH) -> str:
    """A value: floats to ``digits`` decimals, ``∞`` for infinity, ``dash`` when missing."""
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return dash
    if isinstance(v, float):
        return "∞" if math.isinf(v) else f"{v:.{digits}f}"
    return str(v)


def _num(v: float, digits: int, signed: bool, minus: str) -> str:
    v = round(v, digits) or 0.0  # no "−0.00"
    return (f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}").replace("-", minus)


def with_ci(
    value: Any,
    ci: Sequence[Any] | None,
    digits: int = 2,
    signed: bool = False,
    *,
    dash: str = DASH,
    minus: str = MINUS,
) -> str:
    """``+1.23 [−0.40, +2.85]`` (``signed``: differences) or ``88.20 [87.10, 89.30]``; the point
    alone without a finite interval, ``dash`` without a point."""
    if not M.is_finite_number(value):
        return fmt(value, digits, dash)
    text = _num(float(value), digits, signed, minus)
    if ci is None or len(ci) != 2 or not all(M.is_finite_number(v) for v in ci):
        return text
    return (
        f"{text} [{_num(float(ci[0]), digits, signed, minus)}, {_num(float(ci[1]), digits, signed, minus)}]"
    )


def fmt_p(v: Any, dash: str = DASH) -> str:
    """A p-value at its resolution (:func:`study.analysis.multiplicity.format_p`: ``≤ 0.001``
    below that, never a floor printed as a value; 2 significant digits rounded down)."""
    if not M.is_finite_number(v):
        return dash
    from study.analysis.multiplicity import format_p

    return format_p(float(v))


def flat_intervals(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Row fields with each two-element ``*_ci`` list split into ``*_ci_low`` and ``*_ci_high``
    (None when absent), for the CSV files."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if k.endswith("_ci"):
            lo, hi = v if isinstance(v, (list, tuple)) and len(v) == 2 else (None, None)
            out[k + "_low"], out[k + "_high"] = lo, hi
        else:
            out[k] = v
    return out


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Rows as CSV (the union of their keys, in first-seen order, as the header; NaN blank)."""
    buf = io.StringIO()
    if rows:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    return buf.getvalue().encode()
