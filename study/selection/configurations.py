"""Configurations: the replicates of one configuration (``replicates: R`` in a
space; same ``freqstudy.config_id`` tag, seeds base + 0..R-1) taken together.

A configuration becomes one record shaped like a trial record (``run_id``,
``params``, ``metrics``, ``tags``, ...), so the Pareto sort, the champion and the
tables work on configurations unchanged: its metrics are the means over its
replicates that finished, its ``run_id`` is the first replicate's (whose model is
the one registered), and it says how many replicates it rests on. Pure: plain
records in, plain records out.

- A replicate that *failed* (crashed after its retries: no finished run of its
  trial) is left out of the means and counted (``replicates_failed``).
- A replicate that *diverged* or stopped early makes its configuration
  incomplete: the sampler counted it at the objective's worst value, and a
  configuration with a diverged seed is not one to choose.
- A trial without the tag (a single-replicate study, ``freqstudy train``) is its
  own configuration, and its record is the trial record itself.
- Runs that share a tag must be one configuration: the same params apart from the
  per-run ones (:data:`PER_RUN_PARAMS`), the same base seed (seed - replicate), and at
  most one run that ended per replicate index (a retried replicate's crashed attempts
  aside). A group that breaks this is never averaged: its record carries
  ``inconsistent`` (one line naming the runs and what differs), which leaves it out of
  the sort (``choose.incomplete_reason``) and is shown by the commands. So is a group whose
  runs disagree on their race's outcome (:func:`study.selection.race_outcomes.race_problem`).
- Every configuration record says how many seeds it got and why no more
  (``seeds``, ``race_reason``, ``race_other``: :mod:`study.selection.race_outcomes`); configurations
  of a racing study have unequal numbers of seeds, and every mean and interval is over the
  seeds each one has.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from study import metrics as M
from study.selection.race_outcomes import is_racing_study, race_problem, record_race

Trial = Mapping[str, Any]


def config_id_of(trial: Trial) -> str:
    """The configuration a trial replicates (its own run id when untagged). A learned-mode
    trial's id holds its learned form, so seeds run with the earlier (band-gains) form and
    the energy-share form never count as one configuration (a study resumed across versions)."""
    config_id = str(trial.get("tags", {}).get(M.TAG_CONFIG_ID) or trial["run_id"])
    form = M.learned_form_of(trial)
    return config_id if form is None else f"{config_id}|learned_form={form}"


# Params that differ between the replicates of one configuration by design: the seed (checked
# as seed - replicate instead), where the run logged and read data, the device it ran on.
PER_RUN_PARAMS = ("seed", "data.dir", "device")


def _is_per_run(key: str) -> bool:
    return key in PER_RUN_PARAMS or key.startswith("tracking.")


def _base_seed(trial: Trial) -> str | None:
    seed = trial.get("params", {}).get("seed")
    try:
        return None if seed is None else str(int(seed) - run_replicate(trial))
    except (TypeError, ValueError):
        return str(seed)


def inconsistency(config_id: str, runs: Sequence[Trial]) -> str | None:
    """Why ``runs`` (sharing ``config_id``) are not the replicates of one configuration, or None."""
    first = runs[0]
    fp = first.get("params", {})
    for t in runs[1:]:
        tp = t.get("params", {})
        for key in sorted(set(fp) & set(tp)):  # keys added by a later version are absent from older runs
            if not _is_per_run(key) and str(fp[key]) != str(tp[key]):
                return (
                    f"runs {first['run_id']} and {t['run_id']} share {M.TAG_CONFIG_ID}={config_id} but "
                    f"differ in {key} ({fp[key]} vs {tp[key]}); left out"
                )
        if _base_seed(first) != _base_seed(t):
            return (
                f"runs {first['run_id']} and {t['run_id']} share {M.TAG_CONFIG_ID}={config_id} but not a "
                f"base seed (seed - replicate: {_base_seed(first)} vs {_base_seed(t)}); left out"
            )
    ended: dict[int, Trial] = {}
    for t in runs:
        if not _ended(t):
            continue
        k = run_replicate(t)
        other = ended.setdefault(k, t)
        same_trial = other.get("tags", {}).get(M.TAG_TRIAL_ID) == t.get("tags", {}).get(M.TAG_TRIAL_ID)
        if other is not t and not (same_trial and M.TAG_TRIAL_ID in t.get("tags", {})):
            return (
                f"runs {other['run_id']} and {t['run_id']} are both replicate {k} of "
                f"{M.TAG_CONFIG_ID}={config_id}; left out"
            )
    return None


def run_replicate(trial: Trial) -> int:
    """A trial run's replicate index 0..R-1 (its ``freqstudy.replicate`` tag; 0 when untagged)."""
    try:
        return int(trial.get("tags", {}).get(M.TAG_REPLICATE, 0))
    except (TypeError, ValueError):
        return 0


