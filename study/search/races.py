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
book serves :meth:`suggest`: a seed a race is owed first, else a new configuration (at
most ``max_concurrent`` racing at once, ``num_configurations`` in all, and within the
study's ``budget`` of trainings), else nothing until a seed ends, else
:data:`FINISHED`. When a race's seeds have all ended (:meth:`end_seed`), the racer
(:func:`study.search.racing.decide`) looks at every configuration known so far and
gives each idle race one more seed or ends it; a race that ends is told to Optuna as
the mean of its seeds' objectives. With fixed replicates (``min_seeds == max_seeds``)
every race is its R seeds and ends as ``fixed``, as Ray's ``Repeater`` would.

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
from study.search.racing import BUDGET, MAX_SEEDS, SEED, STOP, Evidence, RacePolicy, decide
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
        pending: seeds decided and not yet started.
        failed: seeds whose trial failed for good.
        values: per seed with a result, the objectives as reported (percent).
        run_means, run_sumsq: per objective, per scored seed, the mean score and the sum
            of squared scores over images.
        image_sums: per objective, the per-image sums over scored seeds (None before one).
        worst: seeds that diverged (each counts at every objective's worst score).
        open: still racing; ``reason`` and ``other`` (the config id the reason names) say
            how it ended, ``told`` what Optuna was told (None: failed).
    """

    config_id: str
    config: dict[str, Any]
    seeds: dict[str, int] = field(default_factory=dict)
    running: list[str] = field(default_factory=list)
    pending: int = 0
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

    @property
    def idle(self) -> bool:
        return self.open and not self.running and not self.pending


@dataclass(frozen=True)
class Event:
    """A seed added to a race (``kind`` :data:`study.search.racing.SEED`) or a race ended
    (:data:`study.search.racing.STOP`), with why; ``other`` is the config id the reason names."""

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
        max_concurrent: configurations racing at once.
        budget: trainings the study may start in all (``max_seeds``), None for no cap.
        confidence, margin: the racer's (:class:`study.search.racing.RacePolicy`).
        races: in the order they opened (the baseline first).
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
    races: list[Race] = field(default_factory=list)
    exhausted: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    untagged: list[str] = field(default_factory=list)

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
        """Trainings started or owed."""
        return sum(r.started + r.pending for r in self.races)

    def _can_open(self) -> bool:
        return (
            not self.exhausted
            and len(self.races) < self.num_configurations
            and sum(r.open for r in self.races) < self.max_concurrent
            and (self.budget is None or self.spent() + self.min_seeds <= self.budget)
        )

    def is_finished(self) -> bool:
        return not any(r.open for r in self.races) and not self._can_open()

    # -- Tune's side ---------------------------------------------------------------------

    def suggest(self, trial_id: str, ask: Callable[[str], Any]) -> dict[str, Any] | str | None:
        """The config of trial ``trial_id``: a seed a race is owed, else a new configuration
        from ``ask(trial_id)`` (Optuna), else None (wait for a seed to end) or :data:`FINISHED`."""
        owed = next((r for r in self.races if r.open and r.pending), None)
        if owed is not None:
            return self._start(owed, trial_id)
        if self._can_open():
            config = ask(trial_id)
            if isinstance(config, dict):
                race = Race(config_id=trial_id, config=dict(config), pending=self.min_seeds)
                self.races.append(race)
                return self._start(race, trial_id)
            if config == FINISHED:
                self.exhausted = True
            else:
                return None
        return FINISHED if self.is_finished() else None

    def _start(self, race: Race, trial_id: str) -> dict[str, Any]:
        index = race.started
        race.seeds[trial_id] = index
        race.running.append(trial_id)
        race.pending -= 1
        return {**race.config, REPLICATE_KEY: index, CONFIG_ID_KEY: race.config_id}

    def end_seed(self, trial_id: str, result: Mapping[str, Any] | None, error: bool = False) -> list[Event]:
        """A seed's trial ended (``error``: failed for good); the decisions it leads to.

        A trial the book does not run, or one already ended, changes nothing: a resumed
        study may report a trial twice.
        """
        race = self.race_of(trial_id)
        if race is None or trial_id not in race.running:
            return []
        race.running.remove(trial_id)
        self._record(race, None if error else result)
        if race.running or race.pending:
            return []
        return self._decide()

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

    def _decide(self) -> list[Event]:
        idle = [r for r in self.races if r.idle]
        if not self.racing:
            return [self._stop(r, FIXED) for r in idle]
        events: list[Event] = []
        for r in idle:
            if r.evidence >= 2:
                continue
            if r.started >= self.max_seeds or (self.budget is not None and self.spent() >= self.budget):
                events.append(self._stop(r, MAX_SEEDS if r.started >= self.max_seeds else BUDGET))
            else:
                r.pending += 1
                events.append(self._event(SEED, r, f"a seed failed ({r.evidence} with results)"))
        idle = [r for r in idle if r.idle]
        known = [r for r in self.races if r.evidence >= 2]
        base = next((i for i, r in enumerate(known) if r.baseline), None)
        if not idle:
            return events
        if base is None:
            if any(r.baseline and r.open for r in self.races):
                return events  # every gain involves the baseline: wait for its seeds
            base = 0  # the baseline ended without results; gains are read against the first known
        left = None if self.budget is None else self.budget - self.spent()
        waiting = {r.config_id for r in idle}
        mask = np.array([r.config_id in waiting for r in known])
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
            if d.action == SEED and r.started < self.max_seeds:
                r.pending += 1
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
        seeds = race.started + race.pending
        self.events.append(
            {"config": race.config_id, "action": kind, "reason": reason, "other": other, "seeds": seeds}
        )
        return Event(kind, race, reason, other, seeds)

    def _stop(self, race: Race, reason: str, other: str | None = None) -> Event:
        race.open = False
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
        return {"format": FORMAT, **asdict(self)}

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
