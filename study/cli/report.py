"""``freqstudy report``: the study report (HTML, CSV and PNGs), logged to the study's parent run."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", help="the study in the MLflow store")
    p.add_argument("--tracking-uri")
    p.add_argument(
        "--from-export",
        metavar="DIR",
        help="read the study from a freqstudy export folder instead (no server; nothing logged)",
    )
    p.add_argument("--out", help="output folder; default ./report-<study>")


def write_results_markdown(choice, outcomes, path: Path) -> Path:
    """``results.md``: every configuration's accuracy and its difference from the baseline,
    with intervals and p-values, on the test set (reported) and the validation copy (chosen on)."""
    from study.files import write_text_atomic
    from study.reporting.results import category_table, markdown_table, results_rows

    groups = {
        rid: [outcomes[t["run_id"]] for t in runs if t["run_id"] in outcomes]
        for rid, runs in choice.members.items()
    }
    base = choice.baseline
    if base is None or not groups.get(base["run_id"]):
        text = f"# {choice.study}\n\nNo baseline with per-image outcomes: no paired comparison to show.\n"
        return write_text_atomic(path, text)
    complete = {c.run_id for c in choice.result.candidates}
    records = [r for r in choice.configurations if r["run_id"] in complete]
    rows = results_rows(records, groups, base["run_id"], gains=choice.gains)  # the gains pareto computed
    parts = [f"# {choice.study}: configurations against the baseline", ""]
    parts += [
        "Means over seeds with 95% intervals. With 2 or more seeds per configuration: t intervals over "
        "seed means whose Welch-Satterthwaite degrees of freedom fold in the image-level variance "
        "(docs/method.md, uncertainty; logit scale for accuracies, so within [0, 100]; log scale for "
        "relative mCE), p-values from the same t statistic. With one seed a row is about two trained "
        "networks, not configurations: a paired bootstrap over source images (an image and all its "
        "corrupted versions together) with exact McNemar (clean) or sign-flip (others) p-values, and seed "
        "luck is not in the interval. Gains are configuration minus baseline, in points (clean drop: "
        "baseline minus configuration; relative mCE: percent of the baseline's summed error). Multiplicity: "
        "the robustness gain and clean drop of every configuration form the primary family (Holm-adjusted "
        "p, 'p adj'); the per-category differences a secondary one (Benjamini-Hochberg, 'BH'). p-values "
        "print at their resolution: '≤ 0.001' below it.",
        "",
    ]
    parts += race_paragraph(records)
    for split, what in (
        ("test", "Test set (reported, never chosen on)"),
        ("val", "Validation copy (what the search optimised)"),
    ):
        parts += [
            f"## {what}",
            "",
            markdown_table(rows, split),
            "",
            f"### Robustness gain per corruption category ({split})",
            "",
            category_table(rows, split),
            "",
        ]
    return write_text_atomic(path, "\n".join(parts))


def _sentence(line: str | None) -> str:
    return f"{line[0].upper()}{line[1:]}." if line else ""


def race_paragraph(records) -> list[str]:
    """results.md's lines on a racing study's seeds (none when every configuration's seeds were fixed)."""
    from study.selection.race_outcomes import seeds_line, shows_races

    if not shows_races(records):
        return []
    return [
        f"{_sentence(seeds_line(records))} Seeds were raced (replicates: {{min, max}}, "
        "docs/method.md): a configuration got one more seed at a time while its place on the front or "
        "its gain against the baseline was open; 'race ended' says why it got no more: dominated by "
        "a configuration on the front, settled, at max seeds, or out of the study's budget (max_seeds); "
        "open: still racing. Configurations therefore rest on unequal numbers of seeds, and each interval "
        "uses every seed of each side.",
        "",
    ]


def results_from_export(export_dir: Path, path: Path) -> Path:
    """``results.md`` alone from an export folder: what ``docs/results/paper-cpu.md`` is generated from."""
    from study.exported import load_export
    from study.selection.choice import choose
    from study.selection.choose import parse_objectives

    study_runs, outcomes = load_export(export_dir)
    choice = choose(study_runs, parse_objectives(None), None, outcomes=outcomes)
    return write_results_markdown(choice, outcomes, path)


def report_from_export(export_dir: Path, out: Path) -> list[Path]:
    """The report and ``results.md`` of an export folder (``study.exported.load_export``), without a
    server: the learned α figure from each learned trial's final ``filters/mean_alpha`` (the per-filter
    artifacts stay in MLflow), no Fourier maps."""
    import math

    import numpy as np

    from study import metrics as M
    from study.exported import load_export
    from study.reporting.report import write_report
    from study.selection.choice import choose
    from study.selection.choose import metric_of, param_of, parse_objectives

    study_runs, outcomes = load_export(export_dir)
    choice = choose(study_runs, parse_objectives(None), None, outcomes=outcomes)
    pooled = [
        metric_of(c.trial, M.FILTER_MEAN_ALPHA)
        for c in choice.result.candidates
        if param_of(c.trial, "frequency.mode") == "learned"
    ]
    pooled = [a for a in pooled if not math.isnan(a)]
    alpha = {"mean α per trial": np.array(pooled)} if pooled else {}
    written = write_report(choice, out, alpha, {}, outcomes)
    written.append(write_results_markdown(choice, outcomes, out / "results.md"))
    return written


def run(args: argparse.Namespace) -> int:
    if (args.study is None) == (args.from_export is None):
        raise ValueError(
            "give --study (read MLflow) or --from-export DIR (read an export folder), one of them"
        )
    out = Path(args.out or f"report-{args.study or Path(args.from_export).name}")
    if out.exists() and not out.is_dir():  # before any server starts
        kind = "a file" if out.is_file() else "not a folder (a device, socket or pipe)"
        raise ValueError(f"--out {out}: is {kind}; give a folder")
    if args.from_export is not None:
        written = report_from_export(Path(args.from_export), out)
        print(f"wrote {out / 'report.html'} and {len(written) - 1} more files (from {args.from_export})")
        return 0
    from study.reporting.report import REPORT_ARTIFACTS, write_report
    from study.selection.choice import choose
    from study.selection.choose import parse_objectives
    from study.tracking.gains import study_outcomes
    from study.tracking.queries import client_for, fourier_maps, learned_alpha, load_study, log_files
    from study.tracking.server import local_tracking_uri

    with local_tracking_uri(args.tracking_uri) as uri:
        client = client_for(uri)
        study_runs = load_study(args.study, client=client)
        # Per-image outcomes: the gains' paired intervals (choice.gains) and each trial's own.
        outcomes = study_outcomes(study_runs, client=client)
        choice = choose(study_runs, parse_objectives(None), None, outcomes=outcomes)
        for problem in choice.problems:  # groups left out, baseline tags not used
            print(f"freqstudy report: note: {problem}", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="freqstudy-report-") as tmp:
            alpha = learned_alpha(choice, client, Path(tmp))
            fourier = fourier_maps(choice, client, Path(tmp))
        written = write_report(choice, out, alpha, fourier, outcomes)
        written.append(write_results_markdown(choice, outcomes, out / "results.md"))
        if choice.parent is not None:
            log_files(choice.parent["run_id"], written, REPORT_ARTIFACTS, client=client)
            where = f"; logged to parent run {choice.parent['run_id']} under {REPORT_ARTIFACTS}/"
            from study.tracking.links import browse_line
            from study.tracking.notes import set_report_note

            set_report_note(client, choice.parent["run_id"], (out / "results.md").read_text())
            if browse := browse_line(args.tracking_uri, uri, choice.study, client=client):
                where += f"\n{browse}"
        else:
            where = ""
            print(
                f"freqstudy report: note: study {choice.study!r} has no parent run; nothing logged",
                file=sys.stderr,
            )
    print(f"wrote {out / 'report.html'} and {len(written) - 1} more files{where}")
    return 0
