"""Metric names and the arithmetic that turns per-corruption accuracies into
the numbers a study optimises and reports.

Pure: no torch, no I/O. Every accuracy is in percent (0-100), so gains and
drops are in points. Keys name their split (``val/...``, ``test/...``); the
search optimises ``val/`` keys only. The benchmark mean is over the 15
CIFAR-10-C corruptions x the severities evaluated; the 4 extras are reported
apart and never averaged in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

BENCHMARK_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

CATEGORIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}

# Final metrics (percent). Objectives of a search are the VAL_* ones.
VAL_CLEAN_ACC = "val/clean_acc"
VAL_CORRUPTION_ACC = "val/corruption_acc"
TEST_CLEAN_ACC = "test/clean_acc"
TEST_CORRUPTION_ACC = "test/corruption_acc"

# Per-epoch metrics (step = epoch, 1-based).
TRAIN_LOSS = "train/loss"
TRAIN_LR = "train/lr"
EPOCH_SECONDS = "train/epoch_seconds"
FILTER_PROPORTION = "filters/proportion"  # measured p-hat of the first layer
FILTER_MEAN_ALPHA = "filters/mean_alpha"  # learned mode only
# Learned mode only: the spread (standard deviation over filters) of alpha, and p-hat read from
# alpha (#{alpha_o >= tau}/O), logged beside FILTER_PROPORTION measured from the weights.
FILTER_ALPHA_STD = "filters/alpha_std"
FILTER_ALPHA_PROPORTION = "filters/alpha_proportion"
FILTER_CENTROID = "filters/centroid"  # mean spectral centroid, fraction of Nyquist
# The row study.engine.trial reports each epoch, and the keys learned mode adds to it.
EPOCH_KEYS: tuple[str, ...] = (
    TRAIN_LOSS,
    TRAIN_LR,
    VAL_CLEAN_ACC,
    FILTER_PROPORTION,
    FILTER_CENTROID,
    EPOCH_SECONDS,
)
LEARNED_EPOCH_KEYS: tuple[str, ...] = (FILTER_MEAN_ALPHA, FILTER_ALPHA_STD, FILTER_ALPHA_PROPORTION)
EPOCHS_COMPLETED = "epochs_completed"
PEAK_MEMORY_MB = "system/peak_memory_mb"
# CUDA only: the caching allocator's peak reservation, what a fractional-GPU memory
# cap limits (allocated memory above is less; the CUDA context is in neither).
PEAK_MEMORY_RESERVED_MB = "system/peak_memory_reserved_mb"

# Against the study's baseline (points, and percent for mCE).
ROBUSTNESS_GAIN = "robustness_gain"
# Paired gains with intervals, logged on each trial run: gain/<split>/robustness_ci_low, ...
GAIN_PREFIX = "gain/"
CLEAN_DROP = "clean_drop"
RELATIVE_MCE = "relative_mce"


def corruption_key(split: str, name: str, severity: int | None = None) -> str:
    """``test/corruption/fog`` (mean over severities) or ``test/corruption/fog/3``."""
    base = f"{split}/corruption/{name}"
    return base if severity is None else f"{base}/{severity}"


def severity_key(split: str, severity: int) -> str:
    return f"{split}/severity/{severity}"


def category_key(split: str, category: str) -> str:
    return f"{split}/category/{category}"


def category_of(name: str) -> str | None:
    for cat, names in CATEGORIES.items():
        if name in names:
            return cat
    return None


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else math.nan


def summarize(split: str, clean_acc: float, accuracy: Mapping[tuple[str, int], float]) -> dict[str, float]:
    """All split metrics from per-(corruption, severity) accuracies.

    Args:
        split: ``"val"`` or ``"test"``.
        clean_acc: accuracy on the clean images, percent.
        accuracy: ``{(name, severity): percent}`` for whatever was evaluated.

    Returns:
        ``{split}/clean_acc``, ``{split}/corruption_acc`` (benchmark mean; NaN when
        no benchmark corruption was evaluated), ``{split}/extra_acc``, and per
        corruption, per (corruption, severity), per severity and per category
        means (benchmark corruptions only for severity and category).
    """
    out: dict[str, float] = {f"{split}/clean_acc": float(clean_acc)}
    names = sorted(
        {n for n, _ in accuracy}, key=lambda n: ALL_CORRUPTIONS.index(n) if n in ALL_CORRUPTIONS else 99
    )
    for name in names:
        per = {s: a for (n, s), a in accuracy.items() if n == name}
        for s, a in sorted(per.items()):
            out[corruption_key(split, name, s)] = float(a)
        out[corruption_key(split, name)] = _mean(per.values())
    bench = {k: v for k, v in accuracy.items() if k[0] in BENCHMARK_CORRUPTIONS}
    extra = {k: v for k, v in accuracy.items() if k[0] in EXTRA_CORRUPTIONS}
    out[f"{split}/corruption_acc"] = _mean(bench.values())
    if extra:
        out[f"{split}/extra_acc"] = _mean(extra.values())
    for s in sorted({s for _, s in bench}):
        out[severity_key(split, s)] = _mean(a for (n, t), a in bench.items() if t == s)
    for cat, members in CATEGORIES.items():
        vals = [a for (n, _), a in bench.items() if n in members]
        if vals:
            out[category_key(split, cat)] = _mean(vals)
    return out


def relative_mce(model: Mapping[str, float], baseline: Mapping[str, float], split: str = "test") -> float:
    """``100 * sum_c E_c(model) / sum_c E_c(baseline)`` over benchmark corruptions.

    ``E_c`` is the error (100 - accuracy) on corruption ``c`` averaged over
    severities, read from ``{split}/corruption/<c>`` keys of the two metric maps.
    Only corruptions present in both count; NaN when none are.
    """
    num = den = 0.0
    for name in BENCHMARK_CORRUPTIONS:
        key = corruption_key(split, name)
        if key in model and key in baseline:
            num += 100.0 - model[key]
            den += 100.0 - baseline[key]
    return 100.0 * num / den if den > 0 else math.nan


# Run tags every layer agrees on (MLflow is the source of truth for a study).
TAG_STUDY = "freqstudy.study"  # study name (= experiment name)
TAG_ROLE = "freqstudy.role"  # "study" for the parent run, "trial" for each trial run
TAG_BASELINE = "freqstudy.baseline"  # "true" on the study's baseline trial (free mode, sigma = 0)
TAG_TRIAL_ID = "freqstudy.trial_id"  # Ray Tune trial id (absent for `freqstudy train`)
# A configuration run at several seeds (``replicates: R``): every replicate's run carries the
# configuration id (the Tune id of its first replicate) and its index 0..R-1 (seed = base + index).
TAG_CONFIG_ID = "freqstudy.config_id"
TAG_REPLICATE = "freqstudy.replicate"
# How a configuration's race ended (study.search.races), on every run of the configuration once
# it has: the reason (one of study.search.racing.STOP_REASONS, or "fixed" for plain replicates),
# the seeds it got, and the configuration id the reason names (the dominating one; absent otherwise).
TAG_RACE_REASON = "freqstudy.race.reason"
TAG_RACE_SEEDS = "freqstudy.race.seeds"
TAG_RACE_OTHER = "freqstudy.race.other"
TAG_STATUS = "freqstudy.status"  # finished | diverged | failed | stopped
TAG_FAILURE = "freqstudy.failure_reason"  # one line, when not finished
TAG_MODE = "freqstudy.mode"  # frequency.mode of the trial
TAG_NODE = "freqstudy.node"  # host name / Ray node the trial ran on
TAG_CODE_VERSION = "freqstudy.code_version"
# Learned-mode runs name the form of the learned stem (models.stem.LEARNED_FORM, "energy-share");
# runs logged before the tag existed used the earlier, inert form ("band-gains").
TAG_LEARNED_FORM = "freqstudy.learned_form"
LEGACY_LEARNED_FORM = "band-gains"  # = models.stem.LEGACY_LEARNED_FORM (a test holds them equal)

# The artifact path every trial logs its model under (read back by inspect, the registry, fourier).
MODEL_ARTIFACT = "model"
TAG_DATA = "freqstudy.data_fingerprint"


def learned_form_of(record: Mapping) -> str | None:
    """The learned-mode form a trial record (``params``, ``tags``) was run with: its
    ``freqstudy.learned_form`` tag, else ``band-gains`` (logged before the tag); None outside
    learned mode."""
    params, tags = record.get("params") or {}, record.get("tags") or {}
    if (params.get("frequency.mode") or tags.get(TAG_MODE)) != "learned":
        return None
    return str(tags.get(TAG_LEARNED_FORM) or LEGACY_LEARNED_FORM)


def finite_or_none(v: Any) -> Any:
    """JSON- and CSV-safe: a float that is NaN or infinite becomes None; anything else is kept."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def is_finite_number(v: object) -> bool:
    """A real number (not a bool) that is neither NaN nor infinite."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
