"""How many seeds each configuration got, and why it got no more: its race's outcome as the
commands show it (the race itself is run by :mod:`study.search.races` and
:mod:`study.search.racing`; this module only reads what they leave on the runs).

A configuration of a racing study (``replicates: {min, max}``) starts with ``min`` seeds and
gets one more at a time until the racer stops it: ``dominated`` by a configuration on the
front, ``settled``, at ``max seeds``, or out of ``budget``. The searcher then tags every run
of the configuration with the reason (:data:`~study.metrics.TAG_RACE_REASON`), the seeds it
got (:data:`~study.metrics.TAG_RACE_SEEDS`) and the configuration the reason names, if any
(:data:`~study.metrics.TAG_RACE_OTHER`, a ``freqstudy.config_id``: the dominating one). A study
with a plain ``replicates: R`` is tagged (or, logged before racing existed, taken as) ``fixed``
with R seeds. A configuration of a racing study whose runs are not tagged yet is still
``open`` (its race is being decided, or its tags are still to be written). Pure: plain
records in, plain values out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from study import metrics as M

Trial = Mapping[str, Any]

FIXED = "fixed"  # replicates: R, or runs without race tags
OPEN = "open"  # a racing study's configuration whose race has not ended
# The racer's stop reasons (study.search.racing.STOP_REASONS; a test holds them equal).
REASONS = ("dominated", "settled", "max seeds", "budget")
RACE_TAGS = (M.TAG_RACE_REASON, M.TAG_RACE_SEEDS, M.TAG_RACE_OTHER)


@dataclass(frozen=True)
class Race:
    """A configuration's seeds and why its race ended.

    Attributes:
        seeds: seeds the configuration got (trainings started for it; a crashed seed counts).
        reason: one of :data:`REASONS`, :data:`FIXED` or :data:`OPEN`.
        other: the ``freqstudy.config_id`` the reason names (the dominating configuration), or None.
    """

    seeds: int
    reason: str
    other: str | None = None

    @property
    def raced(self) -> bool:
        return self.reason != FIXED


def race_tags(trial: Trial) -> tuple[str | None, ...]:
    """A run's race tags as logged (reason, seeds, other; None where absent)."""
    tags = trial.get("tags") or {}
    return tuple(None if tags.get(k) in (None, "") else str(tags[k]) for k in RACE_TAGS)


def _seeds(value: str | None) -> int | None:
    try:
        n = int(str(value))
    except ValueError:
        return None
    return n if n >= 1 else None


def race_problem(config_id: str, runs: Sequence[Trial], ended: Sequence[Trial]) -> str | None:
    """Why the race tags of one configuration's runs cannot be believed, in one line, or None.

    Args:
        config_id: the configuration's ``freqstudy.config_id``.
        runs: all its runs; ``ended``: those that ran to an end of their own (the tags are
            compared over these: a crashed attempt may predate the race's end).
    """
    first = None
    for t in ended:
        mine = race_tags(t)
        if first is None:
            first = (t, mine)
        elif mine != first[1]:
            diff = [
                f"{k} {first[1][i] or '(none)'} vs {mine[i] or '(none)'}"
                for i, k in enumerate(RACE_TAGS)
                if first[1][i] != mine[i]
            ]
            return (
                f"runs {first[0]['run_id']} and {t['run_id']} share {M.TAG_CONFIG_ID}={config_id} but "
                f"disagree on the race tags ({'; '.join(diff)}); left out"
            )
    if first is None or first[1][1] is None:
        return None
    seeds = _seeds(first[1][1])
    if seeds is None:
        return (
            f"{M.TAG_CONFIG_ID}={config_id}: {M.TAG_RACE_SEEDS}={first[1][1]!r} is not a whole "
            "number >= 1; left out"
        )
    started = len({t.get("tags", {}).get(M.TAG_REPLICATE, "0") for t in runs})
    if started > seeds:
        return (
            f"{M.TAG_CONFIG_ID}={config_id}: {M.TAG_RACE_SEEDS}={seeds} but {started} replicates were "
            "logged; left out"
        )
    return None


