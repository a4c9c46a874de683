"""``freqstudy compare``: is the difference between two runs real?

Both runs' per-image outcomes are read from MLflow; every statistic (clean
accuracy, the corruption mean, each category and corruption, relative mCE) is
compared image by image as B − A with a 95% paired-bootstrap interval over
source images and a p-value (``study.analysis.paired``). Runs evaluated on
different images are refused with one line saying what differs.
"""

from __future__ import annotations

import argparse
import json
import math


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_a", metavar="RUN_A", help="run id of A (e.g. the baseline)")
    p.add_argument("run_b", metavar="RUN_B", help="run id of B; differences are B - A")
    p.add_argument("--study", required=True, help="the study (MLflow experiment) both runs belong to")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--tracking-uri")
    p.add_argument("--per-severity", action="store_true", help="also each corruption at each severity")
    p.add_argument("--confidence", type=float, default=0.95, help="of the intervals, in (0, 1)")
    p.add_argument("--seed", type=int, default=0, help="of the bootstrap and permutation draws")
    p.add_argument("--json", action="store_true", help="print one JSON document")


def _finite(v: float) -> float | None:
    return v if isinstance(v, float) and math.isfinite(v) else None


def format_table(rows: list[dict], run_a: str, run_b: str, split: str, confidence: float) -> str:
    """The differences as a fixed-width table, most general statistics first."""
    head = (
        f"{split}: B = {run_b} minus A = {run_a}; {confidence:.0%} paired-bootstrap intervals over source "
        "images (an image and its corrupted versions together)"
    )
    lines = [head, f"{'statistic':<28} {'A':>7} {'B':>7} {'B-A':>7}  {'interval':<17} {'p':>7}  test"]

    def num(v, fmt="7.2f"):
        return f"{v:{fmt}}" if v is not None else f"{'-':>7}"

    for r in rows:
        ci = (
            f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
            if r["ci_low"] is not None and r["ci_high"] is not None
            else "-"
        )
        p = f"{r['p_value']:7.4f}" if r["p_value"] is not None else f"{'-':>7}"
        values = f"{num(r['a'])} {num(r['b'])} {num(r['diff'], '+7.2f')}"
        lines.append(f"{r['statistic']:<28} {values}  {ci:<17} {p}  {r['test']}")
    lines.append("relative_mce: A = 100 by definition; B is 100·ΣE(B)/ΣE(A) over the benchmark corruptions.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if not 0.0 < args.confidence < 1.0:
        raise ValueError(f"--confidence {args.confidence}: allowed (0, 1), e.g. 0.95")
    from study.analysis.paired import compare_runs
    from study.tracking.queries import client_for, load_outcomes, run_in_study
    from study.tracking.server import local_tracking_uri

    with local_tracking_uri(args.tracking_uri) as uri:
        client = client_for(uri)
        outcomes = {}
        for flag, run_id in (("RUN_A", args.run_a), ("RUN_B", args.run_b)):
            run_in_study(run_id, args.study, client=client, what=flag)
            o = load_outcomes(run_id, client=client)
            if o is None:
                raise ValueError(
                    f"{flag} {run_id}: no per-image outcomes (outcomes.npz); it diverged, failed, or was "
                    "logged by a freqstudy without them"
                )
            if args.split not in o.splits:
                raise ValueError(f"{flag} {run_id}: no {args.split} outcomes; it has {', '.join(o.splits)}")
            outcomes[flag] = o
    try:
        diffs = compare_runs(
            outcomes["RUN_A"],
            outcomes["RUN_B"],
            args.split,
            confidence=args.confidence,
            seed=args.seed,
            per_severity=args.per_severity,
        )
    except ValueError as e:
        raise ValueError(
            f"{args.run_a} and {args.run_b} were not evaluated on the same images: {e}"
        ) from None
    rows = [
        {
            "statistic": d.name,
            "a": _finite(d.a),
            "b": _finite(d.b),
            "diff": _finite(d.diff),
            "ci_low": _finite(d.ci_low),
            "ci_high": _finite(d.ci_high),
            "p_value": _finite(d.p_value),
            "test": d.test,
            "n_images": d.n_images,
        }
        for d in diffs
    ]
    if args.json:
        doc = {
            "study": args.study,
            "split": args.split,
            "run_a": args.run_a,
            "run_b": args.run_b,
            "confidence": args.confidence,
            "seed": args.seed,
            "differences": rows,
        }
        print(json.dumps(doc))
    else:
        print(format_table(rows, args.run_a, args.run_b, args.split, args.confidence))
    return 0
