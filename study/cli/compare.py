"""``freqstudy compare``: is the difference between two runs real?

Both runs' per-image outcomes are read from MLflow; every statistic (clean
accuracy, the corruption mean, each category and corruption, relative mCE) is
compared image by image as B − A with a 95% interval paired over source images
and a p-value (``study.analysis.paired``), adjusted for multiplicity (clean and
corruption mean Holm, categories and corruptions Benjamini-Hochberg). Runs evaluated on
different images are refused with one line saying what differs.

A run that is one replicate of a configuration (``replicates: R``) stands for
its whole configuration: the means over its replicates are compared, with a
t interval over seed means (``study.analysis.seedlevel``); ``--single-runs``
compares the two runs alone, and such a comparison is labelled as being about
two trained networks.
"""

from __future__ import annotations

import argparse

from study import metrics as M
from study.cli.output import print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_a",
        metavar="RUN_A",
        help="run id of A (e.g. the baseline), the trial id pareto prints, or a run id prefix",
    )
    p.add_argument("run_b", metavar="RUN_B", help="run id of B; differences are B - A")
    p.add_argument("--study", required=True, help="the study (MLflow experiment) both runs belong to")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--tracking-uri")
    p.add_argument("--per-severity", action="store_true", help="also each corruption at each severity")
    p.add_argument("--confidence", type=float, default=0.95, help="of the intervals, in (0, 1)")
    p.add_argument("--seed", type=int, default=0, help="of the bootstrap and permutation draws")
    p.add_argument(
        "--single-runs",
        action="store_true",
        help="compare the two runs alone, not the configurations they replicate",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")


def _replicates_of(run_id: str, members) -> list[str]:
    """The finished runs of the configuration ``run_id`` replicates (itself alone when not
    replicated); a diverged seed has no outcomes and is left out, as in ``pareto``."""
    for runs in members.values():
        ids = [t["run_id"] for t in runs]
        if run_id in ids:
            finished = [
                t["run_id"]
                for t in runs
                if t.get("status") == "FINISHED" and t.get("tags", {}).get(M.TAG_STATUS) == "finished"
            ]
            return finished if run_id in finished else [run_id]
    return [run_id]


def check_same_images(groups: dict, split: str) -> None:
    """Refuse, in one line naming the two runs, when any run compared was evaluated on other
    ``split`` images than RUN_A's: a replicate of either configuration, or RUN_B itself.

    Args:
        groups: ``{"RUN_A": [(run id, Outcomes), ...], "RUN_B": [...]}``, each side's runs
            (RUN_A's or RUN_B's own run first, then the other replicates of its configuration).

    Raises:
        ValueError: ``<run> (<which>) and <run> (RUN_A) were not evaluated on the same images:
            <what differs>``; only this check says so, so no other refusal is read as it.
    """
    from study.analysis.outcomes import check_comparable

    ref_id, ref = groups["RUN_A"][0]
    for flag, members in groups.items():
        for i, (rid, o) in enumerate(members):
            which = flag if i == 0 else f"a replicate of {flag}'s configuration"
            if split not in o.splits:
                raise ValueError(
                    f"{rid} ({which}): no {split} outcomes; it has {', '.join(o.splits) or 'none'}"
                )
            if o is ref:
                continue
            try:
                check_comparable(ref, o, split)
            except ValueError as e:
                hint = " (--single-runs compares the two runs alone)" if i else ""
                raise ValueError(
                    f"{rid} ({which}) and {ref_id} (RUN_A) were not evaluated on the same images: {e}{hint}"
                ) from None


def form_lines(forms: dict[str, str | None]) -> list[str]:
    """One line per learned-mode run naming its form (``{"a": "band-gains", "b": None}``)."""
    out = []
    for flag, form in forms.items():
        if form is not None:
            legacy = form == M.LEGACY_LEARNED_FORM
            note = (
                " (the earlier form: band gains on a free kernel, which left alpha inert)" if legacy else ""
            )
            out.append(f"{flag.upper()} is learned mode, form {form}{note}")
    return out


def scope_line(replicates: tuple[int, int]) -> str:
    """What the intervals speak of: configurations (R >= 2 per side) or two trained networks."""
    ra, rb = replicates
    if min(ra, rb) >= 2:
        return (
            f"configurations: A over {ra} seeds, B over {rb}; t intervals over seed means with "
            "Welch-Satterthwaite df folding in the image-level variance (seed share = the part more "
            "seeds would shrink)"
        )
    return (
        f"about two trained networks, not configurations ({ra} and {rb} seed(s)): the interval "
        "counts image noise only; seed luck is not in it (replicates >= 2 for a configuration claim)"
    )


def format_table(rows: list[dict], run_a: str, run_b: str, split: str, confidence: float) -> str:
    """The differences as a fixed-width table, most general statistics first."""
    from study.analysis.multiplicity import format_p

    head = (
        f"{split}: B = {run_b} minus A = {run_a}; {confidence:.0%} intervals, paired over source "
        "images (an image and its corrupted versions together)"
    )
    lines = [
        head,
        f"{'statistic':<28} {'A':>7} {'B':>7} {'B-A':>7}  {'interval':<17} {'p':>7} {'p adj':>7}  "
        f"{'seeds':>5} {'seed%':>5}  test",
    ]

    def num(v, fmt="7.2f"):
        return f"{v:{fmt}}" if v is not None else f"{'-':>7}"

    for r in rows:
        ci = (
            f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
            if r["ci_low"] is not None and r["ci_high"] is not None
            else "-"
        )
        p = f"{format_p(r['p_value']) if r['p_value'] is not None else '-':>7}"
        padj = f"{format_p(r['p_adjusted']) if r['p_adjusted'] is not None else '-':>7}"
        seeds = "{}v{}".format(*r["replicates"])
        share = f"{100 * r['seed_share']:.0f}" if r["seed_share"] is not None else "-"
        values = f"{num(r['a'])} {num(r['b'])} {num(r['diff'], '+7.2f')}"
        lines.append(
            f"{r['statistic']:<28} {values}  {ci:<17} {p} {padj}  {seeds:>5} {share:>5}  {r['test']}"
        )
    lines.extend(f"{r['statistic']}: {r['note']}" for r in rows if r.get("note"))  # why a value is "-"
    lines.append("relative_mce: A = 100 by definition; B is 100·ΣE(B)/ΣE(A) over the benchmark corruptions.")
    lines.append(
        "p adj: clean_acc and corruption_acc Holm-adjusted (primary family); categories and "
        "corruptions Benjamini-Hochberg (secondary); seed%: share of the variance from seeds."
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if not 0.0 < args.confidence < 1.0:
        raise ValueError(f"--confidence {args.confidence}: allowed (0, 1), e.g. 0.95")
    if not 0 <= args.seed <= 2**32 - 1:  # numpy's generators take 0 .. 2**32 - 1
        raise ValueError(f"--seed {args.seed}: allowed integers 0..{2**32 - 1}")
    from study.cli.output import check_run_id

    check_run_id("RUN_A", args.run_a)
    check_run_id("RUN_B", args.run_b)
    from study.analysis.multiplicity import FAMILIES, adjust_families, family_of
    from study.analysis.paired import compare_groups, compare_runs
    from study.selection.configurations import group_configurations
    from study.tracking.queries import client_for, load_outcomes, load_study, resolve_run_id, run_in_study
    from study.tracking.server import local_tracking_uri

    with local_tracking_uri(args.tracking_uri) as uri:
        client = client_for(uri)
        # A run id, or the trial id pareto prints, or a run id's prefix.
        args.run_a = resolve_run_id(args.run_a, args.study, client, what="RUN_A")
        args.run_b = resolve_run_id(args.run_b, args.study, client, what="RUN_B")
        for flag, run_id in (("RUN_A", args.run_a), ("RUN_B", args.run_b)):
            run_in_study(run_id, args.study, client=client, what=flag)
        trials = load_study(args.study, client=client)["trials"]
        records = {t["run_id"]: t for t in trials}
        configurations, members = group_configurations(trials)
        if not args.single_runs:  # replicates are pooled only where they are one configuration
            for c in configurations:
                mine = {args.run_a, args.run_b} & {t["run_id"] for t in members.get(c["run_id"], [])}
                if c.get("inconsistent") and mine:
                    raise ValueError(
                        f"{sorted(mine)[0]}: {c['inconsistent']} (--single-runs compares the runs)"
                    )
        runs = {
            flag: [rid] if args.single_runs else _replicates_of(rid, members)
            for flag, rid in (("RUN_A", args.run_a), ("RUN_B", args.run_b))
        }
        if runs["RUN_A"] == runs["RUN_B"] and args.run_a != args.run_b:
            # Two seeds of one configuration: compare the two runs, not the configuration with itself.
            runs = {"RUN_A": [args.run_a], "RUN_B": [args.run_b]}
        groups = {}
        for flag in ("RUN_A", "RUN_B"):
            group = []
            for rid in runs[flag]:
                o = load_outcomes(rid, client=client)
                if o is None:
                    raise ValueError(
                        f"{flag} {rid}: no per-image outcomes (outcomes.npz); it diverged, failed, or was "
                        "logged by a freqstudy without them"
                    )
                if args.split not in o.splits:
                    raise ValueError(f"{flag} {rid}: no {args.split} outcomes; it has {', '.join(o.splits)}")
                group.append(o)
            groups[flag] = group
    named = {"RUN_A": args.run_a, "RUN_B": args.run_b}
    # Each side's named run first, then its configuration's other replicates.
    ordered = {f: [r for r in zip(runs[f], groups[f]) if r[0] == named[f]] for f in groups}
    for f in groups:
        ordered[f] += [r for r in zip(runs[f], groups[f]) if r[0] != named[f]]
    check_same_images(ordered, args.split)
    a, b = groups["RUN_A"], groups["RUN_B"]
    kw = dict(confidence=args.confidence, seed=args.seed, per_severity=args.per_severity)
    # Any other refusal of the analysis speaks for itself (it is not about the images).
    if len(a) == 1 and len(b) == 1:
        diffs = compare_runs(a[0], b[0], args.split, **kw)
    else:
        diffs = compare_groups(a, b, args.split, **kw)
    rows = [
        {
            "statistic": d.name,
            "a": M.finite_or_none(d.a),
            "b": M.finite_or_none(d.b),
            "diff": M.finite_or_none(d.diff),
            "ci_low": M.finite_or_none(d.ci_low),
            "ci_high": M.finite_or_none(d.ci_high),
            "p_value": M.finite_or_none(d.p_value),
            "test": d.test,
            "n_images": d.n_images,
            "replicates": list(d.replicates),
            "scope": d.scope,  # "configurations" (R >= 2 per side) or "networks" (two trained networks)
            "seed_share": M.finite_or_none(d.seed_share),
            "image_share": M.finite_or_none(d.image_share),
            "df": M.finite_or_none(d.df),
            "family": d.family,
            "p_adjusted": M.finite_or_none(d.p_adjusted),
            "note": d.note or None,  # why a value is null (not available): e.g. A makes no error
        }
        for d in adjust_families(diffs, lambda d: family_of(d.name))
    ]
    forms = {
        flag: M.learned_form_of(records.get(rid, {})) for flag, rid in (("a", args.run_a), ("b", args.run_b))
    }
    if args.json:
        doc = {
            "study": args.study,
            "split": args.split,
            "run_a": args.run_a,
            "run_b": args.run_b,
            "learned_form": forms,  # per run: energy-share, band-gains (the earlier form) or null
            "replicates": [len(a), len(b)],
            "scope": "configurations" if min(len(a), len(b)) >= 2 else "networks",
            "families": list(FAMILIES),
            "confidence": args.confidence,
            "seed": args.seed,
            "differences": rows,
        }
        print_json(doc)
    else:
        print(format_table(rows, args.run_a, args.run_b, args.split, args.confidence))
        for line in form_lines(forms):
            print(line)
        print(scope_line((len(a), len(b))))
    return 0
