"""``freqstudy run``: validate a search space, run or resume the study, print the summary.

The console is one compact view of the trials (``study.search.console``): refreshed in
place on a terminal, plain lines otherwise, a line as each trial ends, then the summary.
``--verbose`` brings back Ray's own output and MLflow's per-run links.
"""

from __future__ import annotations

import argparse
import os
import sys

from study.cli.output import add_overrides


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--space",
        help="search space YAML (a path or a name in search_spaces/); required for a new study, "
        "and a resumed study keeps its own (given again, it must be the same)",
    )
    p.add_argument("--study", required=True, help="study name (= MLflow experiment)")
    p.add_argument("--num-trials", type=int)
    p.add_argument("--max-concurrent", type=int)
    p.add_argument("--cpus-per-trial", type=float)
    p.add_argument("--gpus-per-trial", type=float)
    p.add_argument("--data-dir")
    p.add_argument("--tracking-uri")
    p.add_argument("--storage", help="study storage folder or URI")
    p.add_argument("--address", help="Ray cluster address; default: a local Ray")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted study with its own settings (space, --set values, trial counts)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also Ray's output (per-trial boxes, workers' output, log lines) and MLflow's per-run links",
    )
    add_overrides(p, "override a fixed trial-config key for every trial (repeatable)")


def run(args: argparse.Namespace) -> int:
    from study.band_warnings import space_warnings
    from study.config import parse_overrides
    from study.errors import Stopped
    from study.search.space_parser import load_space
    from study.search.summary import format_summary
    from study.search.tune import run_study
    from study.tracking.server import TrackingServerLost

    # A driver submitted as a Ray job runs in the job's unpacked working directory, which Ray
    # may unpack again while the study runs (a worker on the same disk): nothing may depend
    # on the current folder after the start, so imports find the package by absolute path.
    sys.path[:] = [os.path.abspath(p or os.curdir) for p in sys.path]
    if args.space is None and not args.resume:
        raise ValueError("--space: required for a new study (a resumed one keeps its own)")
    space = load_space(args.space) if args.space is not None else None
    overrides = parse_overrides(args.overrides or [])
    if space is not None and not args.resume:
        # A bad --set: one line before anything starts; a band split that is allowed, but where
        # "low-frequency" would not mean what it says, is a warning.
        for warning in space_warnings(space.with_fixed(overrides)):
            print(f"freqstudy run: warning: {warning}", file=sys.stderr)
    said: list[bool] = []

    def say_stopped() -> None:
        # One line, said as soon as the runs are closed as KILLED (study.search.phases.stop_study):
        # `ray job stop` kills the driver 3 s after SIGTERM, before Ray's own clean-up ends.
        if not said:
            said.append(True)
            print(
                f"freqstudy run: stopped (SIGTERM); study {args.study}'s running trials are closed as "
                "KILLED; continue it with --resume",
                file=sys.stderr,
                flush=True,
            )

    try:
        summary = run_study(
            space,
            overrides=overrides,
            study=args.study,
            data_dir=args.data_dir,
            tracking_uri=args.tracking_uri,
            storage=args.storage,
            address=args.address,
            resume=args.resume,
            num_trials=args.num_trials,
            max_concurrent=args.max_concurrent,
            cpus_per_trial=args.cpus_per_trial,
            gpus_per_trial=args.gpus_per_trial,
            verbose=1 if args.verbose else 0,
            on_stop=say_stopped,
        )
    except Stopped:
        say_stopped()
        return 143
    except TrackingServerLost as e:  # the server went away before any trial (a trial's loss fails the trial)
        print(f"freqstudy run: {e}", file=sys.stderr)
        return 1
    print(format_summary(summary, summary.space))
    if summary.interrupted:
        print(f"freqstudy run: study {args.study} was interrupted; continue it with: {resume_command(args)}")
        return 130  # the shell's code for a run ended by SIGINT
    return 0 if summary.count("failed") < len(summary.trials) else 1


def resume_command(args: argparse.Namespace) -> str:
    """The ``freqstudy run ... --resume`` command that continues the study ``args`` ran, shell-quoted."""
    import shlex

    # Trial count, concurrency and resources are the study's own on resume (given, they are ignored).
    words = [
        "freqstudy",
        "run",
        *(["--space", str(args.space)] if args.space is not None else []),
        "--study",
        args.study,
    ]
    for flag in ("data_dir", "tracking_uri", "storage", "address"):
        if getattr(args, flag):
            words += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    for item in args.overrides or []:
        words += ["--set", item]
    return shlex.join([*words, "--resume"])