def race_of(record: Trial) -> Race:
    """The :class:`Race` of a configuration record (``study.selection.configurations``) or of a
    plain trial (its own tags; without them one ``fixed`` seed)."""
    if "race_reason" in record:
        return Race(int(record.get("seeds", 1)), str(record["race_reason"]), record.get("race_other"))
    reason, seeds, other = race_tags(record)
    return Race(_seeds(seeds) or 1, reason or FIXED, other)


def record_race(runs: Sequence[Trial], ended: Sequence[Trial], racing_study: bool) -> dict[str, Any]:
    """The race fields of a configuration record: ``seeds`` (the tag, else the replicate
    indices logged), ``race_reason`` (the tag; else ``open`` in a racing study, ``fixed``
    otherwise) and ``race_other``."""
    reason, seeds, other = race_tags(ended[0]) if ended else (None, None, None)
    started = len({t.get("tags", {}).get(M.TAG_REPLICATE, "0") for t in runs})
    if reason is None:
        reason = OPEN if racing_study else FIXED
    return {"seeds": _seeds(seeds) or started, "race_reason": reason, "race_other": other}


def is_racing_study(trials: Sequence[Trial]) -> bool:
    """Whether any run of the study says its configuration raced (a reason other than ``fixed``)."""
    return any(race_tags(t)[0] not in (None, FIXED) for t in trials)


def race_text(race: Race, label: Callable[[str], str] | None = None) -> str:
    """``dominated by 7f3a``, ``settled``, ``max seeds``, ``budget``, ``fixed``, ``open``.

    ``label`` turns the configuration id the reason names into what the table calls it."""
    if race.other is None:
        return race.reason
    name = label(race.other) if label is not None else race.other
    return f"dominated by {name}" if race.reason == "dominated" else f"{race.reason} ({name})"


def seeds_text(record: Trial) -> str:
    """``5``, or ``5 (1 crashed)`` when some seeds never ended: what a configuration got."""
    race = race_of(record)
    lost = int(record.get("replicates_failed", 0) or 0)
    return f"{race.seeds} ({lost} crashed)" if lost else str(race.seeds)


def shows_races(records: Sequence[Trial]) -> bool:
    """Whether a table gives each configuration its race's outcome: some configuration raced."""
    return any(race_of(r).raced for r in records)


def seeds_line(records: Sequence[Trial]) -> str | None:
    """One line on how the seeds of ``records`` were decided, or None for a study of one seed each
    (nothing to say): ``seeds: fixed, 3 per configuration`` or ``seeds: raced, 2 to 8 per
    configuration (dominated 5, settled 2, max seeds 1)``."""
    races = [race_of(r) for r in records]
    if not races or all(r.seeds == 1 and not r.raced for r in races):
        return None
    lo, hi = min(r.seeds for r in races), max(r.seeds for r in races)
    span = str(lo) if lo == hi else f"{lo} to {hi}"
    if not any(r.raced for r in races):
        return f"seeds: fixed, {span} per configuration"
    counts = {why: sum(r.reason == why for r in races) for why in (*REASONS, OPEN, FIXED)}
    why = ", ".join(f"{k} {n}" for k, n in counts.items() if n)
    return f"seeds: raced, {span} per configuration (race ended: {why})"


def other_labels(records: Sequence[Trial], label: Callable[[Any], str]) -> Callable[[str], str]:
    """config id -> the label of its record in ``records`` (``label`` of it), else the id itself."""
    by_id: dict[str, str] = {}
    for r in records:
        cid = (r.get("tags") or {}).get(M.TAG_CONFIG_ID)
        if cid is not None:
            by_id.setdefault(str(cid), label(r))
    return lambda cid: by_id.get(cid, cid)
