"""A study's decisions in one value: its trials sorted, its baseline, its
champion, and the rows the ``pareto`` and ``report`` commands show.

The choosing itself is ``study.selection.choose`` (pure); this module shapes
rows for people and for JSON. Objectives are validation metrics unless
``--objectives`` says otherwise; test metrics are columns, never inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from study import metrics as M
from study.analysis.gains import Gain, gain_fields
from study.analysis.outcomes import Outcomes
from study.analysis.paired import gain_interval
from study.errors import FieldError
from study.objectives import Objective
from study.selection import choose as P
from study.selection.configurations import group_configurations, replicates_of
from study.selection.race_outcomes import race_of

MAX_FOURIER_PANELS = 7  # the baseline and the first 6 Pareto models: a wider figure stops being legible


@dataclass(frozen=True)
class Choice:
    """Everything ``pareto`` and ``report`` decide about a study."""

    study: str
    parent: dict[str, Any] | None
    trials: list[dict[str, Any]]
    result: P.ParetoResult
    baseline: dict[str, Any] | None
    champion: P.Candidate | None
    max_clean_drop: float | None
    # run_id -> split -> gain against the baseline with intervals (when outcomes were given).
    gains: Mapping[str, Mapping[str, Gain]] = field(default_factory=dict)
    significant: bool = False  # the champion had to have a validation gain interval above 0
    # --significant's verdict in one line (multiplicity.significant_champion), None without it.
    significance: str | None = None
    # Configurations (replicates taken together; a plain trial is its own) and their runs.
    configurations: list[dict[str, Any]] = field(default_factory=list)
    members: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    # One line each: configuration groups left out and baseline tags not used, and why.
    problems: list[str] = field(default_factory=list)


def choose(
    study_runs: dict[str, Any],
    objectives: Sequence[Objective],
    max_clean_drop: float | None,
    *,
    outcomes: Mapping[str, Outcomes] | None = None,
    significant: bool = False,
    seed: int = 0,
) -> Choice:
    """Sort a loaded study (``queries.load_study``), compare its trials with the
    baseline image by image, and pick its champion.

    Args:
        study_runs: from ``study.tracking.queries.load_study``.
        objectives: validation metrics to sort on.
        max_clean_drop: points of validation clean accuracy the champion may lose.
        outcomes: run_id -> per-image outcomes; with the baseline's among them,
            every complete trial gets its gains with 95% intervals (test: reported;
            val: the one ``significant`` may choose on).
        significant: the champion must have a validation robustness-gain interval
            above 0 (needs outcomes); None when no Pareto trial has one.
        seed: of the bootstrap and permutation draws.
    """
    study, trials = study_runs["study"], study_runs["trials"]
    if not trials:
        raise ValueError(f"study {study!r} has no trial runs yet")
    P.check_metrics(study, trials, [o.metric for o in objectives])
    configurations, members = group_configurations(trials)
    result = P.sort_trials(configurations, objectives)
    baseline = P.find_baseline(configurations)
    problems = [str(c["inconsistent"]) for c in configurations if c.get("inconsistent")]
    problems += [
        f"{p}; the baseline is {'run ' + baseline['run_id'] if baseline else 'none'}"
        for p in P.baseline_problems(configurations)
    ]
    groups = (
        {
            rid: [outcomes[t["run_id"]] for t in runs if t["run_id"] in outcomes]
            for rid, runs in members.items()
        }
        if outcomes
        else {}
    )
    gains = adjusted_gains(gains_against_baseline(result, baseline, groups, seed=seed), baseline)
    if significant and baseline is None:
        raise FieldError("significant", ": the study has no finished baseline trial to measure gains against")
    if significant and not groups.get(baseline["run_id"]):
        raise FieldError(
            "significant", f": the baseline run {baseline['run_id']} has no per-image outcomes (outcomes.npz)"
        )

    champion = P.choose_champion(result, baseline, max_clean_drop)
    verdict = None
    if significant and champion is not None:
        crowned, verdict = significant_verdict(result, champion, groups, baseline["run_id"])
        champion = champion if crowned else None
    return Choice(
        study=study,
        parent=study_runs["parent"],
        trials=trials,
        result=result,
        baseline=baseline,
        champion=champion,
        max_clean_drop=max_clean_drop,
        gains=gains,
        significant=significant,
        significance=verdict,
        configurations=configurations,
        members=members,
        problems=problems,
    )


def gains_against_baseline(
    result: P.ParetoResult,
    baseline: dict[str, Any] | None,
    groups: Mapping[str, Sequence[Outcomes]],
    *,
    seed: int = 0,
) -> dict[str, dict[str, Gain]]:
    """run_id -> split -> :class:`~study.analysis.gains.Gain` for every complete
    configuration whose outcomes are comparable with the baseline's on that split.

    ``groups`` maps a configuration's run id to the outcomes of its replicates: one
    run against one run is a paired bootstrap over images; replicates on either side
    make it a two-level bootstrap (seeds, then images).
    """
    if baseline is None or not groups.get(baseline["run_id"]):
        return {}
    base = list(groups[baseline["run_id"]])
    out: dict[str, dict[str, Gain]] = {}
    for c in result.candidates:
        mine = list(groups.get(c.run_id) or [])
        if not mine:
            continue
        for split in base[0].splits:
            if not all(split in o.splits for o in base + mine):
                continue
            a = base[0] if len(base) == 1 else base
            b = mine[0] if len(mine) == 1 else mine
            try:
                out.setdefault(c.run_id, {})[split] = gain_interval(a, b, split, seed=seed)
            except ValueError:
                continue  # evaluated on other images, or no benchmark corruption: no paired gain
    return out


def significant_verdict(
    result: P.ParetoResult, champion: P.Candidate, groups: Mapping[str, Sequence[Outcomes]], base_id: str
) -> tuple[bool, str]:
    """Whether the champion the selection rule picked keeps a validation robustness gain above 0
    after a Bonferroni adjustment for every configuration it was chosen from
    (:func:`study.analysis.multiplicity.significant_champion`), and the one-line reason.

    Raises:
        FieldError: ``significant`` with one line saying why, when a front configuration has one
            seed (its interval would be about two trained networks) or lacks validation outcomes.
    """
    import numpy as np

    from study.analysis import seedlevel as SL
    from study.analysis.multiplicity import significant_champion
    from study.analysis.statistics import select, statistics_of

    base = list(groups.get(base_id) or [])
    front = []
    for c in result.front:
        mine = list(groups.get(c.run_id) or [])
        if not mine or not all("val" in o.splits for o in base + mine):
            raise FieldError("significant", f": {trial_label(c.trial)} has no validation per-image outcomes")
        (stat,) = select(statistics_of(base[0].keys("val"), "val"), ["corruption_acc"])
        ya = np.stack([stat.scores(o) for o in base])
        yb = np.stack([stat.scores(o) for o in mine])
        front.append(SL.configuration_difference(ya, yb))
    k = len(result.candidates)  # every configuration the front was chosen from
    verdict = significant_champion(front, [c.run_id for c in result.front].index(champion.run_id), k)
    if not verdict.crowned and verdict.adjusted_low != verdict.adjusted_low:  # NaN: refused (R = 1)
        raise FieldError("significant", f": {verdict.reason}")
    return verdict.crowned, verdict.reason


def adjusted_gains(
    gains: Mapping[str, Mapping[str, Gain]], baseline: dict[str, Any] | None
) -> dict[str, dict[str, Gain]]:
    """The gains with their multiplicity adjustment, per split: the primary family (every
    configuration's robustness gain and clean drop against the baseline, the baseline's own
    zero left out) Holm-adjusted (``Difference.family``, ``Difference.p_adjusted``)."""
    from dataclasses import replace

    from study.analysis.multiplicity import PRIMARY, adjust

    base_id = None if baseline is None else baseline["run_id"]
    primary = (M.ROBUSTNESS_GAIN, M.CLEAN_DROP)
    out = {rid: dict(by_split) for rid, by_split in gains.items()}
    splits = {sp for by_split in gains.values() for sp in by_split}
    for split in sorted(splits):
        cells = [(rid, name) for rid in out if rid != base_id and split in out[rid] for name in primary]
        if not cells:
            continue
        adj = adjust([out[rid][split][name].p_value for rid, name in cells], PRIMARY)
        for (rid, name), p in zip(cells, adj, strict=True):
            g = out[rid][split]
            d = replace(g[name], family=PRIMARY, p_adjusted=float(p))
            out[rid][split] = Gain({**g.differences, name: d})
    return out


def trial_label(trial: dict[str, Any]) -> str:
    return str(trial["tags"].get(M.TAG_TRIAL_ID) or trial.get("name") or trial["run_id"][:8])


def aliases_of(choice: Choice) -> dict[str, list[str]]:
    """run_id -> registry aliases: ``pareto-1``... by robustness, and ``champion``."""
    out = {c.run_id: [f"pareto-{i}"] for i, c in enumerate(choice.result.front, start=1)}
    if choice.champion is not None:
        out[choice.champion.run_id].append("champion")
    return out


def pareto_rows(choice: Choice) -> list[dict[str, Any]]:
    """One plain dict per Pareto trial, most robust first (the JSON output)."""
    aliases = aliases_of(choice)
    rows = []
    for pos, c in enumerate(choice.result.front, start=1):
        t = c.trial
        row: dict[str, Any] = {
            "run_id": c.run_id,
            "trial": trial_label(t),
            "rank": c.rank,
            "position": pos,
            "aliases": aliases.get(c.run_id, []),
            "champion": choice.champion is not None and choice.champion.run_id == c.run_id,
            "baseline": choice.baseline is not None and choice.baseline["run_id"] == c.run_id,
            **P.frequency_of(t),
            "stem_kernel": P.param_of(t, "model.stem_kernel"),
            M.FILTER_PROPORTION: P.metric_of(t, M.FILTER_PROPORTION),
        }
        row.update(c.objectives)
        for key in (M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC, M.TEST_CLEAN_ACC, M.TEST_CORRUPTION_ACC):
            row.setdefault(key, P.metric_of(t, key))
        row.update(P.trial_gains(t, choice.baseline))
        row["crowding_distance"] = c.crowding
        race = race_of(t)  # seeds it got and why no more (fixed: replicates R, or one seed)
        row["seeds"], row["race_reason"], row["race_other"] = race.seeds, race.reason, race.other
        row["replicates"] = replicates_of(t)
        row["replicates_failed"] = int(t.get("replicates_failed", 0))
        row["runs"] = list(t.get("members", [t["run_id"]]))
        row.update(gain_fields(choice.gains.get(c.run_id, {})))
        rows.append({k: M.finite_or_none(v) for k, v in row.items()})  # JSON-safe
    return rows


def fourier_models(choice: Choice) -> list[tuple[str, dict[str, Any]]]:
    """``(name, trial)`` of the baseline (``baseline``) and the Pareto models (``pareto-1``...),
    in report order, each trial once (a baseline on the front keeps the name ``baseline``)."""
    models = ([("baseline", choice.baseline)] if choice.baseline else []) + [
        (f"pareto-{i}", c.trial) for i, c in enumerate(choice.result.front, start=1)
    ]
    seen: set[str] = set()
    out = []
    for name, t in models:
        if t["run_id"] not in seen:
            seen.add(t["run_id"])
            out.append((name, t))
    return out


def shown_settings(row: Mapping[str, Any]) -> dict[str, Any]:
    """The frequency settings of a row that mean something in its mode, the others None:
    the proportion p is a target only in fixed mode, or in learned mode with a pull
    (λ > 0); the cutoff is unused in free mode; λ exists only in learned mode."""
    mode = row.get("mode")
    weight = row.get("proportion_weight")
    pulled = mode == "learned" and M.is_finite_number(weight) and weight > 0
    return {
        "proportion": row.get("proportion") if mode == "fixed" or pulled else None,
        "cutoff": row.get("cutoff") if mode != "free" else None,
        "proportion_weight": weight if mode == "learned" else None,
    }
