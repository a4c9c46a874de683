"""``freqstudy export``: a study's run table and per-image outcomes as plain files (no server needed
to read them back: ``freqstudy report --from-export DIR``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", required=True)
    p.add_argument("--tracking-uri")
    p.add_argument(
        "--out", required=True, help="folder to write runs.json, runs.csv, outcomes/, manifest.json"
    )


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # before any server starts
        raise ValueError(f"--out {out}: is a file; give a folder")
    from study.tracking.export import export_study
    from study.tracking.server import local_tracking_uri

    with local_tracking_uri(args.tracking_uri) as uri:
        manifest = export_study(args.study, out, tracking_uri=uri)
    total = sum(f["bytes"] for f in manifest["files"].values())
    print(f"wrote {len(manifest['files'])} files ({total / 1e6:.1f} MB) and {out / 'manifest.json'}")
    return 0
