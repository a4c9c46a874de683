"""The first layer's measured frequency make-up, from its effective weight."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from models.spectral import CLASS_NAMES, classify_filters, low_energy_ratio, spectral_centroid
from study.metrics import finite_or_none


def filter_statistics(model: nn.Module) -> dict[str, Any]:
    """The first layer's measured make-up, from its effective weight.

    Returns:
        ``weights`` (O, C, k, k) float32 numpy, ``classes`` (O,) 1 low / 0 high /
        -1 none, ``ratio`` (O,) low-band energy share, ``alpha`` (O,) or None,
        ``proportion`` p-hat measured from the weights, ``alpha_proportion`` p-hat read
        from alpha (``#{α_o ≥ τ}/O``, learned mode; else None), ``centroid`` mean spectral
        centroid (fraction of Nyquist).
    """
    stem = model.stem
    with torch.no_grad():
        w = stem.effective_weight().detach().float().cpu()
        alpha = stem.alpha()
        centroid = spectral_centroid(w)
        return {
            "weights": w.numpy(),
            "classes": classify_filters(w, stem.cutoff, stem.threshold).numpy(),
            "ratio": low_energy_ratio(w, stem.cutoff).numpy(),
            "alpha": None if alpha is None else alpha.detach().float().cpu().numpy(),
            "proportion": float(stem.measured_proportion()),
            "alpha_proportion": stem.alpha_proportion(),
            "centroid": float(torch.nanmean(centroid)) if centroid.numel() else math.nan,
        }


def describe_filters(model: nn.Module) -> dict:
    """``{"proportion": p̂, "mode", "cutoff", "threshold", "filters": [{"index", "ratio", "class", "alpha"}]}``
    of the stem, JSON-ready (NaN as None)."""
    stats = filter_statistics(model)
    ratio, classes, alpha = stats["ratio"].tolist(), stats["classes"].tolist(), stats["alpha"]
    stem = model.stem
    return {
        "proportion": finite_or_none(float(stats["proportion"])),
        "mode": stem.mode,
        "cutoff": stem.cutoff,
        "threshold": stem.threshold,
        "filters": [
            {
                "index": i,
                "ratio": finite_or_none(float(ratio[i])),
                "class": CLASS_NAMES[int(classes[i])],
                "alpha": None if alpha is None else float(alpha[i]),
            }
            for i in range(len(ratio))
        ],
    }
