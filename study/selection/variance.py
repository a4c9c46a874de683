"""A study's measured variance components: its runs grouped into configurations, their
per-image outcomes reduced per objective, what ``freqstudy plan`` and ``freqstudy simulate`` read.

Pure: plain records and :class:`~study.analysis.outcomes.Outcomes` in (the commands load
them from MLflow with ``study.tracking``), :class:`StudyVariance` out. Configurations are
those of ``pareto`` (:func:`study.selection.configurations.group_configurations`): the
complete ones whose finished replicates carry outcomes on the split, the baseline first.
A configuration with one seed adds nothing to the seed variance but still counts in the
family; a study where no configuration has two seeds has no seed variance to measure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from study.analysis import statistics as S
from study.analysis.components import Measured, measure
from study.analysis.outcomes import OUTCOMES_ARTIFACT, SPLITS, Outcomes, check_comparable
from study.errors import FieldError
from study.selection import choose as P
from study.selection.configurations import group_configurations


@dataclass(frozen=True)
class StudyVariance:
    """Per-statistic variance components of one study on one split.

    Attributes:
        study: its name.
        split: ``val`` or ``test``.
        baseline: the baseline configuration's run id.
        run_ids: ``(K,)`` configuration run ids, baseline first.
        seeds: ``(K,)`` seeds with outcomes per configuration.
        measured: statistic name -> :class:`~study.analysis.components.Measured`.
        notes: one line each: configurations left out, a baseline with one seed.
    """

    study: str
    split: str
    baseline: str
    run_ids: tuple[str, ...]
    seeds: tuple[int, ...]
    measured: Mapping[str, Measured]
    notes: tuple[str, ...] = ()

    @property
    def configurations(self) -> int:
        return len(self.run_ids)

    @property
    def used(self) -> int:
        """The seeds the study used: the fewest of a configuration with >= 2 (a racing study's
        configurations differ; its fewest is its start, m)."""
        return min(r for r in self.seeds if r >= 2)


def split_statistic(metric: str) -> tuple[str, str]:
    """``val/clean_acc`` -> ``("val", "clean_acc")``; ValueError when it names no split."""
    split, sep, stat = metric.partition("/")
    if not sep or split not in SPLITS or not stat:
        raise FieldError("objectives", f": {metric!r} is not <val|test>/<statistic>")
    return split, stat


def measure_study(
    study_runs: Mapping[str, Any], outcomes: Mapping[str, Outcomes], statistics: Sequence[str], split: str
) -> StudyVariance:
    """Components of ``statistics`` (names of the statistic table) on ``split``.

    Args:
        study_runs: ``study.tracking.queries.load_study``'s record.
        outcomes: run_id -> per-image outcomes (finished runs that have them).
        statistics: e.g. ``("clean_acc", "corruption_acc")``; accuracies (points), not
            relative mCE.
        split: ``val`` or ``test``.

    Raises:
        FieldError: (``study``) no trials, no outcomes, no baseline, runs on different
            images, no configuration with two seeds; (``objectives``) a statistic the
            outcomes do not support.
    """
    name = study_runs["study"]
    trials = study_runs["trials"]
    if not trials:
        raise FieldError("study", f" {name!r}: no trial runs yet")
    with_split = {rid: o for rid, o in outcomes.items() if split in o.splits}
    if not with_split:
        what = "per-image outcomes" if not outcomes else f"per-image outcomes on the {split} split"
        raise FieldError(
            "study",
            f" {name!r}: no finished trial has {what} ({OUTCOMES_ARTIFACT}); "
            "variance components are measured from them",
        )
    records, members = group_configurations(trials)
    complete = [r for r in records if P.incomplete_reason(r) is None]
    baseline = P.find_baseline(complete)
    groups: dict[str, list[Outcomes]] = {}
    notes = []
    for r in complete:
        got = [with_split[t["run_id"]] for t in members[r["run_id"]] if t["run_id"] in with_split]
        if got:
            groups[r["run_id"]] = got
        else:
            notes.append(f"configuration {r['run_id']} has no {split} outcomes; left out")
    if baseline is None or baseline["run_id"] not in groups:
        raise FieldError(
            "study",
            f" {name!r}: no complete baseline configuration (free mode, sigma 0) with {split} outcomes; "
            "the configuration x image variance is measured against it",
        )
    order = [baseline["run_id"]] + [rid for rid in groups if rid != baseline["run_id"]]
    runs = [(rid, i, o) for rid in order for i, o in enumerate(groups[rid])]
    ref = runs[0][2]
    for rid, i, o in runs[1:]:
        try:
            check_comparable(ref, o, split)
        except ValueError as e:
            raise FieldError(
                "study", f" {name!r}: configuration {rid} (seed {i}) is not on the baseline's images: {e}"
            ) from None
    seeds = tuple(len(groups[rid]) for rid in order)
    if max(seeds) < 2:
        raise FieldError(
            "study",
            f" {name!r}: every configuration has one seed (replicates: 1), so no between-seed variance "
            "can be measured; use a study run with replicates >= 2",
        )
    if seeds[0] < 2:
        notes.append(
            "the baseline has one seed: the configuration x image variance, measured against it, "
            "is taken as 0"
        )
    available = {s.name: s for s in S.statistics_of(ref.keys(split), split, relative=False)}
    measured = {}
    for stat in statistics:
        entry = available.get(stat)
        if entry is None or entry.kind.contrast != "diff":
            have = ", ".join(f"{split}/{s}" for s in available) or "none"
            raise FieldError(
                "objectives",
                f": {split}/{stat} has no per-image accuracy in these outcomes; they have {have}",
            )
        scores = [np.stack([entry.scores(o) for o in groups[rid]]) for rid in order]
        measured[stat] = measure(scores, stat, baseline=0)
    return StudyVariance(name, split, baseline["run_id"], tuple(order), seeds, measured, tuple(notes))
