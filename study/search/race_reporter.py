"""Where a study's race events go in this driver: a console line for each seed added,
each race that waits without seeds and each race ended, and, once a race has ended,
its outcome as tags on every run of the configuration (``freqstudy.race.reason``,
``.seeds``, ``.other``; :mod:`study.metrics`).

No Ray: ``study.search.tune.RacingSearcher`` calls a :class:`RaceReporter` with the
events of :class:`study.search.races.RaceBook`. The reporter is this driver's (a resumed
study gets a fresh one); the races whose runs are not tagged yet stay in the book
(``untagged``), which Tune saves with the searcher, so a tracking server that is away
when a race ends, or a driver killed before it tags, only delays the tags.
"""

from __future__ import annotations

import logging

from study import metrics as M
from study.search.console import StudyConsole, seed_line, short_config, stop_line, wait_line
from study.search.races import Event, Race, RaceBook
from study.search.racing import SEED, WAIT

log = logging.getLogger(__name__)


def race_tags(race: Race) -> dict[str, str]:
    """The tags of an ended race's runs."""
    tags = {M.TAG_RACE_REASON: race.reason, M.TAG_RACE_SEEDS: str(race.started)}
    if race.other:
        tags[M.TAG_RACE_OTHER] = race.other
    return tags


class RaceReporter:
    """Console lines and run tags for race events (see the module docstring).

    Args:
        console: the study's console (None: no lines).
        study: the MLflow experiment of the study's runs.
        tracking_uri: where they are (None: no tracking; nothing is tagged).
    """

    def __init__(self, console: StudyConsole | None, *, study: str, tracking_uri: str | None) -> None:
        self.console = console
        self.study = study
        self.tracking_uri = tracking_uri
        self._warned = False
        self.book: RaceBook | None = None  # the book of the last events (flushed at the study's end)

    def __call__(self, events: list[Event], book: RaceBook) -> None:
        self.book = book
        for e in events:
            if self.console is not None:
                self.console.note(self.line(e, book))
        self.flush(book)

    def line(self, event: Event, book: RaceBook) -> str:
        race = event.race
        other = book.race(event.other)
        named = None if other is None else f"{other.config_id} {short_config(other.config)}"
        if event.kind == SEED:
            return seed_line(race.config_id, short_config(race.config), event.seeds, event.reason, named)
        if event.kind == WAIT:
            return wait_line(race.config_id, short_config(race.config), event.seeds, named)
        return stop_line(
            race.config_id,
            short_config(race.config),
            race.started,
            event.reason,
            named,
            book.told(race),
            book.metrics,
        )

    def flush(self, book: RaceBook | None = None) -> None:
        """Tag the runs of every ended race not tagged yet (of ``book``, else the last one
        seen); a server that does not answer leaves them for the next event (one warning)."""
        book = book or self.book
        if book is None:
            return
        if self.tracking_uri is None:
            book.untagged.clear()
            return
        from study.tracking.server import logging_to
        from study.tracking.study_runs import tag_configuration

        while book.untagged:
            race = book.race(book.untagged[0])
            if race is not None:
                try:
                    with logging_to(self.tracking_uri, f"tagging the runs of configuration {race.config_id}"):
                        tag_configuration(self.tracking_uri, self.study, race.config_id, race_tags(race))
                except Exception as e:  # a study never stops for a tag; the book keeps it for later
                    if not self._warned:
                        log.warning("race tags not written yet (%s); retried at the next race event", e)
                        self._warned = True
                    return
            book.untagged.pop(0)
