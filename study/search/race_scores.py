"""What one run tells the racer: its per-image VALIDATION scores on each objective.

Pure (numpy; no Ray, no MLflow). A racing study's trial adds :data:`RACE_SCORES` to its
final result: for each objective ``val/<statistic>``, the run's per-image score (the
statistic's reduction of the per-image outcomes, :mod:`study.analysis.statistics`: 0/1 for
``clean_acc``, the share of an image's corrupted versions got right for ``corruption_acc``),
from which the searcher keeps each configuration's running sums (run means, sums of
squares, per-image sums: :class:`study.search.racing.Evidence`). Only the ``val`` split
is read: a race never looks at the test set.

The scores travel as one JSON string, small enough for every Tune result file: a score
that is a count over ``den`` keys (every accuracy statistic) is sent as the counts
(uint8 or uint16) and ``den``, exactly; any other score as float64. Decoding rebuilds
the same float64 array bit for bit.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence

import numpy as np

from study.metrics import ALL_CORRUPTIONS, CATEGORIES, SEVERITIES

RACE_SCORES = "race_scores"  # the final-result key
SPLIT = "val"
MAX_IMAGES = 1 << 20  # a validation split is at most all of CIFAR-10's training images


def racing_problem(metric: str) -> str | None:
    """Why ``metric`` cannot be raced on (it has no per-image validation score), or None."""
    if not metric.startswith(f"{SPLIT}/"):
        return f"{metric!r}: racing reads validation scores, so an objective must be a {SPLIT}/ metric"
    name = metric[len(SPLIT) + 1 :]
    parts = name.split("/")
    ok = (
        name in ("clean_acc", "corruption_acc", "extra_acc")
        or (len(parts) == 2 and parts[0] == "category" and parts[1] in CATEGORIES)
        or (len(parts) == 2 and parts[0] == "corruption" and parts[1] in ALL_CORRUPTIONS)
        or (
            len(parts) == 3
            and parts[0] == "corruption"
            and parts[1] in ALL_CORRUPTIONS
            and parts[2] in {str(s) for s in SEVERITIES}
        )
    )
    if ok:
        return None
    return (
        f"{metric!r} has no per-image score to race on; allowed: {SPLIT}/clean_acc, "
        f"{SPLIT}/corruption_acc, {SPLIT}/extra_acc, {SPLIT}/category/<category>, "
        f"{SPLIT}/corruption/<name>[/<severity>]"
    )


def scores_from_outcomes(outcomes, metrics: Sequence[str]) -> str | None:
    """The :data:`RACE_SCORES` value of a trial's :class:`study.analysis.outcomes.Outcomes`,
    or None when the validation split lacks a statistic an objective needs."""
    from study.analysis.statistics import statistics_of

    if outcomes is None or SPLIT not in outcomes.fingerprints:
        return None
    stats = {s.name: s for s in statistics_of(outcomes.keys(SPLIT), SPLIT, per_severity=True, relative=False)}
    scores, dens = {}, {}
    for metric in metrics:
        stat = stats.get(metric[len(SPLIT) + 1 :])
        if stat is None:
            return None
        scores[metric] = stat.scores(outcomes)
        dens[metric] = len(stat.keys)  # an accuracy score is a count over the statistic's keys
    return encode_scores(scores, dens)


def _counts(y: np.ndarray, den: int | None) -> tuple[np.ndarray, int] | None:
    """``(counts, den)`` with ``counts / den == y`` exactly; None when ``y`` is not such a share."""
    if den is None or not 1 <= den <= 65535:
        return None
    c = np.rint(y * den)
    if not np.array_equal(c / den, y) or c.min(initial=0) < 0 or c.max(initial=0) > 65535:
        return None
    return c.astype(np.uint8 if c.max(initial=0) <= 255 else np.uint16), den


def encode_scores(scores: Mapping[str, np.ndarray], dens: Mapping[str, int] | None = None) -> str:
    """The :data:`RACE_SCORES` value: ``{metric: (n,) scores}`` as one JSON string; a metric
    whose ``dens`` entry makes its scores exact counts over ``den`` is sent as the counts."""
    out = {}
    for metric, y in scores.items():
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1 or not y.size or not np.all(np.isfinite(y)):
            raise ValueError(f"race scores: {metric} must be a non-empty 1-D finite array, got {y.shape}")
        exact = _counts(y, (dens or {}).get(metric))
        if exact is not None:
            c, den = exact
            out[metric] = {"den": den, c.dtype.name: base64.b64encode(c.tobytes()).decode("ascii")}
        else:
            out[metric] = {"float64": base64.b64encode(y.astype("<f8").tobytes()).decode("ascii")}
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


def decode_scores(text: str, metrics: Sequence[str]) -> list[np.ndarray]:
    """The per-image scores of ``metrics``, in that order, from :func:`encode_scores`.

    Raises:
        ValueError: one line naming what is missing or malformed.
    """
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"race scores: not JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError("race scores: expected {metric: scores}")
    out = []
    for metric in metrics:
        entry = value.get(metric)
        if not isinstance(entry, dict):
            raise ValueError(f"race scores: {metric} missing")
        kind = next((k for k in ("uint8", "uint16", "float64") if k in entry), None)
        if kind is None or not isinstance(entry[kind], str):
            raise ValueError(f"race scores: {metric} holds no uint8, uint16 or float64 scores")
        raw = base64.b64decode(entry[kind], validate=True)
        dtype = {"uint8": "<u1", "uint16": "<u2", "float64": "<f8"}[kind]
        if len(raw) % np.dtype(dtype).itemsize or len(raw) // np.dtype(dtype).itemsize > MAX_IMAGES:
            raise ValueError(f"race scores: {metric} has {len(raw)} bytes, not a score array")
        arr = np.frombuffer(raw, dtype=dtype)
        if kind == "float64":
            y = arr.astype(np.float64)
        else:
            den = entry.get("den")
            if not isinstance(den, int) or isinstance(den, bool) or den < 1:
                raise ValueError(f"race scores: {metric} has no positive integer den")
            y = arr.astype(np.float64) / den
        if not y.size or not np.all(np.isfinite(y)):
            raise ValueError(f"race scores: {metric} is empty or not finite")
        out.append(y)
    return out
