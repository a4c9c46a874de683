"""p̂ of a trained free network under several band splits (docs/method.md §10).

Trains one free-mode ResNet-18 (width 16) on the real CIFAR-10 subset and measures the
layer's proportion p̂ of low-frequency filters, and the mean low-band energy share, at
each cutoff given, after training and at initialisation (same seed). A free network's
training does not depend on the cutoff, so one run serves every cutoff of its k.

    python scripts/band_split_phat.py --k 3 --cutoffs 0.5 0.8 --epochs 10 \
        --data-dir ../shared/data/cifar10-subset

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, required=True, choices=(3, 5, 7))
    p.add_argument("--cutoffs", type=float, nargs="+", required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-limit", type=int)
    p.add_argument("--data-dir", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)

    from models.spectral import frequency_proportion, low_energy_ratio
    from study.config import TrialConfig
    from study.engine.trial import build_model, run_trial

    config = TrialConfig.from_flat(
        {
            "data.dir": args.data_dir,
            "data.train_limit": args.train_limit,
            "model.width": args.width,
            "model.stem_kernel": args.k,
            "frequency.cutoff": args.cutoffs[0],
            "train.epochs": args.epochs,
            "train.batch_size": 128,
            "train.lr": 0.1,
            "train.checkpoint_every": 0,
            # The corruption evaluation is not what this measures: the least there is.
            "eval.corruption_limit": 10,
            "eval.corruptions": ["gaussian_noise"],
            "eval.severities": [3],
            "eval.test": False,
            "device": "cpu",
            "seed": args.seed,
        }
    )
    torch.manual_seed(args.seed)
    initial = build_model(config).stem.effective_weight().detach().float()
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # progress lines; stdout is the JSON document
        result = run_trial(config)
    trained = result.model.stem.effective_weight().detach().float()

    def measured(w: torch.Tensor) -> dict[str, dict[str, float]]:
        return {
            f"{c:g}": {
                "p_hat": frequency_proportion(w, c),
                "mean_low_share": float(low_energy_ratio(w, c).mean()),
            }
            for c in args.cutoffs
        }

    print(
        json.dumps(
            {
                "k": args.k,
                "width": args.width,
                "epochs": args.epochs,
                "seed": args.seed,
                "val_clean_acc": result.metrics.get("val/clean_acc"),
                "seconds": round(time.perf_counter() - started, 1),
                "trained": measured(trained),
                "initial": measured(initial),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
