"""``freqstudy plan``: the seeds per configuration that detect a difference of E points.

From a replicated study's measured variance components (its runs' per-image outcomes:
the between-seed variance of a run's mean and the configuration x image variance,
pooled over configurations; ``study.selection.variance``), for each objective: the
seeds per configuration that give the wanted power (80%) for E points at the study's
family-wise level (Holm over every configuration's gain and clean drop against the
baseline, at its first step), and what the seeds the study used buy: the power for E
and the effect they detect with that power (``study.analysis.planning``).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from study.cli.output import print_json
from study.errors import FieldError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", required=True, help="a study run with replicates >= 2 (per-image outcomes)")
    p.add_argument("--effect", required=True, type=float, metavar="POINTS", help="the difference to detect")
    p.add_argument("--tracking-uri")
    p.add_argument("--objectives", help="METRIC:max,METRIC:max; default: the validation objectives")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise level (default 0.05)")
    p.add_argument("--power", type=float, default=0.8, help="wanted power (default 0.8)")
    p.add_argument(
        "--configurations",
        type=int,
        metavar="K",
        help="configurations in the family, baseline included (default: the study's)",
    )
    p.add_argument("--json", action="store_true")


def check_arguments(args: argparse.Namespace) -> None:
    """The numbers, before any server is started."""
    if not (math.isfinite(args.effect) and args.effect > 0):
        raise FieldError("effect", f" {args.effect}: must be a number of points > 0")
    if not 0.0 < args.alpha < 1.0:
        raise FieldError("alpha", f" {args.alpha}: must be in (0, 1)")
    if not 0.0 < args.power < 1.0:
        raise FieldError("power", f" {args.power}: must be in (0, 1)")
    if args.configurations is not None and args.configurations < 2:
        raise FieldError("configurations", f" {args.configurations}: must be >= 2 (a baseline and one more)")


def objective_split(objectives) -> tuple[str, list[str]]:
    """The objectives' split and their statistics (one split: a plan is for one family)."""
    from study.selection.variance import split_statistic

    pairs = [split_statistic(o.metric) for o in objectives]
    splits = {s for s, _ in pairs}
    if len(splits) != 1:
        raise FieldError("objectives", f": mixes splits {sorted(splits)}; plan one split at a time")
    return pairs[0][0], [stat for _, stat in pairs]


def plan_document(variance, objectives, args: argparse.Namespace) -> dict[str, Any]:
    """The plan as one JSON-ready document."""
    from study.analysis import planning

    k = args.configurations or variance.configurations
    rows = []
    for o in objectives:
        stat = o.metric.partition("/")[2]
        m = variance.measured[stat]
        p = planning.plan(
            o.metric,
            m.components,
            args.effect,
            configurations=k,
            used=variance.used,
            alpha=args.alpha,
            target=args.power,
        )
        c = m.components
        rows.append(
            {
                "objective": o.metric,
                "run_var": c.run_var,
                "image_var": c.image_var,
                "residual_var": m.residual_var,
                "n_images": c.n_images,
                "df": c.df,
                "seeds_used": p.used,
                "power_at_used": p.power_at_used,
                "detectable_at_used": p.detectable_at_used,
                "recommended": p.recommended,
            }
        )
    return {
        "study": variance.study,
        "split": variance.split,
        "effect": args.effect,
        "alpha": args.alpha,
        "power": args.power,
        "configurations": k,
        "level": planning.family_level(args.alpha, k),
        "baseline": variance.baseline,
        "seeds": {"min": min(variance.seeds), "max": max(variance.seeds), "used": variance.used},
        "max_planned_seeds": planning.MAX_PLANNED_SEEDS,
        "objectives": rows,
        "notes": list(variance.notes),
    }


def format_plan(doc: dict[str, Any]) -> str:
    e, pw = doc["effect"], doc["power"]
    head = [
        "objective",
        "s² seeds",
        "w images",
        "n",
        "R used",
        f"power for {e:g} at R used",
        f"detects at R used ({pw:.0%})",
        f"R for {pw:.0%} power",
    ]
    cells = [head]
    for r in doc["objectives"]:
        rec = r["recommended"]
        cells.append(
            [
                r["objective"],
                f"{r['run_var']:.3g}",
                f"{r['image_var']:.3g}",
                str(r["n_images"]),
                str(r["seeds_used"]),
                f"{r['power_at_used']:.2f}",
                f"{r['detectable_at_used']:.2f} points",
                str(rec) if rec is not None else f"> {doc['max_planned_seeds']} (more images, not seeds)",
            ]
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    s = doc["seeds"]
    seeds = f"{s['min']}" if s["min"] == s["max"] else f"{s['min']}-{s['max']}"
    lines += [
        "",
        f"study {doc['study']} ({doc['split']} split): {doc['configurations']} configurations in the family, "
        f"seeds per configuration {seeds}; baseline run {doc['baseline']}",
        f"level: {doc['alpha']:g} family-wise over each configuration's gain and clean drop against the "
        f"baseline (Holm, first step: {doc['level']:.2g} per test, two-sided)",
        "s²: between-seed variance of a run's mean; w: configuration x image variance of a per-image "
        "difference (points²; a gain's variance at R seeds a side is 2 s²/R + w/n)",
    ]
    lines += [f"note: {n}" for n in doc["notes"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from study.selection.choose import parse_objectives
    from study.selection.variance import measure_study
    from study.tracking.gains import study_outcomes
    from study.tracking.queries import client_for, load_study
    from study.tracking.server import local_tracking_uri

    check_arguments(args)
    try:
        objectives = parse_objectives(args.objectives)
    except ValueError as e:  # name the flag
        raise FieldError("objectives", f": {str(e).removeprefix('objectives: ')}") from None
    split, stats = objective_split(objectives)
    with local_tracking_uri(args.tracking_uri) as uri:
        client = client_for(uri)
        study_runs = load_study(args.study, client=client)
        outcomes = study_outcomes(study_runs, client=client)
    variance = measure_study(study_runs, outcomes, stats, split)
    doc = plan_document(variance, objectives, args)
    if args.json:
        print_json(doc, indent=1)
    else:
        print(format_plan(doc))
    return 0
