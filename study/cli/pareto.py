"""``freqstudy pareto``: a study's Pareto set as a table or JSON, the champion
under ``--max-clean-drop``, the Pareto figure on the study's parent run, and
with ``--register`` every Pareto model in the Model Registry."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study import metrics as M
from study.analysis.gains import GAINS, SPLIT_PREFIX
from study.cli.output import print_json
from study.reporting.formatting import fmt, fmt_p, with_ci

if TYPE_CHECKING:  # the selection stack loads scipy.stats: imported where it runs, not for --help
    from study.selection.choice import Choice

PARETO_ARTIFACTS = "pareto"  # artifact folder on the parent run


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", required=True)
    p.add_argument("--tracking-uri")
    p.add_argument("--objectives", help="METRIC:max,METRIC:max; default: the validation objectives")
    p.add_argument("--max-clean-drop", type=float, metavar="POINTS")
    p.add_argument(
        "--significant",
        action="store_true",
        help="the champion needs a validation robustness-gain interval above 0 after adjusting for "
        "every configuration it was chosen from (needs replicates >= 2)",
    )
    p.add_argument("--register", action="store_true")
    p.add_argument("--json", action="store_true")


def _fmt(v: Any, digits: int = 2) -> str:
    return fmt(v, digits, dash="-")


def gain_scope_text(rows: list[dict[str, Any]]) -> str:
    """What the gain intervals speak of: configurations (R >= 2 per side) or two trained networks."""
    scopes = {r.get("gain_scope") for r in rows} - {None}
    if scopes == {"configurations"}:
        seeds = sorted({tuple(r["gain_seeds"]) for r in rows if r.get("gain_seeds")})
        per = ", ".join("{}v{}".format(*s) for s in seeds)
        return (
            f"configurations (seeds per side {per}): t intervals over seed means, image noise folded in; "
            "confirm a chosen configuration on fresh seeds"
        )
    if not scopes:
        return "no intervals"
    return (
        "about two trained networks (one seed per configuration): intervals count image noise only, "
        "not seed luck; replicates >= 2 for a claim about configurations"
    )


def format_table(choice: Choice, rows: list[dict[str, Any]]) -> str:
    """The Pareto set as an aligned text table plus a few summary lines."""
    from study.selection import choose as P
    from study.selection.choice import shown_settings, trial_label
    from study.selection.race_outcomes import (
        other_labels,
        race_of,
        race_text,
        seeds_line,
        seeds_text,
        shows_races,
    )

    objs = [o.metric for o in choice.result.objectives]
    configs = [c.trial for c in choice.result.candidates]
    seeds = seeds_line(configs)
    cols: list[tuple[str, Any]] = [
        ("#", lambda r: r["position"]),
        ("trial", lambda r: r["trial"]),
        ("mode", lambda r: r["mode"]),
    ]
    if seeds is not None:  # a study of one seed per configuration keeps its narrow table
        cols.append(("seeds", seeds_text))
    if shows_races(configs):
        label = other_labels(choice.configurations, trial_label)
        cols.append(("race ended", lambda r: race_text(race_of(r), label)))
    cols += [
        # Settings that mean nothing in a row's mode are shown as '-' (study.selection.choice.shown_settings).
        ("p", lambda r: _fmt(shown_settings(r)["proportion"])),
        ("cutoff", lambda r: _fmt(shown_settings(r)["cutoff"])),
        ("σ", lambda r: _fmt(r["perturbation"])),
        ("λ", lambda r: _fmt(shown_settings(r)["proportion_weight"])),
        ("p̂", lambda r: _fmt(r[M.FILTER_PROPORTION])),
    ]
    cols += [(f"{o.metric}:{o.short}", lambda r, k=o.metric: _fmt(r[k])) for o in choice.result.objectives]
    for key, name in ((M.TEST_CLEAN_ACC, "test clean"), (M.TEST_CORRUPTION_ACC, "test C10-C")):
        if key not in objs:
            cols.append((name, lambda r, k=key: _fmt(r[k])))
    for g in GAINS:  # the gain table: every gain with its interval, and its p where it has one
        cols.append(
            (
                f"{g.short} [95% CI]",
                lambda r, g=g: with_ci(
                    r[g.name], r.get(f"{g.name}_ci"), g.digits, g.signed, dash="-", minus="-"
                ),
            )
        )
        if g.has_p:
            cols.append(("p", lambda r, g=g: fmt_p(r.get(f"{g.name}_p"), dash="-")))
            cols.append(("p adj", lambda r, g=g: fmt_p(r.get(f"{g.name}_p_adjusted"), dash="-")))
    cols += [
        ("aliases", lambda r: ",".join(r["aliases"]) or "-"),
    ]
    cells = [[h for h, _ in cols]] + [[str(f(r)) for _, f in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    base = choice.baseline
    base_txt = (
        (
            f"{trial_label(base)} ({M.VAL_CLEAN_ACC} {_fmt(P.metric_of(base, M.VAL_CLEAN_ACC))}, "
            f"{M.VAL_CORRUPTION_ACC} {_fmt(P.metric_of(base, M.VAL_CORRUPTION_ACC))})"
        )
        if base
        else "none found"
    )
    complete = len(choice.result.candidates)
    lines += [
        "",
        f"study {choice.study}: {len(choice.trials)} trials, {complete} chosen from, "
        f"{len(rows)} on the front; {choice.result.describe_excluded()}",
        f"baseline: {base_txt}; gains are test-split points against it, with 95% intervals paired "
        "over test images; p adj: Holm over every configuration's gain and clean drop (primary family)",
        f"scope: {gain_scope_text(rows)}",
    ]
    if seeds is not None:
        lines.append(seeds)
    if not choice.gains:
        lines.append("intervals: none (the baseline has no per-image outcomes to pair with)")
    if choice.champion is not None:
        limit = (
            f"within {choice.max_clean_drop:g} points of the baseline's {M.VAL_CLEAN_ACC}"
            if choice.max_clean_drop is not None
            else "no --max-clean-drop: the most robust"
        )
        lines.append(f"champion: {trial_label(choice.champion.trial)} ({limit})")
    elif choice.significant:
        within = (
            f" within {choice.max_clean_drop:g} points of the baseline's {M.VAL_CLEAN_ACC}"
            if choice.max_clean_drop is not None
            else ""
        )
        lines.append(f"champion: none{within}: {choice.significance or 'no champion within the rule'}")
    elif choice.max_clean_drop is not None:
        lines.append(
            f"champion: none within {choice.max_clean_drop:g} points of the baseline's {M.VAL_CLEAN_ACC}"
        )
    if choice.significant and choice.champion is not None:
        lines.append(f"  (--significant: {choice.significance})")
    return "\n".join(lines)


def registrations(choice: Choice, rows: list[dict[str, Any]]):
    from study.tracking.registry import Registration

    keep = [prefix + g.name for prefix in SPLIT_PREFIX.values() for g in GAINS]
    out = []
    for r in rows:
        tags = {k: r[k] for k in keep if r.get(k) is not None}
        tags.update(
            {
                "trial": r["trial"],
                "mode": r["mode"],
                "pareto_position": r["position"],
                M.TAG_STUDY: choice.study,
                # How many seeds the version's configuration got and why no more (fixed: no race).
                "seeds": r["seeds"],
                "race_reason": r["race_reason"],
            }
        )
        out.append(Registration(run_id=r["run_id"], aliases=tuple(r["aliases"]), tags=tags))
    return out


def run(args: argparse.Namespace) -> int:
    from study.reporting.figures_study import pareto_figure
    from study.reporting.figures_trial import save_figure
    from study.selection import choose as P
    from study.selection.choice import choose, pareto_rows
    from study.tracking.gains import log_gains, study_outcomes
    from study.tracking.queries import client_for, load_study, log_files
    from study.tracking.server import local_tracking_uri

    try:
        objectives = P.parse_objectives(args.objectives)
    except ValueError as e:  # name the flag
        raise ValueError(f"--objectives: {str(e).removeprefix('objectives: ')}") from None
    P.check_max_clean_drop(args.max_clean_drop)  # before any server is started
    with local_tracking_uri(args.tracking_uri) as uri:
        client = client_for(uri)
        study_runs = load_study(args.study, client=client)
        outcomes = study_outcomes(study_runs, client=client)
        choice = choose(
            study_runs, objectives, args.max_clean_drop, outcomes=outcomes, significant=args.significant
        )
        for problem in choice.problems:  # groups left out, baseline tags not used
            print(f"freqstudy pareto: note: {problem}", file=sys.stderr)
        log_gains(choice, client=client)  # every trial's gain and interval, sortable in the UI
        from study.tracking.links import browse_line

        browse = browse_line(args.tracking_uri, uri, choice.study, client=client)
        rows = pareto_rows(choice)
        if args.register and rows:
            from study.tracking.registry import register_models

            versions = register_models(choice.study, registrations(choice, rows), client=client)
            for r in rows:
                r["version"] = versions[r["run_id"]]
        if choice.parent is not None:
            with tempfile.TemporaryDirectory() as tmp:
                from study.reporting.report import trial_intervals

                bars = trial_intervals(choice, outcomes).by_run if outcomes else None  # error bars
                png = save_figure(pareto_figure(choice, bars), Path(tmp) / "pareto.png")
                js = Path(tmp) / "pareto.json"
                js.write_text(json.dumps(rows, indent=1))
                log_files(choice.parent["run_id"], [png, js], PARETO_ARTIFACTS, client=client)
        else:
            print(
                f"freqstudy pareto: note: study {choice.study!r} has no parent run; figure not logged",
                file=sys.stderr,
            )
    if args.json:
        print_json(rows, indent=1)
    else:
        print(format_table(choice, rows))
        if browse:
            print(browse)
        if args.register and rows:
            print(
                f"registered {len(rows)} versions of model {choice.study!r}; "
                f"load one with study.tracking.load_registered_model({choice.study!r}, 'champion') "
                "(or 'pareto-1', ...)"
            )
    return 0
