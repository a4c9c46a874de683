"""``freqstudy inspect``: the first layer's frequency make-up of a logged model."""

from __future__ import annotations

import argparse

from study.cli.output import check_run_id, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id")
    p.add_argument("--tracking-uri")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    check_run_id("RUN_ID", args.run_id)
    from study.engine.filters import describe_filters
    from study.tracking import load_logged_model, local_tracking_uri

    with local_tracking_uri(args.tracking_uri) as uri:
        model = load_logged_model(args.run_id, uri)
    info = describe_filters(model)
    if args.json:
        print_json(info)
        return 0
    print(
        f"run {args.run_id}: mode {info['mode']}, cutoff r_c={info['cutoff']:g}, "
        f"threshold τ={info['threshold']:g}"
    )
    print(f"{'index':>5}  {'class':<5}  {'ratio':>6}  {'alpha':>6}")
    for f in info["filters"]:
        ratio = "nan" if f["ratio"] is None else f"{f['ratio']:.3f}"
        alpha = "-" if f["alpha"] is None else f"{f['alpha']:.3f}"
        print(f"{f['index']:>5}  {f['class']:<5}  {ratio:>6}  {alpha:>6}")
    proportion = "nan" if info["proportion"] is None else f"{info['proportion']:.3f}"
    print(
        f"layer proportion p̂ = {proportion} ({sum(f['class'] == 'low' for f in info['filters'])} low of "
        f"{sum(f['class'] != 'none' for f in info['filters'])} classified)"
    )
    return 0
