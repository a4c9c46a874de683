"""The ``freqstudy`` command: argument parsing and dispatch, nothing else.

Each subcommand's work lives in the module named beside it and is imported
only when that subcommand runs, so ``freqstudy bench`` needs neither Ray nor
MLflow, and ``freqstudy --help`` is instant. Errors that a user can fix
(``ValueError``, ``FileNotFoundError``) end the command with one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> "module:function"; each function takes the parsed namespace and
# returns an exit status.
HANDLERS = {
    "train": "study.commands:cmd_train",
    "inspect": "study.commands:cmd_inspect",
    "ui": "study.commands:cmd_ui",
    "corrupt": "study.cifar10c:cmd_corrupt",
    "run": "study.tune:cmd_run",
    "pareto": "study.pareto_cmd:cmd_pareto",
    "report": "study.report:cmd_report",
    "bench": "study.bench:cmd_bench",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="freqstudy",
        description="Frequency-domain robustness studies of CNN first-layer filters.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train and evaluate one trial, tracked in MLflow (no Ray)")
    t.add_argument("--config", help="trial config YAML; default: the full recipe")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set frequency.mode=fixed (repeatable)")
    t.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (sets data.dir)")
    t.add_argument("--tracking-uri", help="MLflow tracking server; default: a local store")
    t.add_argument("--output-json", metavar="PATH", help="write the final metrics and run_id here")
    t.add_argument("--resume", metavar="CHECKPOINT", help="resume from a checkpoint file")

    i = sub.add_parser("inspect", help="print the first-layer frequency make-up of a logged model")
    i.add_argument("run_id")
    i.add_argument("--tracking-uri")
    i.add_argument("--json", action="store_true", help="print one JSON object")

    u = sub.add_parser("ui", help="serve the local MLflow store for browsing")
    u.add_argument("--port", type=int, default=5000)
    u.add_argument("--host", default="127.0.0.1")

    c = sub.add_parser("corrupt", help="generate a CIFAR-10-C copy of the test set or the validation split")
    c.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py/")
    c.add_argument("--split", choices=("test", "val"), default="test")
    c.add_argument("--out", required=True, help="output folder (official layout)")
    c.add_argument("--corruptions", help="comma-separated names; default all 19")
    c.add_argument("--severities", help="comma-separated 1..5; default all")
    c.add_argument("--limit", type=int, help="only the first N images")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--workers", type=int, default=0, help="processes; 0 = one per core")
    c.add_argument("--frost-dir", help="frost textures folder")
    c.add_argument("--val-fraction", type=float, default=0.1)
    c.add_argument("--split-seed", type=int, default=0)

    r = sub.add_parser("run", help="run a study: Ray Tune trials, Optuna multi-objective search")
    r.add_argument("--space", required=True, help="search space YAML (a path or a name in search_spaces/)")
    r.add_argument("--study", required=True, help="study name (= MLflow experiment)")
    r.add_argument("--num-trials", type=int)
    r.add_argument("--max-concurrent", type=int)
    r.add_argument("--cpus-per-trial", type=float)
    r.add_argument("--gpus-per-trial", type=float)
    r.add_argument("--data-dir")
    r.add_argument("--tracking-uri")
    r.add_argument("--storage", help="study storage folder or URI")
    r.add_argument("--address", help="Ray cluster address; default: a local Ray")
    r.add_argument("--resume", action="store_true", help="continue an interrupted study")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a fixed trial-config key for every trial (repeatable)")

    pa = sub.add_parser("pareto", help="the study's Pareto set; optionally register the models")
    pa.add_argument("--study", required=True)
    pa.add_argument("--tracking-uri")
    pa.add_argument("--objectives", help="METRIC:max,METRIC:max; default: the validation objectives")
    pa.add_argument("--max-clean-drop", type=float, metavar="POINTS")
    pa.add_argument("--register", action="store_true")
    pa.add_argument("--json", action="store_true")

    rp = sub.add_parser("report", help="the study report: HTML, CSV and PNGs")
    rp.add_argument("--study", required=True)
    rp.add_argument("--tracking-uri")
    rp.add_argument("--out", help="output folder; default ./report-<study>")

    b = sub.add_parser("bench", help="performance benchmarks (torch and numpy only)")
    b.add_argument("--device", choices=("cpu", "cuda"), default=None)
    b.add_argument("--quick", action="store_true", help="small sizes, under a minute on a CPU")
    b.add_argument("--json", action="store_true")
    b.add_argument("--compile", action="store_true", help="also time the engine under torch.compile (train.compile=true)")
    b.add_argument("--only", help="comma-separated sections: train,eval,corrupt,orchestration")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = HANDLERS[args.command].split(":")
    handler = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(handler(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"freqstudy {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"freqstudy {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
