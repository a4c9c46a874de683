"""``freqstudy simulate``: what a seed policy would cost and find, without training.

The noise model is drawn from an existing study (``--from-study``): its measured
variance components on the validation objectives (``study.selection.variance``) fix a
simulator regime (``study.analysis.components.fit_regime``: seed, per-image seed and
configuration x image spreads that show the same between-seed variance, residual and
configuration x image variance on ``clean_acc`` and ``corruption_acc``). The search
harness (``study.search.harness``) then runs ``--studies`` simulated studies of the
space's ``num_trials`` configurations (a true Pareto front of 3-5 among them) through
Optuna in-process, with the space's policy (``replicates: R`` fixed, or
``replicates: {min: m, max: M}`` racing) beside fixed R at m and M (or ``--fixed``),
on the same problems and runs; it reports P(exactly the true front) and the trainings.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from study.cli.output import print_json
from study.errors import FieldError

PAIRED_KEYS = ("only_this", "only_first", "mcnemar_p")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, help="the search space whose replicates policy is simulated")
    p.add_argument("--from-study", required=True, help="a study run with replicates >= 2: its measured noise")
    p.add_argument("--tracking-uri")
    p.add_argument("--studies", type=int, default=200, help="simulated studies (default 200)")
    p.add_argument("--seed", type=int, default=0, help="of the simulated problems and runs")
    p.add_argument(
        "--fixed",
        metavar="R[,R...]",
        help="fixed seeds per configuration to compare with (default: the space's m and M)",
    )
    p.add_argument("--max-concurrent", type=int, help="configurations racing at once (default: the space's)")
    p.add_argument("--json", action="store_true")


MAX_STUDIES = 100_000


def parse_fixed(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise FieldError("fixed", f" {text!r}: expected seeds per configuration, e.g. 3,8") from None
    if not values or any(v < 2 for v in values):
        raise FieldError("fixed", f" {text!r}: each must be an integer >= 2 (a seed variance needs two)")
    return values


def check_arguments(args: argparse.Namespace) -> None:
    if not 1 <= args.studies <= MAX_STUDIES:
        raise FieldError("studies", f" {args.studies}: must be in 1..{MAX_STUDIES}")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise FieldError("max_concurrent", f" {args.max_concurrent}: must be >= 1")
    parse_fixed(args.fixed)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError("space", f" {where}: {value!r} is not an integer")
    return value


def space_policy(name: str) -> dict[str, Any]:
    """The space's seed policy and size: ``{"path", "min_seeds", "max_seeds", "num_trials",
    "max_concurrent"}``.

    ``replicates: {min: m, max: M}`` is read from the file here (a mapping with exactly
    those keys, integers 2 <= m <= M) while the space parser may not know it yet; every
    other space is the parser's (``load_space``), errors and all.
    """
    from study import yamlfiles
    from study.search.space_parser import load_space, resolve_space_path

    path = resolve_space_path(name)
    tree = yamlfiles.load_file(path, "space")
    raw = tree.get("replicates", 1) if isinstance(tree, dict) else 1
    try:
        space = load_space(path)
        size = {"num_trials": space.num_trials, "max_concurrent": space.max_concurrent}
    except ValueError as e:
        if not isinstance(raw, dict) or "replicates" not in str(e):
            raise
        size = {
            "num_trials": _int(tree.get("num_trials", 20), f"{path}: num_trials"),
            "max_concurrent": _int(tree.get("max_concurrent", 2), f"{path}: max_concurrent"),
        }
    if isinstance(raw, dict):
        if set(raw) != {"min", "max"}:
            raise FieldError(
                "space", f" {path}: replicates: expected {{min: m, max: M}}, got keys {sorted(raw)}"
            )
        low, high = _int(raw["min"], f"{path}: replicates.min"), _int(raw["max"], f"{path}: replicates.max")
    else:
        low = high = _int(raw, f"{path}: replicates")
    if not 2 <= low <= high:
        raise FieldError(
            "space",
            f" {path}: replicates {raw}: simulating a policy needs 2 <= min <= max seeds per configuration "
            "(a seed variance needs two)",
        )
    if size["num_trials"] < 3:
        raise FieldError(
            "space", f" {path}: num_trials {size['num_trials']}: simulating needs >= 3 configurations"
        )
    return {"path": str(path), "min_seeds": low, "max_seeds": high, **size}


def _component_rows(measured, simulated) -> list[dict[str, Any]]:
    rows = []
    for stat, m in measured.items():
        s = simulated[stat]
        for what, a, b in (
            ("run_var", m.components.run_var, s.components.run_var),
            ("residual_var", m.residual_var, s.residual_var),
            ("image_var", m.components.image_var, s.components.image_var),
        ):
            rows.append({"statistic": stat, "component": what, "measured": a, "simulated": b})
    return rows


def _paired_cell(paired: dict[str, Any] | None) -> str:
    if paired is None:
        return "-"
    return f"{paired['only_this']} / {paired['only_first']} (p {paired['mcnemar_p']:.2g})"


def format_result(doc: dict[str, Any]) -> str:
    first = doc["policies"][0]["policy"]
    cells = [
        [
            "policy",
            "studies",
            "P(exact true front)",
            "trainings",
            "per configuration",
            f"right only here / only with {first}",
        ]
    ]
    for r in doc["policies"]:
        cells.append(
            [
                r["policy"],
                str(r["studies"]),
                f"{100 * r['exact_front']:.1f}% ± {100 * r['exact_front_sd']:.1f}",
                f"{r['trainings']:.1f}",
                f"{r['trainings_per_configuration']:.2f}",
                _paired_cell(r["paired"]),
            ]
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    reg = doc["regime"]
    lines += [
        "",
        f"space {doc['space']}: {doc['configurations']} configurations, "
        f"{doc['max_concurrent']} racing at once",
        f"noise from study {doc['from_study']} ({doc['split']} split, seeds per configuration "
        f"{doc['seeds']['min']}-{doc['seeds']['max']}): logit spreads seed {reg['seed_sd']:.3g}, "
        f"seed x corruption {reg['seed_corruption_sd']:.3g}, seed x image {reg['quirk_sd']:.3g}, "
        f"configuration x image {reg['config_image_sd']:.3g}; {reg['n_clean']} clean, "
        f"{reg['n_corrupted']} corrupted images",
        f"{'components (points²)':<30}{'measured':>9}   {'simulated':>9}",
    ]
    for r in doc["components"]:
        lines.append(
            f"  {r['statistic'] + ' ' + r['component']:<28}{r['measured']:>9.3g}   {r['simulated']:>9.3g}"
        )
    lines.append(
        "a problem: a true front of 3-5 configurations, the rest 3-10 points behind it "
        "(study.search.harness.draw_problem); every policy sees the same problems and runs"
    )
    lines += [f"note: {n}" for n in doc["notes"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    policy = space_policy(args.space)
    fixed = parse_fixed(args.fixed)

    from dataclasses import asdict

    from study.analysis.components import SIMULATED, fit_regime, simulated_components
    from study.search import harness
    from study.search.racing import RacePolicy
    from study.selection.variance import measure_study
    from study.tracking.gains import study_outcomes
    from study.tracking.queries import client_for, load_study
    from study.tracking.server import local_tracking_uri

    with local_tracking_uri(args.tracking_uri) as uri:
        client = client_for(uri)
        try:
            study_runs = load_study(args.from_study, client=client)
        except ValueError as e:
            raise FieldError("from_study", f": {e}") from None
        outcomes = study_outcomes(study_runs, client=client)
    try:
        variance = measure_study(study_runs, outcomes, SIMULATED, "val")
    except FieldError as e:
        if e.field != "study":
            raise FieldError("from_study", f" {args.from_study!r}: {e.detail.removeprefix(': ')}") from None
        raise FieldError("from_study", e.detail) from None
    print("freqstudy simulate: fitting the noise model to the measured components ...", file=sys.stderr)
    regime = fit_regime(variance.measured, name=f"from {args.from_study}")
    check = simulated_components(regime, seed=1)

    ours = RacePolicy(policy["min_seeds"], policy["max_seeds"])
    compare = fixed if fixed is not None else sorted({policy["min_seeds"], policy["max_seeds"]})
    policies = [ours] + [RacePolicy(r, r) for r in compare if (r, r) != (ours.min_seeds, ours.max_seeds)]
    concurrent = args.max_concurrent or policy["max_concurrent"]
    started, every = time.monotonic(), max(1, args.studies // 20)
    last = len(policies) - 1

    def progress(study: int, label: str, exact: bool, trainings: int) -> None:
        if label == harness.policy_label(policies[last]) and ((study + 1) % every == 0 or study == 0):
            print(
                f"freqstudy simulate: {study + 1}/{args.studies} studies "
                f"({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    results = harness.measure(
        regime,
        policies,
        studies=args.studies,
        configurations=policy["num_trials"],
        seed=args.seed,
        log=progress,
        max_concurrent=concurrent,
    )
    reg = asdict(regime)
    doc = {
        "space": policy["path"],
        "from_study": variance.study,
        "split": variance.split,
        "configurations": policy["num_trials"],
        "max_concurrent": concurrent,
        "studies": args.studies,
        "seed": args.seed,
        "seeds": {"min": min(variance.seeds), "max": max(variance.seeds)},
        "regime": {
            k: reg[k]
            for k in (
                "seed_sd",
                "seed_corruption_sd",
                "quirk_sd",
                "config_image_sd",
                "image_sd",
                "image_corruption_sd",
                "base_clean",
                "corruption_offset",
                "n_clean",
                "n_corrupted",
            )
        },
        "components": _component_rows(variance.measured, check),
        "policies": [
            {
                "policy": r.policy,
                "min_seeds": p.min_seeds,
                "max_seeds": p.max_seeds,
                "studies": r.studies,
                "exact_front": r.exact_front,
                "exact_front_sd": r.exact_front_sd,
                "trainings": r.trainings,
                "trainings_per_configuration": r.trainings_per_configuration,
                # Study by study against the space's own policy (the first row): the
                # studies only this policy / only the first got exactly right, McNemar's p.
                "paired": None if r is results[0] else dict(zip(PAIRED_KEYS, harness.paired(r, results[0]))),
            }
            for p, r in zip(policies, results)
        ],
        "seconds": time.monotonic() - started,
        "notes": list(variance.notes),
    }
    if args.json:
        print_json(doc, indent=1)
    else:
        print(format_result(doc))
    return 0
