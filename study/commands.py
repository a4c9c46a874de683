"""The single-trial commands: ``freqstudy train``, ``freqstudy inspect`` and
``freqstudy ui``.

``train`` resolves the config (file, ``--set`` overrides, ``--data-dir``,
``--tracking-uri``) before touching any data or server, so a config error is
one line naming the key; then it runs one tracked trial against the given
MLflow server or the local store, printing a line per epoch and the final
metrics. ``inspect`` reads a logged model back and prints its first layer's
frequency make-up; ``ui`` serves the local store for browsing.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import torch

from models.spectral import classify_filters, low_energy_ratio
from study.config import TrialConfig, default_home
from study.files import write_text_atomic
from study.metrics import (
    EPOCH_SECONDS,
    FILTER_MEAN_ALPHA,
    FILTER_PROPORTION,
    TRAIN_LOSS,
    VAL_CLEAN_ACC,
)
from study.tracking import load_logged_model, local_tracking_uri, run_tracked_trial
from study.tracking.server import server_command, store_dir
from study.trial import DIVERGED

# Shown after a run; every metric is in --output-json and in MLflow.
HEADLINE_PREFIXES = ("val/clean_acc", "val/corruption_acc", "val/extra_acc", "test/clean_acc", "test/corruption_acc",
                     "test/extra_acc", "test/category/", "test/severity/", "epochs_completed", "system/")


def config_from_args(args: argparse.Namespace) -> TrialConfig:
    """The trial config of ``freqstudy train``'s arguments (ValueError naming the key)."""
    config = TrialConfig.from_yaml(args.config, list(args.overrides or []))
    if args.data_dir:
        config = config.replace(**{"data.dir": str(args.data_dir)})
    if args.tracking_uri:
        config = config.replace(**{"tracking.uri": str(args.tracking_uri)})
    return config


def format_epoch(row: dict[str, float], epochs: int) -> str:
    """``epoch  3/15  loss 1.234  val 45.6%  p̂ 0.50  α 0.48  12.3 s``."""
    line = (f"epoch {int(row['epoch']):>3}/{epochs}  loss {row[TRAIN_LOSS]:.4f}  val {row[VAL_CLEAN_ACC]:5.1f}%"
            f"  p̂ {row[FILTER_PROPORTION]:.3f}")
    if FILTER_MEAN_ALPHA in row:
        line += f"  α {row[FILTER_MEAN_ALPHA]:.3f}"
    return line + f"  {row[EPOCH_SECONDS]:.1f} s"





def _json_value(v: float) -> float | None:
    return v if math.isfinite(v) else None


def cmd_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    epochs = config.train.epochs
    with local_tracking_uri(config.tracking.uri) as uri:
        print(f"tracking at {uri} (experiment {config.tracking.experiment!r})", flush=True)
        tracked = run_tracked_trial(
            config, tracking_uri=uri, resume_from=args.resume,
            checkpoint_dir=default_home() / "checkpoints" / config.tracking.experiment,
            on_epoch=lambda row: print(format_epoch(row, epochs), flush=True),
        )
    if args.output_json:
        write_text_atomic(args.output_json, json.dumps({
            "run_id": tracked.run_id, "status": tracked.status, "reason": tracked.reason,
            "tracking_uri": uri, "metrics": {k: _json_value(v) for k, v in tracked.metrics.items()},
        }, indent=2, sort_keys=True))
    print(f"run {tracked.run_id} {tracked.status}")
    if tracked.status == DIVERGED:
        print(f"freqstudy train: diverged: {tracked.reason} (run {tracked.run_id})", file=sys.stderr)
        return 1
    for key in sorted(tracked.metrics):
        if key.startswith(HEADLINE_PREFIXES):
            print(f"  {key:<32} {tracked.metrics[key]:.3f}")
    return 0


def describe_filters(model: torch.nn.Module) -> dict:
    """``{"proportion": p̂, "filters": [{"index", "ratio", "class", "alpha"}]}`` of the stem."""
    stem = model.stem
    with torch.no_grad():
        w = stem.effective_weight().detach().float().cpu()
        ratio = low_energy_ratio(w, stem.cutoff).tolist()
        classes = classify_filters(w, stem.cutoff, stem.threshold).tolist()
        alpha = stem.alpha()
        alpha = None if alpha is None else alpha.detach().float().cpu().tolist()
        proportion = float(stem.measured_proportion())
    names = {1: "low", 0: "high", -1: "none"}
    return {
        "proportion": _json_value(proportion),
        "mode": stem.mode,
        "cutoff": stem.cutoff,
        "threshold": stem.threshold,
        "filters": [
            {"index": i, "ratio": _json_value(ratio[i]), "class": names[int(classes[i])],
             "alpha": None if alpha is None else alpha[i]}
            for i in range(len(ratio))
        ],
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    with local_tracking_uri(args.tracking_uri) as uri:
        model = load_logged_model(args.run_id, uri)
    info = describe_filters(model)
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"run {args.run_id}: mode {info['mode']}, cutoff r_c={info['cutoff']:g}, threshold τ={info['threshold']:g}")
    print(f"{'index':>5}  {'class':<5}  {'ratio':>6}  {'alpha':>6}")
    for f in info["filters"]:
        ratio = "nan" if f["ratio"] is None else f"{f['ratio']:.3f}"
        alpha = "-" if f["alpha"] is None else f"{f['alpha']:.3f}"
        print(f"{f['index']:>5}  {f['class']:<5}  {ratio:>6}  {alpha:>6}")
    proportion = "nan" if info["proportion"] is None else f"{info['proportion']:.3f}"
    print(f"layer proportion p̂ = {proportion} ({sum(f['class'] == 'low' for f in info['filters'])} low of "
          f"{sum(f['class'] != 'none' for f in info['filters'])} classified)")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port}: allowed 1..65535")
    store_dir().mkdir(parents=True, exist_ok=True)
    print(f"serving {store_dir()} at http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    return subprocess.call(server_command(host=args.host, port=args.port))
