"""Learned mode on the real CIFAR-10 subset: the soft-count pull sets the proportion, and
the task loss alone moves α (docs/method.md, section 3, has the figures).

Cheap on purpose: ResNet-18 at width 8 (O = 8 filters), k = 5, r_c = 0.6, the first 500
training images, 3 epochs of batch 64 (24 steps), no test set and one corruption block.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.stem import initial_alpha
from study import metrics as M
from study.config import TrialConfig
from study.engine.trial import run_trial

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WIDTH = 8


def learned(subset_dir, **flat) -> TrialConfig:
    base = {
        "data.dir": str(subset_dir),
        "data.download": False,
        "data.train_limit": 500,
        "model.width": WIDTH,
        "model.stem_kernel": 5,
        "frequency.mode": "learned",
        "frequency.cutoff": 0.6,
        "train.epochs": 3,
        "train.batch_size": 64,
        "train.lr": 0.1,
        "train.checkpoint_every": 0,
        "eval.corruptions": ["gaussian_noise"],
        "eval.severities": [1],
        "eval.corruption_limit": 10,
        "eval.test": False,
        "device": "cpu",
    }
    base.update(flat)
    return TrialConfig.from_flat(base)


@pytest.mark.parametrize("target", [0.25, 0.75])
def test_the_pull_sets_the_proportion_within_one_filter_for_every_seed(subset_dir, target):
    """λ = 5, T = 0.05 and α's lr multiplier 10 (the defaults but λ) take p̂ from ½ to within
    1/O of the target at every seed of 3, read from α and from the weights alike."""
    torch.set_num_threads(1)
    for seed in (0, 1, 2):
        config = learned(
            subset_dir, seed=seed, **{"frequency.proportion": target, "frequency.proportion_weight": 5.0}
        )
        assert config.frequency.temperature == 0.05 and config.train.alpha_lr_multiplier == 10.0
        result = run_trial(config)
        assert result.status == "finished", result.reason
        final = result.history[-1]
        assert abs(final[M.FILTER_ALPHA_PROPORTION] - target) <= 1 / WIDTH, (seed, result.history)
        assert final[M.FILTER_PROPORTION] == final[M.FILTER_ALPHA_PROPORTION]
        ratio, alpha = result.filters["ratio"], result.filters["alpha"]
        assert np.abs(ratio - alpha).max() < 1e-5  # the contract, on the trained layer


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_the_task_loss_alone_moves_alpha(subset_dir, sigma):
    """λ = 0: no pull, yet α moves off its start under the task loss alone (with and without
    perturbation), by more than rounding; the figures print with ``-s``."""
    torch.set_num_threads(1)
    moves = []
    for seed in (0, 1, 2):
        result = run_trial(learned(subset_dir, seed=seed, **{"frequency.perturbation": sigma}))
        assert result.status == "finished", result.reason
        moves.append(result.alpha_history[-1] - initial_alpha(WIDTH).numpy())
    moves = np.stack(moves)  # (seeds, O)
    print(
        f"σ={sigma}: α - start over 3 seeds x {WIDTH} filters: mean {moves.mean():+.4f}, "
        f"mean |·| {np.abs(moves).mean():.4f}, sd {moves.std():.4f}, max |·| {np.abs(moves).max():.4f}"
    )
    assert np.abs(moves).mean() > 0.005
