"""``freqstudy pareto``: read a study's trials from MLflow, print its Pareto set
(a table, or JSON with ``--json``), pick the champion under
``--max-clean-drop``, draw the Pareto figure onto the study's parent run, and
with ``--register`` put every Pareto model in the Model Registry.

The choosing itself is ``study.pareto`` (pure); this module joins it to
MLflow through ``study.tracking`` and shapes rows for people and for JSON.
Objectives are validation metrics unless ``--objectives`` says otherwise;
test metrics are columns of the table, never inputs to the choice.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from study import metrics as M
from study import pareto as P

PARETO_ARTIFACTS = "pareto"  # artifact folder on the parent run


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


def choose(study_runs: dict[str, Any], objectives: Sequence[P.Objective], max_clean_drop: float | None) -> Choice:
    """Sort a loaded study (``queries.load_study``) and pick its champion."""
    study, trials = study_runs["study"], study_runs["trials"]
    if not trials:
        raise ValueError(f"study {study!r} has no trial runs yet")
    P.check_metrics(study, trials, [o.metric for o in objectives])
    result = P.sort_trials(trials, objectives)
    baseline = P.find_baseline(trials)
    champion = P.choose_champion(result, baseline, max_clean_drop)
    return Choice(study=study, parent=study_runs["parent"], trials=trials, result=result, baseline=baseline,
                  champion=champion, max_clean_drop=max_clean_drop)


def trial_label(trial: dict[str, Any]) -> str:
    return str(trial["tags"].get(M.TAG_TRIAL_ID) or trial.get("name") or trial["run_id"][:8])


def aliases_of(choice: Choice) -> dict[str, list[str]]:
    """run_id -> registry aliases: ``pareto-1``... by robustness, and ``champion``."""
    out = {c.run_id: [f"pareto-{i}"] for i, c in enumerate(choice.result.front, start=1)}
    if choice.champion is not None:
        out[choice.champion.run_id].append("champion")
    return out


def _clean(v: Any) -> Any:
    """JSON-safe: NaN and inf become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


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
            "mode": P.param_of(t, "frequency.mode"),
            "proportion": P.float_param(t, "frequency.proportion"),
            "cutoff": P.float_param(t, "frequency.cutoff"),
            "perturbation": P.float_param(t, "frequency.perturbation"),
            "proportion_weight": P.float_param(t, "frequency.proportion_weight"),
            "stem_kernel": P.param_of(t, "model.stem_kernel"),
            M.FILTER_PROPORTION: P.metric_of(t, M.FILTER_PROPORTION),
        }
        row.update(c.objectives)
        for key in (M.VAL_CLEAN_ACC, M.VAL_CORRUPTION_ACC, M.TEST_CLEAN_ACC, M.TEST_CORRUPTION_ACC):
            row.setdefault(key, P.metric_of(t, key))
        row.update(P.trial_gains(t, choice.baseline))
        row["crowding_distance"] = c.crowding
        rows.append({k: _clean(v) for k, v in row.items()})
    return rows


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def format_table(choice: Choice, rows: list[dict[str, Any]]) -> str:
    """The Pareto set as an aligned text table plus a few summary lines."""
    objs = [o.metric for o in choice.result.objectives]
    cols: list[tuple[str, Any]] = [
        ("#", lambda r: r["position"]), ("trial", lambda r: r["trial"]), ("mode", lambda r: r["mode"]),
        ("p", lambda r: _fmt(r["proportion"]) if r["mode"] != "free" else "-"),
        ("cutoff", lambda r: _fmt(r["cutoff"]) if r["mode"] != "free" else "-"),
        ("σ", lambda r: _fmt(r["perturbation"])),
        ("λ", lambda r: _fmt(r["proportion_weight"]) if r["mode"] == "learned" else "-"),
        ("p̂", lambda r: _fmt(r[M.FILTER_PROPORTION])),
    ]
    cols += [(f"{o.metric}:{o.direction}", lambda r, k=o.metric: _fmt(r[k])) for o in choice.result.objectives]
    for key, name in ((M.TEST_CLEAN_ACC, "test clean"), (M.TEST_CORRUPTION_ACC, "test C10-C")):
        if key not in objs:
            cols.append((name, lambda r, k=key: _fmt(r[k])))
    cols += [
        ("gain", lambda r: _fmt(r[M.ROBUSTNESS_GAIN])), ("clean drop", lambda r: _fmt(r[M.CLEAN_DROP])),
        ("rel mCE", lambda r: _fmt(r[M.RELATIVE_MCE], 1)), ("aliases", lambda r: ",".join(r["aliases"]) or "-"),
    ]
    cells = [[h for h, _ in cols]] + [[str(f(r)) for _, f in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    base = choice.baseline
    base_txt = (f"{trial_label(base)} ({M.VAL_CLEAN_ACC} {_fmt(P.metric_of(base, M.VAL_CLEAN_ACC))}, "
                f"{M.VAL_CORRUPTION_ACC} {_fmt(P.metric_of(base, M.VAL_CORRUPTION_ACC))})") if base else "none found"
    complete = len(choice.result.candidates)
    lines += [
        "",
        f"study {choice.study}: {len(choice.trials)} trials, {complete} chosen from, "
        f"{len(rows)} on the front; {choice.result.describe_excluded()}",
        f"baseline: {base_txt}; gains are test-split points against it",
    ]
    if choice.champion is not None:
        limit = (f"within {choice.max_clean_drop:g} points of the baseline's {M.VAL_CLEAN_ACC}"
                 if choice.max_clean_drop is not None else "no --max-clean-drop: the most robust")
        lines.append(f"champion: {trial_label(choice.champion.trial)} ({limit})")
    elif choice.max_clean_drop is not None:
        lines.append(f"champion: none within {choice.max_clean_drop:g} points of the baseline's {M.VAL_CLEAN_ACC}")
    return "\n".join(lines)


def pareto_figure(choice: Choice):
    """The Pareto figure of a choice (all complete trials, front, baseline, p-hat colour)."""
    from study.figures_study import plot_pareto

    cands = choice.result.candidates
    objs = choice.result.objectives
    values = np.array([[c.objectives[o.metric] for o in objs] for c in cands], dtype=float).reshape(len(cands), len(objs))
    if values.shape[1] == 1:  # one objective: draw it against robustness so the figure still reads
        values = np.column_stack([values[:, 0], [P.metric_of(c.trial, P.ROBUSTNESS_METRIC) for c in cands]])
        labels = [f"{objs[0].metric} ({objs[0].direction})", P.ROBUSTNESS_METRIC]
    else:
        labels = [f"{o.metric} ({o.direction})" for o in objs[:2]]
    chosen = {c.run_id for c in cands}
    others = np.array([[P.metric_of(t, o.metric) for o in objs[:2]] for t in choice.trials
                       if t["run_id"] not in chosen], dtype=float).reshape(-1, 2) if len(objs) >= 2 else None
    if others is not None:
        others = others[np.isfinite(others).all(axis=1)]
    base_idx = next((i for i, c in enumerate(cands)
                     if choice.baseline is not None and c.run_id == choice.baseline["run_id"]), None)
    return plot_pareto(values, np.array([P.metric_of(c.trial, M.FILTER_PROPORTION) for c in cands]),
                       np.array([c.rank == 1 for c in cands]), labels=labels, baseline=base_idx, others=others)


def registrations(choice: Choice, rows: list[dict[str, Any]]):
    from study.tracking.registry import Registration

    keep = (M.ROBUSTNESS_GAIN, M.CLEAN_DROP, M.RELATIVE_MCE, "val_" + M.ROBUSTNESS_GAIN, "val_" + M.CLEAN_DROP)
    out = []
    for r in rows:
        tags = {k: r[k] for k in keep if r.get(k) is not None}
        tags.update({"trial": r["trial"], "mode": r["mode"], "pareto_position": r["position"],
                     M.TAG_STUDY: choice.study})
        out.append(Registration(run_id=r["run_id"], aliases=tuple(r["aliases"]), tags=tags))
    return out


def cmd_pareto(args) -> int:
    from study.figures import save_figure
    from study.tracking.queries import client_for, load_study, log_files
    from study.tracking.server import local_tracking_uri

    objectives = P.parse_objectives(args.objectives)
    if args.max_clean_drop is not None and (math.isnan(args.max_clean_drop) or args.max_clean_drop < 0):
        raise ValueError(f"--max-clean-drop: {args.max_clean_drop} must be a number of points >= 0")
    with local_tracking_uri(args.tracking_uri) as uri:
        client = client_for(uri)
        choice = choose(load_study(args.study, client=client), objectives, args.max_clean_drop)
        rows = pareto_rows(choice)
        if args.register and rows:
            from study.tracking.registry import register_models

            versions = register_models(choice.study, registrations(choice, rows), client=client)
            for r in rows:
                r["version"] = versions[r["run_id"]]
        if choice.parent is not None:
            with tempfile.TemporaryDirectory() as tmp:
                png = save_figure(pareto_figure(choice), Path(tmp) / "pareto.png")
                js = Path(tmp) / "pareto.json"
                js.write_text(json.dumps(rows, indent=1))
                log_files(choice.parent["run_id"], [png, js], PARETO_ARTIFACTS, client=client)
        else:
            print(f"freqstudy pareto: note: study {choice.study!r} has no parent run; figure not logged",
                  file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_table(choice, rows))
        if args.register and rows:
            print(f"registered {len(rows)} versions of model {choice.study!r}; "
                  f"load one with models:/{choice.study}@champion or @pareto-1")
    return 0
