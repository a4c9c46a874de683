"""``freqstudy train``: one tracked trial, no Ray.

The config is resolved (file, ``--set`` overrides, ``--data-dir``,
``--tracking-uri``) before any data or server is touched, so a config error is
one line naming the key; then one trial runs against the given MLflow server
or the local store, printing a line per epoch and the final metrics.
"""

from __future__ import annotations

import argparse
import json
import sys

from study import metrics as M
from study.cli.output import add_overrides
from study.metrics import (
    EPOCH_SECONDS,
    FILTER_ALPHA_STD,
    FILTER_MEAN_ALPHA,
    FILTER_PROPORTION,
    TRAIN_LOSS,
    VAL_CLEAN_ACC,
)

# Shown after a run; every metric is in --output-json and in MLflow.
HEADLINE_PREFIXES = (
    "val/clean_acc",
    "val/corruption_acc",
    "val/extra_acc",
    "test/clean_acc",
    "test/corruption_acc",
    "test/extra_acc",
    "test/category/",
    "test/severity/",
    "epochs_completed",
    "fourier/",
    "system/",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="trial config YAML; default: the full recipe")
    add_overrides(p, "override a config key, e.g. --set frequency.mode=fixed (repeatable)")
    p.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (sets data.dir)")
    p.add_argument("--tracking-uri", help="MLflow tracking server; default: a local store")
    p.add_argument("--output-json", metavar="PATH", help="write the final metrics and run_id here")
    p.add_argument("--resume", metavar="CHECKPOINT", help="resume from a checkpoint file")


def config_from_args(args: argparse.Namespace):
    """The trial config of ``freqstudy train``'s arguments (ValueError naming the key)."""
    from study.config import TrialConfig

    config = TrialConfig.from_yaml(args.config, list(args.overrides or []))
    if args.data_dir:
        config = config.replace(**{"data.dir": str(args.data_dir)})
    if args.tracking_uri:
        config = config.replace(**{"tracking.uri": str(args.tracking_uri)})
    return config


def format_epoch(row: dict[str, float], epochs: int) -> str:
    """``epoch  3/15  loss 1.234  val 45.6%  p̂ 0.50  α 0.48  12.3 s``."""
    line = (
        f"epoch {int(row['epoch']):>3}/{epochs}  loss {row[TRAIN_LOSS]:.4f}  val {row[VAL_CLEAN_ACC]:5.1f}%"
        f"  p̂ {row[FILTER_PROPORTION]:.3f}"
    )
    if FILTER_MEAN_ALPHA in row:
        line += f"  α {row[FILTER_MEAN_ALPHA]:.3f} ± {row[FILTER_ALPHA_STD]:.3f}"
    return line + f"  {row[EPOCH_SECONDS]:.1f} s"


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from study.band_warnings import config_warning

    if warning := config_warning(config):  # allowed, but "low-frequency" would not mean what it says
        print(f"freqstudy train: warning: {warning}", file=sys.stderr)
    from study.config import default_home
    from study.engine.prepare import prepare_data
    from study.engine.trial import DIVERGED
    from study.files import write_text_atomic
    from study.tracking import local_tracking_uri, run_tracked_trial
    from study.tracking.server import TrackingServerLost, check_server

    check_server(config.tracking.uri)  # a given server that does not answer: one line, exit 2
    epochs = config.train.epochs
    # Data before the run: unreadable data or a config that does not fit it (model.num_classes)
    # is one line, with no server started and no run created.
    data = prepare_data(config)
    with local_tracking_uri(config.tracking.uri) as uri:
        print(f"tracking at {uri} (experiment {config.tracking.experiment!r})", flush=True)
        try:
            tracked = run_tracked_trial(
                config,
                tracking_uri=uri,
                resume_from=args.resume,
                checkpoint_dir=default_home() / "checkpoints" / config.tracking.experiment,
                on_epoch=lambda row: print(format_epoch(row, epochs), flush=True),
                data=data,
            )
        except TrackingServerLost as e:  # bounded: MLflow's HTTP settings (study.tracking.server)
            print(f"freqstudy train: {e}", file=sys.stderr)
            return 1
        from study.tracking.links import browse_line

        browse = browse_line(config.tracking.uri, uri, config.tracking.experiment)
    if args.output_json:
        finite = {k: M.finite_or_none(float(v)) for k, v in tracked.metrics.items()}
        write_text_atomic(
            args.output_json,
            json.dumps(
                {
                    "run_id": tracked.run_id,
                    "status": tracked.status,
                    "reason": tracked.reason,
                    "tracking_uri": uri,
                    "metrics": finite,
                },
                indent=2,
                sort_keys=True,
            ),
        )
    print(f"run {tracked.run_id} {tracked.status}")
    if browse:
        print(browse)
    if tracked.status == DIVERGED:
        print(f"freqstudy train: diverged: {tracked.reason} (run {tracked.run_id})", file=sys.stderr)
        return 1
    for key in sorted(tracked.metrics):
        if key.startswith(HEADLINE_PREFIXES):
            print(f"  {key:<32} {tracked.metrics[key]:.3f}")
    return 0
