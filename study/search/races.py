"""The races of a study: which configuration gets which seed, and when it is told to Optuna.

Pure (numpy; no Ray, no MLflow, no Optuna) and serialisable: :meth:`RaceBook.to_dict` is
plain JSON data, and the Ray searcher (``study.search.tune.RacingSearcher``) saves it with
the searcher state Tune checkpoints, so ``--resume`` continues every race where the
checkpoint left it (no race duplicated, lost or restarted). Tune writes the book and its
trials in one checkpoint, at most every few seconds; a seed started after the last one is
started again by the resumed study, and finds its finished run by configuration and seed
index if it had finished (``study.tracking.runs.finished_run_of``), so it is not trained twice.

A *race* is one configuration Optuna suggested: its seeds (Tune trials, seed index 0, 1,
...), what its ended seeds showed (the running sums of
:meth:`study.search.racing.Evidence.from_sums`, per objective) and how it ended. The
study runs in rounds, as the in-process harness does (:func:`study.search.harness.run_study`,
so that a study through Ray makes the harness's decisions): a round is
``max_concurrent`` slots, each a new configuration's ``min_seeds`` seeds or a waiting
race's next seed (new configurations first while any are left, ``breadth``; then the
waiting race with the fewest seeds), within ``num_configurations`` and the study's
``budget`` of trainings; :meth:`suggest` hands out the round's seeds, then waits. When
every seed of the round has ended (:meth:`end_seed`), the racer
(:func:`study.search.racing.decide`) looks at every configuration known so far and
decides every open race: one more seed (it waits for a slot, and is decided again
each round), a wait without seeds (confidently dominated only by races still open: it
ends when one of them has ended, or races again if no longer dominated), or the end of
its race (a race settled while configurations are left to start stays open: a newcomer
may reopen it); a race that ends is told to Optuna as the mean of its seeds' objectives.
With fixed replicates (``min_seeds == max_seeds``) every race is its R seeds and ends as
``fixed``, as Ray's ``Repeater`` would. A round waits for its slowest seed: the price of
decisions that do not depend on timing.

Seeds whose trial failed for good (its retries spent) count as trainings but carry no
evidence; a race left with fewer than two seeds of evidence gets a replacement seed
while ``max_seeds`` allows. A diverged seed counts at each objective's ``worst`` value
(a constant per-image score), as it is told to Optuna.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from study.search.race_scores import RACE_SCORES, decode_scores
from study.search.racing import (
    BUDGET,
    DOMINATED,
    MAX_SEEDS,
    SEED,
    SETTLED,
    STOP,
    WAIT,
    Evidence,
    RacePolicy,
    decide,
)
from study.search.spaces import BASELINE_FLAG
from study.search.trials import CONFIG_ID_KEY, REPLICATE_KEY

FINISHED = "FINISHED"  # = ray.tune.search.Searcher.FINISHED (tune.py holds them equal)
FIXED = "fixed"  # the reason a race of fixed replicates ends
FORMAT = 1


@dataclass
class Race:
    """One configuration's race (plain data; see the module docstring).

    Attributes:
        config_id: the Tune trial id of its first seed (the runs' ``freqstudy.config_id``).
        config: what Optuna suggested (every seed runs it, at seed base + index).
        seeds: trial id -> seed index, for every seed started.
        running: trial ids of seeds started and not ended.
        pending: seeds of the current round not yet started.
        waiting: granted a seed the next rounds have not started (decided again each round).
        failed: seeds whose trial failed for good.
        values: per seed with a result, the objectives as reported (percent).
        run_means, run_sumsq: per objective, per scored seed, the mean score and the sum
            of squared scores over images.
        image_sums: per objective, the per-image sums over scored seeds (None before one).
        worst: seeds that diverged (each counts at every objective's worst score).
        open: still racing; ``reason`` and ``other`` (the config id the reason names) say
            how it ended, ``told`` what Optuna was told (None: failed).
        paused_by: while the race waits without seeds, confidently dominated only by
            races still open, the config id of one of them (None: not waiting so).
    """

    config_id: str
    config: dict[str, Any]
    seeds: dict[str, int] = field(default_factory=dict)
    running: list[str] = field(default_factory=list)
    pending: int = 0
    waiting: bool = False
    failed: int = 0
    values: list[list[float]] = field(default_factory=list)
    run_means: list[list[float]] = field(default_factory=list)
    run_sumsq: list[list[float]] = field(default_factory=list)
    image_sums: list[list[float] | None] = field(default_factory=list)
    worst: int = 0
    open: bool = True
    reason: str = ""
    other: str | None = None
    told: list[float] | None = None
    paused_by: str | None = None

    @property
    def baseline(self) -> bool:
        return bool(self.config.get(BASELINE_FLAG))

    @property
    def started(self) -> int:
        return len(self.seeds)

    @property
    def evidence(self) -> int:
        """Seeds whose scores the racer reads (scored and diverged)."""
        return len(self.values)


@dataclass(frozen=True)
class Event:
    """A seed added to a race (``kind`` :data:`study.search.racing.SEED`), a race ended
    (:data:`study.search.racing.STOP`) or waiting without seeds, dominated by a race still
    open (:data:`study.search.racing.WAIT`), with why; ``other`` is the config id the reason
    names."""

    kind: str
    race: Race
    reason: str
    other: str | None = None
    seeds: int = 0  # the race's seeds with this one (started and owed)


@dataclass
class RaceBook:
    """Every race of a study (see the module docstring).

    Attributes:
        metrics, directions, worst: the objectives: metric keys, +1 / -1, diverged values.
        min_seeds, max_seeds: m and M (equal: fixed replicates, no racing).
        num_configurations: configurations the study runs (``num_trials``).
        max_concurrent: slots of a round (a new configuration's seeds, or a race's next).
        budget: trainings the study may start in all (``max_seeds``), None for no cap.
        confidence, margin: the racer's (:class:`study.search.racing.RacePolicy`).
        breadth: new configurations take a round's slots before waiting races' seeds.
        races: in the order they opened (the baseline first).
        new_slots: new configurations the current round still has to ask Optuna for.
        exhausted: the sampler has no configuration left to suggest.
        events: every decision, ``{config, action, reason, other, seeds}``, in order.
        untagged: config ids whose race ended and whose runs are not yet tagged.
    """

    metrics: list[str]
    directions: list[int]
    worst: list[float]
    min_seeds: int
    max_seeds: int
    num_configurations: int
    max_concurrent: int
    budget: int | None = None
    confidence: float = 0.95
    margin: float = 0.0
    breadth: bool = True
    races: list[Race] = field(default_factory=list)
    new_slots: int = 0
    exhausted: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    untagged: list[str] = field(default_factory=list)
    pending_events: list[Any] = field(default_factory=list, repr=False, compare=False)

    @property
    def racing(self) -> bool:
        return self.min_seeds < self.max_seeds

    @property
    def policy(self) -> RacePolicy:
        return RacePolicy(self.min_seeds, self.max_seeds, self.confidence, self.margin)

    def race(self, config_id: str | None) -> Race | None:
        return next((r for r in self.races if r.config_id == config_id), None)

    def race_of(self, trial_id: str) -> Race | None:
        return next((r for r in self.races if trial_id in r.seeds), None)

    def spent(self) -> int:
        """Trainings started or planned in this round (seeds granted to waiting races are not:
        the racer decides them again)."""
        return sum(r.started + r.pending for r in self.races) + self.new_slots * self.min_seeds

    def _can_start(self, planned_new: int = 0) -> bool:
        """Whether a new configuration may start (``planned_new`` already planned this round)."""
        waiting = sum(r.waiting for r in self.races)
        return (
            not self.exhausted
            and len(self.races) + planned_new < self.num_configurations
            and (self.budget is None or self.spent() + waiting + self.min_seeds <= self.budget)
        )

    def is_finished(self) -> bool:
        return not any(r.open for r in self.races) and not self.new_slots and not self._can_start()

    # -- Tune's side ---------------------------------------------------------------------

    def suggest(self, trial_id: str, ask: Callable[[str], Any]) -> dict[str, Any] | str | None:
        """The config of trial ``trial_id``: the next seed of this round (a new configuration's
        from ``ask(trial_id)``, Optuna, or an open race's next one), else None (the round is
        running) or :data:`FINISHED`."""
        if not any(r.running or r.pending for r in self.races) and not self.new_slots:
            self._plan_round()
        owed = next((r for r in self.races if r.open and r.pending), None)
        if owed is not None:
            return self._start(owed, trial_id)
        if self.new_slots:
            config = ask(trial_id)
            if isinstance(config, dict):
                self.new_slots -= 1
                race = Race(config_id=trial_id, config=dict(config), pending=self.min_seeds)
                self.races.append(race)
                return self._start(race, trial_id)
            if config != FINISHED:
                return None
            self.exhausted, self.new_slots = True, 0
            if not any(r.running or r.pending for r in self.races):
                self.pending_events += self._end_round()  # no newcomer: settled races may end
                return self.suggest(trial_id, ask)
        return FINISHED if self.is_finished() else None

    def _plan_round(self) -> None:
        """The next round's slots, as the harness fills them (:func:`study.search.harness.run_study`):
        ``max_concurrent`` of them, each a new configuration's ``min_seeds`` seeds or a waiting
        race's next seed; new configurations first while any are left (``breadth``), else the
        waiting race with the fewest seeds (the earliest opened among equals)."""
        planned = 0
        while planned < self.max_concurrent:
            waiting = [r for r in self.races if r.waiting]
            if self._can_start(self.new_slots) and (self.breadth or not waiting):
                self.new_slots += 1
            elif waiting:
                r = min(waiting, key=lambda r: r.started)
                r.waiting, r.pending = False, 1
            else:
                break
            planned += 1
        if not planned:
            # Nothing left to run: a race still open here has nowhere to go.
            for r in self.races:
                if r.open and r.paused_by is not None:
                    # Its dominators have all ended (nothing runs): dominated for good.
                    self.pending_events.append(self._stop(r, DOMINATED, r.paused_by))
                elif r.open:
                    cap = self.budget is not None and self.spent() >= self.budget
                    self.pending_events.append(self._stop(r, BUDGET if cap else MAX_SEEDS))

    def _start(self, race: Race, trial_id: str) -> dict[str, Any]:
        index = race.started
        race.seeds[trial_id] = index
        race.running.append(trial_id)
        race.pending -= 1
        return {**race.config, REPLICATE_KEY: index, CONFIG_ID_KEY: race.config_id}

    def end_seed(self, trial_id: str, result: Mapping[str, Any] | None, error: bool = False) -> list[Event]:
        """A seed's trial ended (``error``: failed for good); the decisions it leads to (at the
        end of a round, every open race is decided).

        A trial the book does not run, or one already ended, changes nothing: a resumed
        study may report a trial twice.
        """
        race = self.race_of(trial_id)
        if race is None or trial_id not in race.running:
            return []
        race.running.remove(trial_id)
        self._record(race, None if error else result)
        if any(r.running or r.pending for r in self.races) or self.new_slots:
            return []
        return self._end_round()

    def take_events(self) -> list[Event]:
        """Events made outside :meth:`end_seed` (races closed when nothing was left to plan)."""
        out, self.pending_events = self.pending_events, []
        return out

    def _record(self, race: Race, result: Mapping[str, Any] | None) -> None:
        if not result or any(m not in result for m in self.metrics):
            race.failed += 1
            return
        diverged = str(result.get("trial_status", "finished")) != "finished"
        values = self.worst if diverged else [float(result[m]) for m in self.metrics]
        if diverged:
            race.worst += 1
        elif self.racing:
            try:
                scores = decode_scores(str(result.get(RACE_SCORES)), self.metrics)
            except ValueError:
                race.failed += 1  # a finished seed without its validation scores is no evidence
                return
            if not race.image_sums:
                race.run_means = [[] for _ in self.metrics]
                race.run_sumsq = [[] for _ in self.metrics]
                race.image_sums = [None for _ in self.metrics]
            for j, y in enumerate(scores):
                race.run_means[j].append(float(y.mean()))
                race.run_sumsq[j].append(float((y**2).sum()))
                have = race.image_sums[j]
                race.image_sums[j] = (y if have is None else np.asarray(have) + y).tolist()
        race.values.append([float(v) for v in values])

    # -- the racer -----------------------------------------------------------------------

    def _end_round(self) -> list[Event]:
        """Every open race decided, as the harness does after each round."""
        open_ = [r for r in self.races if r.open]
        if not self.racing:
            return [self._stop(r, FIXED) for r in open_]
        events: list[Event] = []
        for r in open_:
            if r.evidence >= 2 or r.waiting:
                continue
            if r.started >= self.max_seeds:
                events.append(self._stop(r, MAX_SEEDS))
            else:
                r.waiting = True
                events.append(self._event(SEED, r, f"a seed failed ({r.evidence} with results)"))
        known = [r for r in self.races if r.evidence >= 2]
        base = next((i for i, r in enumerate(known) if r.baseline), None)
        deciding = {r.config_id for r in open_ if r.open and r.evidence >= 2}
        if not deciding:
            return events
        if base is None:
            if any(r.baseline and r.open for r in self.races):
                return events  # every gain involves the baseline: wait for its seeds
            base = 0  # the baseline ended without results; gains are read against the first known
        left = None if self.budget is None else self.budget - self.spent()
        more = self.breadth and self._can_start()
        mask = np.array([r.config_id in deciding for r in known])
        for d in decide(
            self.evidence_of(known),
            mask,
            baseline=base,
            directions=self.directions,
            policy=self.policy,
            budget_left=left,
        ):
            r = known[d.index]
            other = known[d.other].config_id if d.other >= 0 else None
            if d.action == WAIT:
                r.waiting = False
                if r.paused_by is None:
                    events.append(self._event(WAIT, r, d.reason, other))
                r.paused_by = other
                continue
            r.paused_by = None
            if d.action == STOP and d.reason == SETTLED and more:
                r.waiting = False  # settled among those sampled so far: open, without a seed
            elif d.action == SEED and r.started < self.max_seeds:
                if not r.waiting:
                    r.waiting = True
                    events.append(self._event(SEED, r, d.reason, other))
            else:
                events.append(self._stop(r, d.reason if d.action == STOP else MAX_SEEDS, other))
        return events

    def evidence_of(self, races: Sequence[Race]) -> Evidence:
        """The racer's :class:`study.search.racing.Evidence` of ``races`` (each >= 2 seeds)."""
        width = max(r.evidence for r in races)
        rm, sq, im = [], [], []
        for j, w in enumerate(self.worst):
            score = w / 100.0  # a diverged seed's per-image score: its worst value as a share
            sums = [r.image_sums[j] for r in races if r.image_sums]
            n = next((len(s) for s in sums if s is not None), 1)
            a, b, c = np.zeros((len(races), width)), np.zeros((len(races), width)), np.zeros((len(races), n))
            for k, r in enumerate(races):
                scored = len(r.run_means[j]) if r.run_means else 0
                if scored:
                    a[k, :scored] = r.run_means[j]
                    b[k, :scored] = r.run_sumsq[j]
                    c[k] = r.image_sums[j]
                a[k, scored : scored + r.worst] = score
                b[k, scored : scored + r.worst] = n * score**2
                c[k] += r.worst * score
            rm.append(a)
            sq.append(b)
            im.append(c)
        return Evidence.from_sums(np.array([r.evidence for r in races]), rm, sq, im)

    def _event(self, kind: str, race: Race, reason: str, other: str | None = None) -> Event:
        seeds = race.started + (1 if kind == SEED else 0)
        self.events.append(
            {"config": race.config_id, "action": kind, "reason": reason, "other": other, "seeds": seeds}
        )
        return Event(kind, race, reason, other, seeds)

    def _stop(self, race: Race, reason: str, other: str | None = None) -> Event:
        race.open, race.waiting, race.paused_by = False, False, None
        race.reason, race.other = reason, other
        ok = np.array(race.values, dtype=np.float64).reshape(-1, len(self.metrics))
        race.told = None if not len(ok) else [float(v) for v in ok.mean(axis=0)]
        self.untagged.append(race.config_id)
        return self._event(STOP, race, reason, other)

    def told(self, race: Race) -> dict[str, float] | None:
        """What Optuna is told of an ended race: each objective's mean over its seeds."""
        if race.told is None:
            return None
        return {
            **dict(zip(self.metrics, race.told)),
            "replicates": race.evidence,
            "replicates_failed": race.failed,
        }

    # -- saved with the searcher ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists, numbers, strings): what Tune's searcher checkpoint keeps."""
        data = asdict(self)
        data.pop("pending_events")  # handed out at once; never part of a checkpoint
        return {"format": FORMAT, **data}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> RaceBook:
        """The book :meth:`to_dict` saved.

        Raises:
            ValueError: one line, when ``value`` is not a book this freqstudy saved.
        """
        if not isinstance(value, Mapping) or value.get("format") != FORMAT:
            raise ValueError(f"race book: not a format-{FORMAT} race book")
        data = {k: v for k, v in value.items() if k != "format"}
        try:
            races = [Race(**r) for r in data.pop("races")]
            return cls(**data, races=races)
        except (TypeError, KeyError) as e:
            raise ValueError(f"race book: {e}") from None


def race_book(space, *, num_trials: int, max_concurrent: int) -> RaceBook:
    """The empty book of a study of ``space`` (a :class:`study.search.spaces.SearchSpace`)."""
    return RaceBook(
        metrics=list(space.metrics),
        directions=[int(o.sign) for o in space.objectives],
        worst=[float(o.worst) for o in space.objectives],
        min_seeds=space.min_seeds,
        max_seeds=space.replicates,
        num_configurations=num_trials,
        max_concurrent=max_concurrent,
        budget=space.max_seeds,
    )
