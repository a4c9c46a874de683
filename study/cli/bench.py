"""``freqstudy bench``: performance benchmarks, each beside a baseline in the same run.

A section that cannot run here is reported as skipped with its reason (in the
JSON too: ``{"skipped": "<reason>"}``) and the others keep their results; the
exit status is 0 when at least one section ran, 1 when all were skipped.
"""

from __future__ import annotations

import argparse
import math
import sys

from study.cli.output import print_json

SECTIONS = ("startup", "train", "eval", "fourier", "corrupt", "corruptions", "orchestration", "tracking")
# Run when no --only is given: `tracking` (minutes, a PostgreSQL server) only when named.
DEFAULT_SECTIONS = tuple(s for s in SECTIONS if s != "tracking")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--quick", action="store_true", help="small sizes, under a minute on a CPU")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--compile", action="store_true", help="also time the engine under torch.compile (train.compile=true)"
    )
    p.add_argument("--only", help="comma-separated sections: " + ",".join(SECTIONS))


def run(args: argparse.Namespace) -> int:
    only = {s.strip() for s in args.only.split(",")} if args.only else None
    allowed = set(SECTIONS)
    if only and not only <= allowed:
        raise ValueError(
            f"bench --only: {', '.join(sorted(only - allowed))} unknown; allowed {', '.join(sorted(allowed))}"
        )
    log = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print
    from study.bench import run_bench, skipped_sections

    result = run_bench(device=args.device, quick=args.quick, only=only, compile=args.compile, log=log)
    if args.json:
        print_json(result, default=lambda v: None if isinstance(v, float) and math.isnan(v) else float(v))
    # Exit status 0 when at least one section ran; 1 when every section asked for was skipped.
    skipped = skipped_sections(result)
    if skipped:
        print(f"freqstudy bench: skipped {', '.join(skipped)} (reasons above)", file=sys.stderr)
    return 0 if len(skipped) < len(only or DEFAULT_SECTIONS) else 1