def _finished(trial: Trial) -> bool:
    return trial.get("status") == "FINISHED"


def _ended(trial: Trial) -> bool:
    """The replicate ran to an end of its own: finished, or diverged / stopped early
    (those end FAILED in MLflow but are results, not crashes)."""
    return _finished(trial) or trial.get("tags", {}).get(M.TAG_STATUS) in ("diverged", "stopped")


def group_configurations(trials: Sequence[Trial]) -> tuple[list[dict[str, Any]], dict[str, list[Trial]]]:
    """Trial records -> (configuration records, run_id of each record -> its member trials).

    Members are the runs that ended on their own (finished, diverged or stopped), one
    per replicate (a retried replicate's crashed attempts are not members);
    ``replicates_failed`` counts replicates that only crashed.
    """
    by_config: dict[str, list[Trial]] = {}
    for t in trials:
        by_config.setdefault(config_id_of(t), []).append(t)
    records: list[dict[str, Any]] = []
    members: dict[str, list[Trial]] = {}
    racing = is_racing_study(trials)
    for runs in by_config.values():
        if len(runs) == 1 and M.TAG_CONFIG_ID not in runs[0].get("tags", {}):
            records.append(runs[0])  # type: ignore[arg-type]
            members[runs[0]["run_id"]] = list(runs)
            continue
        # One member per replicate: its finished run, else its latest attempt.
        per_replicate: dict[int, Trial] = {}
        for t in sorted(runs, key=lambda r: r.get("start_time") or 0):
            k = run_replicate(t)
            if k not in per_replicate or not _ended(per_replicate[k]) or _ended(t):
                per_replicate[k] = t
        chosen = [per_replicate[k] for k in sorted(per_replicate)]
        done = [t for t in chosen if _ended(t)]
        running = [t for t in chosen if t.get("status") in ("RUNNING", "SCHEDULED")]
        failed = len(chosen) - len(done) - len(running)
        record = _record(done or chosen, failed)
        record.update(record_race(runs, done, racing))
        config_id = str(runs[0].get("tags", {}).get(M.TAG_CONFIG_ID))
        problem = inconsistency(config_id, runs) or race_problem(config_id, runs, done)
        if problem is not None:  # never averaged, never chosen: named instead
            record["inconsistent"] = problem
        if running:  # seeds still training: the configuration is not complete yet
            record["tags"] = {**record["tags"], M.TAG_STATUS: "running"}
        records.append(record)
        members[record["run_id"]] = done
    return records, members


def _record(runs: list[Trial], failed: int) -> dict[str, Any]:
    first = runs[0]
    statuses = {str(t.get("tags", {}).get(M.TAG_STATUS, "")) for t in runs}
    status = "finished" if statuses == {"finished"} else sorted(statuses - {"finished"})[0] or "unknown"
    keys = set.intersection(*(set(t.get("metrics", {})) for t in runs)) if runs else set()
    metrics = {}
    for k in keys:
        values = [float(t["metrics"][k]) for t in runs]
        metrics[k] = sum(values) / len(values) if all(math.isfinite(v) for v in values) else math.nan
    tags = {**first.get("tags", {}), M.TAG_STATUS: status}
    return {
        **first,
        "run_id": first["run_id"],
        "status": "FINISHED" if all(_finished(t) for t in runs) else first.get("status"),
        "start_time": min((t.get("start_time") or 0) for t in runs),
        "metrics": metrics,
        "tags": tags,
        "replicates": len(runs),
        "replicates_failed": failed,
        "members": [t["run_id"] for t in runs],
    }


def replicates_of(record: Trial) -> int:
    """How many finished replicates a configuration record rests on (1 for a plain trial)."""
    return int(record.get("replicates", 1))
