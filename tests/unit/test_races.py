"""The race book (study.search.races): driven seed by seed as the Ray searcher drives it,
against a real Optuna study (ask/tell), it makes the in-process harness's decisions on
the same simulated runs, whatever order seeds end in and however often it is saved and
restored; fixed replicates, failed and diverged seeds, the budget and the baseline's wait
behave as documented; its saved form is plain JSON."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from study.search import harness as H
from study.search.race_scores import RACE_SCORES, decode_scores, encode_scores, racing_problem
from study.search.races import FINISHED, RaceBook
from study.search.racing import BUDGET, MAX_SEEDS, SEED, STOP, WAIT, RacePolicy
from study.search.samplers import StudyGridSampler
from study.search.spaces import BASELINE_FLAG
from study.search.trials import CONFIG_ID_KEY, REPLICATE_KEY
from tests.support import SimulatedTrial, simulated_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
METRICS = [f"val/{o}" for o in H.OBJECTIVES]


def _book(min_seeds, max_seeds, k, *, max_concurrent=1, budget=None) -> RaceBook:
    return RaceBook(
        metrics=list(METRICS),
        directions=[1, 1],
        worst=[0.0, 0.0],
        min_seeds=min_seeds,
        max_seeds=max_seeds,
        num_configurations=k,
        max_concurrent=max_concurrent,
        budget=budget,
    )


class Driver:
    """Tune's part, without Ray: trial ids, a real Optuna study asked for each new
    configuration and told when its race ends, seeds ending in a given order."""

    def __init__(self, book, k, *, sampler_seed, result, rng=None, restore_every=0):
        self.book, self.result, self.rng = book, result, rng
        self.study = optuna.create_study(
            directions=["maximize"] * 2,
            sampler=StudyGridSampler({"config": list(range(1, k))}, seed=sampler_seed),
        )
        self.study.enqueue_trial({})
        self.k = k
        self.trials: dict[str, optuna.trial.Trial] = {}
        self.index: dict[str, int] = {}  # config id -> simulated configuration
        self.running: list[tuple[str, dict]] = []
        self.restore_every = restore_every
        self.told: dict[int, list[float]] = {}
        self.steps = 0

    def ask(self, trial_id):
        trial = self.study.ask()
        self.trials[trial_id] = trial
        cfg = 0 if trial.number == 0 else int(trial.suggest_categorical("config", list(range(1, self.k))))
        self.index[trial_id] = cfg
        return {BASELINE_FLAG: trial.number == 0, "cfg": cfg}

    def run(self):
        n = 0
        while True:
            n += 1
            got = self.book.suggest(f"t{n}", self.ask)
            self.tell(self.book.take_events())
            if isinstance(got, dict):
                self.running.append((f"t{n}", got))
                continue
            if got == FINISHED:
                assert not self.running
                return self
            assert self.running, "the book waits with nothing running"
            pick = 0 if self.rng is None else int(self.rng.integers(len(self.running)))
            tid, config = self.running.pop(pick)
            self.tell(self.book.end_seed(tid, self.result(config["cfg"], config[REPLICATE_KEY])))
            self.steps += 1
            if self.restore_every and self.steps % self.restore_every == 0:
                self.book = RaceBook.from_dict(json.loads(json.dumps(self.book.to_dict())))

    def tell(self, events):
        for e in events:
            if e.kind == STOP:
                told = self.book.told(e.race)
                if told is None:
                    self.study.tell(self.trials[e.race.config_id], state=optuna.trial.TrialState.FAIL)
                    continue
                values = [told[m] for m in METRICS]
                self.study.tell(self.trials[e.race.config_id], values)
                self.told[self.index[e.race.config_id]] = values

    def decisions(self):
        return [(self.index[e["config"]], e["action"], e["reason"]) for e in self.book.events]


@pytest.mark.parametrize("seed, concurrent", [(0, 1), (1, 1), (2, 3)])
def test_book_makes_the_harness_decisions_seed_by_seed(seed, concurrent):
    k, policy = 10, RacePolicy(2, 6)
    problem, runs, ys = simulated_study(seed, configurations=k, seeds=policy.max_seeds)
    want = H.run_study(runs, policy, sampler_seed=seed, max_concurrent=concurrent)
    trial = SimulatedTrial(ys, [])
    rng = np.random.default_rng(seed)  # seeds end in a random order; restored every 3 ends
    book = _book(2, 6, k, max_concurrent=concurrent)
    got = Driver(book, k, sampler_seed=seed, result=trial.result, rng=rng, restore_every=3).run()
    assert got.decisions() == list(want.events)
    seeds = {got.index[r.config_id]: r.started for r in got.book.races}
    assert [seeds[c] for c in range(k)] == want.seeds.tolist()
    assert len(set(seeds.values())) > 1, "the race should give configurations different seeds"
    for c, values in got.told.items():  # Optuna holds each configuration's mean objectives
        np.testing.assert_allclose(values, want.values[c], rtol=0, atol=1e-9)
        np.testing.assert_allclose(values, [100 * ys[j][c, : seeds[c]].mean() for j in range(2)], atol=1e-9)


def test_a_race_waiting_as_dominated_resumes_in_the_book_as_in_the_harness():
    """Races that wait without seeds (dominated by races still open) and race again keep
    that state across a save and restore (every 2 ends), and are told to Optuna once, at
    their end (a second tell of a finished Optuna trial would raise)."""
    k, policy = 10, RacePolicy(2, 6)
    problem, runs, ys = simulated_study(1, configurations=k, seeds=policy.max_seeds)
    want = H.run_study(runs, policy, sampler_seed=1, max_concurrent=1)
    trial = SimulatedTrial(ys, [])
    book = _book(2, 6, k, max_concurrent=1)
    got = Driver(book, k, sampler_seed=1, result=trial.result, rng=None, restore_every=2).run()
    events = got.decisions()
    assert events == list(want.events)
    waits = [pos for pos, (_, action, _) in enumerate(events) if action == WAIT]
    resumed = [
        pos
        for pos, (cfg, action, _) in enumerate(events)
        if action == SEED and any(c == cfg and a == WAIT for c, a, _ in events[:pos])
    ]
    assert waits and resumed, "this study has races that wait and resume"
    assert sorted(c for c, action, _ in events if action == STOP) == list(range(k))
    assert all(not r.open and r.paused_by is None for r in got.book.races)


def test_fixed_replicates_end_as_fixed_and_leave_failed_seeds_out():
    book = _book(3, 3, 3, max_concurrent=2)

    def result(cfg, seed):
        if cfg == 1 and seed == 0:
            return None  # failed for good: no result
        if cfg == 2:
            return None
        return {METRICS[0]: 10.0 * (cfg + 1) + seed, METRICS[1]: 5.0, "trial_status": "finished"}

    d = Driver(book, 3, sampler_seed=0, result=result).run()
    assert [e["action"] for e in book.events] == [STOP] * 3
    assert {e["reason"] for e in book.events} == {"fixed"}
    by = {d.index[r.config_id]: r for r in book.races}
    assert all(r.started == 3 for r in by.values())
    assert by[0].told == [11.0, 5.0]  # the mean of seeds 0, 1, 2
    assert by[1].told == [21.5, 5.0] and by[1].failed == 1  # seed 0 failed: left out
    assert by[2].told is None and book.told(by[2]) is None  # every seed failed: told as failed
    states = {t.number: t.state.name for t in d.study.trials}
    assert sorted(states.values()) == ["COMPLETE", "COMPLETE", "FAIL"]


def test_a_failed_seed_is_replaced_and_a_diverged_seed_counts_at_worst():
    _, _, ys = simulated_study(3, configurations=4, seeds=8)
    trial = SimulatedTrial(ys, [])

    def result(cfg, seed):
        if cfg == 1 and seed == 0:
            return None
        if cfg == 2 and seed == 1:
            return {METRICS[0]: 0.0, METRICS[1]: 0.0, "trial_status": "diverged"}
        return trial.result(cfg, seed)

    d = Driver(_book(2, 8, 4), 4, sampler_seed=0, result=result).run()
    by = {d.index[r.config_id]: r for r in d.book.races}
    replaced = [e for e in d.book.events if e["reason"].startswith("a seed failed")]
    assert [d.index[e["config"]] for e in replaced] == [1]
    assert by[1].failed == 1 and by[1].evidence == by[1].started - 1
    assert by[2].worst == 1
    ev = d.book.evidence_of([by[2]] * 2)  # a diverged seed is a run of all-zero scores
    want = [ys[0][2, s].mean() if s != 1 else 0.0 for s in range(by[2].started)]
    assert by[2].started >= 2 and ev.mean[0, 0] == pytest.approx(np.mean(want))
    assert by[2].values[-1] == [0.0, 0.0] or [0.0, 0.0] in by[2].values


def test_budget_caps_trainings_and_the_racer_stops_on_it():
    k = 12
    _, runs, ys = simulated_study(4, configurations=k, seeds=8)
    trial = SimulatedTrial(ys, [])
    budget = 20
    d = Driver(_book(2, 8, k, max_concurrent=3, budget=budget), k, sampler_seed=4, result=trial.result).run()
    spent = sum(r.started for r in d.book.races)
    assert spent <= budget
    assert len(d.book.races) < k  # no configuration opened that its first seeds would overspend
    reasons = [r.reason for r in d.book.races]
    assert all(not r.open for r in d.book.races)
    assert BUDGET in reasons or spent + 2 > budget


def test_a_round_is_decided_when_all_its_seeds_have_ended():
    _, _, ys = simulated_study(5, configurations=3, seeds=8)
    trial = SimulatedTrial(ys, [])
    book = _book(2, 8, 3, max_concurrent=2)
    d = Driver(book, 3, sampler_seed=0, result=trial.result)
    cfgs = [book.suggest(f"t{i}", d.ask) for i in range(4)]  # a round: baseline x2, then config x2
    assert [c[REPLICATE_KEY] for c in cfgs] == [0, 1, 0, 1]
    assert cfgs[0][CONFIG_ID_KEY] == "t0" and cfgs[2][CONFIG_ID_KEY] == "t2"
    assert book.suggest("t4", d.ask) is None  # the round is running: nothing more
    assert book.end_seed("t2", trial.result(cfgs[2]["cfg"], 0)) == []
    assert book.end_seed("t3", trial.result(cfgs[2]["cfg"], 1)) == []  # its seeds ended: waits
    assert book.end_seed("t3", trial.result(cfgs[2]["cfg"], 1)) == []  # a second report: ignored
    assert book.end_seed("nobody", None) == []
    assert book.end_seed("t0", trial.result(0, 0)) == []
    events = book.end_seed("t1", trial.result(0, 1))
    assert {e.race.config_id for e in events} <= {"t0", "t2"} and events  # decided at the round's end
    assert all(e.kind in (SEED, STOP) for e in events)


def test_max_seeds_ends_a_race_that_stays_open():
    # Two configurations equal in truth: their membership stays open until M.
    rng = np.random.default_rng(0)
    y = [np.clip(0.6 + 0.3 * rng.standard_normal((2, 6, 400)), 0, 1) for _ in range(2)]

    def result(cfg, seed):
        scores = {m: y[j][cfg, seed] for j, m in enumerate(METRICS)}
        return {
            **{m: 100 * float(v.mean()) for m, v in scores.items()},
            RACE_SCORES: encode_scores(scores),
            "trial_status": "finished",
        }

    d = Driver(_book(2, 4, 2), 2, sampler_seed=0, result=result).run()
    assert all(r.started <= 4 for r in d.book.races)
    assert MAX_SEEDS in {r.reason for r in d.book.races}


def test_saved_book_is_plain_json_and_refuses_a_foreign_one():
    book = _book(2, 4, 3)
    d = Driver(
        book,
        3,
        sampler_seed=0,
        result=SimulatedTrial(simulated_study(6, configurations=3, seeds=4)[2], []).result,
    )
    d.run()
    text = json.dumps(d.book.to_dict())
    again = RaceBook.from_dict(json.loads(text))
    assert again.to_dict() == d.book.to_dict()
    with pytest.raises(ValueError, match="race book"):
        RaceBook.from_dict({"format": 99})
    with pytest.raises(ValueError, match="race book"):
        RaceBook.from_dict({**json.loads(text), "races": [{"nonsense": 1}]})


def test_scores_round_trip_exactly_and_bad_ones_are_refused():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 7, size=300)
    share = counts / 6.0  # a corruption_acc score over 6 keys
    floats = rng.random(50)
    text = encode_scores({"val/a": share, "val/b": floats}, {"val/a": 6})
    a, b = decode_scores(text, ["val/a", "val/b"])
    assert np.array_equal(a, share) and np.array_equal(b, floats)
    assert '"uint8"' in text and len(text) < 4 / 3 * (300 * 1 + 50 * 8) + 100  # counts travel as bytes
    with pytest.raises(ValueError, match="val/c missing"):
        decode_scores(text, ["val/c"])
    with pytest.raises(ValueError, match="not JSON"):
        decode_scores("{", ["val/a"])
    assert racing_problem("val/corruption/fog/3") is None
    assert racing_problem("val/relative_mce") and racing_problem("test/clean_acc")
