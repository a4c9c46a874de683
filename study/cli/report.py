"""``freqstudy report``: the study report (HTML, CSV and PNGs), logged to the study's parent run."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", required=True)
    p.add_argument("--tracking-uri")
    p.add_argument("--out", help="output folder; default ./report-<study>")


def run(args: argparse.Namespace) -> int:
    from study.reporting.report import REPORT_ARTIFACTS, fourier_maps, learned_alpha, write_report
    from study.selection.choice import choose
    from study.selection.choose import parse_objectives
    from study.tracking.gains import study_outcomes
    from study.tracking.queries import client_for, load_study, log_files
    from study.tracking.server import local_tracking_uri

    out = Path(args.out or f"report-{args.study}")
    with local_tracking_uri(args.tracking_uri) as uri:
        client = client_for(uri)
        study_runs = load_study(args.study, client=client)
        # Per-image outcomes: the gains' paired intervals (choice.gains) and each trial's own.
        outcomes = study_outcomes(study_runs, client=client)
        choice = choose(study_runs, parse_objectives(None), None, outcomes=outcomes)
        with tempfile.TemporaryDirectory(prefix="freqstudy-report-") as tmp:
            alpha = learned_alpha(choice, client, Path(tmp))
            fourier = fourier_maps(choice, client, Path(tmp))
        written = write_report(choice, out, alpha, fourier, outcomes)
        if choice.parent is not None:
            log_files(choice.parent["run_id"], written, REPORT_ARTIFACTS, client=client)
            where = f"; logged to parent run {choice.parent['run_id']} under {REPORT_ARTIFACTS}/"
        else:
            where = ""
            print(
                f"freqstudy report: note: study {choice.study!r} has no parent run; nothing logged",
                file=sys.stderr,
            )
    print(f"wrote {out / 'report.html'} and {len(written) - 1} more files{where}")
    return 0
