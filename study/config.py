"""The trial config: one frozen, typed tree, validated where it is built.

One concern in one file, over 500 lines: the tree's sections are read together by every
validation, override and flattening rule, and splitting them would scatter the one schema.

Every knob of a trial lives here, with the reason beside its default. The tree
is built from nested mappings (a YAML file), from ``section.key=value``
overrides (the command line), or from the flat dotted form that search spaces
and Ray use (``{"frequency.mode": "fixed", ...}``). Unknown keys, wrong types
and out-of-range values raise ``ValueError`` naming the dotted key and what is
allowed, before any data is touched.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from models.settings import MODES, FrequencySettings, SettingError
from study import limits, yamlfiles
from study.metrics import ALL_CORRUPTIONS

__all__ = ["MODES", "ConfigError", "FrequencySettings", "TrialConfig", "known_keys"]

SCHEDULES = ("cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16")


def default_home() -> Path:
    """Where freqstudy keeps its local MLflow store, studies and caches."""
    return Path(os.environ.get("FREQSTUDY_HOME", Path.home() / ".freqstudy")).expanduser()


def default_data_dir() -> str:
    return str(Path(os.environ.get("FREQSTUDY_DATA", default_home() / "data")).expanduser())


class ConfigError(ValueError):
    """A config value that is not allowed: ``key`` is the dotted key, ``problem`` what is wrong.

    Callers that point at a file position (search spaces) read ``key`` rather
    than parsing the message.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config {key}: {problem}")
        self.key = key
        self.problem = problem


def _fail(key: str, message: str) -> None:
    raise ConfigError(key, message)


def _check_range(key: str, value: float, lo: float, hi: float, *, lo_open=False, hi_open=False) -> None:
    """``value`` in the interval (an infinite bound means unbounded); never NaN or infinite."""
    lb, rb = ("(" if lo_open or lo == -math.inf else "["), (")" if hi_open or hi == math.inf else "]")
    if not math.isfinite(value):
        _fail(key, f"{value!r} is not a finite number; allowed a finite number in {lb}{lo}, {hi}{rb}")
    below = value <= lo if lo_open else value < lo
    above = value >= hi if hi_open else value > hi
    if below or above:
        _fail(key, f"{value!r} is out of range; allowed {lb}{lo}, {hi}{rb}")


# Seeds reach numpy's and torch's generators, which take 0 .. 2**32 - 1 (torch: 2**64 - 1).
MAX_SEED = 2**32 - 1


def _check_seed(key: str, value: int) -> None:
    if not 0 <= value <= MAX_SEED:
        _fail(key, f"{value} is out of range; allowed integers 0..{MAX_SEED} (2**32 - 1)")


def _check_choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        _fail(key, f"{value!r} is not one of {', '.join(map(str, choices))}")


def _check_weights(model: ModelConfig) -> None:
    """The network's weights (4 bytes per parameter) must fit in the machine's memory."""
    memory = limits.machine_memory_bytes()
    k, classes = model.stem_kernel, model.num_classes

    def weights(width: int, num_classes: int) -> int:
        return limits.WEIGHT_BYTES * limits.resnet18_parameters(width, k, num_classes)

    need = weights(model.width, classes)
    if need <= memory:
        return
    if weights(model.width, 10) <= memory:  # the classifier is what does not fit
        top = limits.largest(lambda c: weights(model.width, c) <= memory, 2**62)
        key, value, allowed = "model.num_classes", classes, f"2..{top}"
    else:
        top = limits.largest(lambda w: weights(w, classes) <= memory, 2**40)
        key, value, allowed = "model.width", model.width, f"1..{top}" if top else "none"
    _fail(
        key,
        f"{value} needs {limits.format_bytes(need)} for the network's weights alone "
        f"({need // limits.WEIGHT_BYTES:.3g} parameters); {limits.memory_note(memory)}: allowed {allowed}",
    )


def _check_batches(config: TrialConfig) -> None:
    """Training (weights, gradients, momentum and the batch's activations) and evaluation
    batches must fit in the machine's memory: lower bounds from ``study.limits``."""
    memory = limits.machine_memory_bytes()
    m = config.model
    params = limits.resnet18_parameters(m.width, m.stem_kernel, m.num_classes)
    state = limits.TRAIN_STATE_BYTES * params
    note = limits.memory_note(memory)
    if state > memory:
        top = limits.largest(
            lambda w: (
                limits.TRAIN_STATE_BYTES * limits.resnet18_parameters(w, m.stem_kernel, m.num_classes)
                <= memory
            ),
            2**40,
        )
        _fail(
            "model.width",
            f"{m.width}: training holds weights, gradients and momentum, {limits.format_bytes(state)}; "
            f"{note}: allowed 1..{top} for training",
        )
    for key, batch, fixed, per_image in (
        ("train.batch_size", config.train.batch_size, state, limits.train_bytes_per_image(m.width)),
        (
            "eval.batch_size",
            config.eval.batch_size,
            limits.WEIGHT_BYTES * params,
            limits.eval_bytes_per_image(m.width),
        ),
    ):
        need = fixed + batch * per_image
        if need > memory:
            top = max(0, (memory - fixed) // per_image)
            _fail(
                key,
                f"{batch} needs at least {limits.format_bytes(need)} at model.width {m.width} "
                f"({limits.format_bytes(per_image)} per image); {note}: allowed 1..{top}",
            )


@dataclass(frozen=True)
class DataConfig:
    dir: str = field(default_factory=default_data_dir)  # folder holding cifar-10-batches-py/
    val_fraction: float = 0.1  # held out of train, stratified: objectives never see test
    split_seed: int = 0  # fixed apart from `seed` so every trial of a study shares one val set
    train_limit: int | None = None  # first N training images, for quick runs
    augment: bool = True  # random crop (pad 4) + horizontal flip, on the device
    download: bool = True  # fetch the official archive when the folder is missing

    def __post_init__(self) -> None:
        _check_range("data.val_fraction", self.val_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
        _check_seed("data.split_seed", self.split_seed)
        if self.train_limit is not None and not 10 <= self.train_limit <= limits.CIFAR10_TRAIN_IMAGES:
            _fail(
                "data.train_limit",
                f"{self.train_limit} is not allowed; allowed 10..{limits.CIFAR10_TRAIN_IMAGES} "
                "(CIFAR-10's training images) or null",
            )


@dataclass(frozen=True)
class ModelConfig:
    width: int = 64  # channels of the first stage; 64 is ResNet-18
    stem_kernel: int = 3  # k; 5 and 7 give a finer frequency grid
    num_classes: int = 10

    def __post_init__(self) -> None:
        if self.width < 1:
            _fail("model.width", f"{self.width} must be a positive integer")
        _check_choice("model.stem_kernel", self.stem_kernel, (3, 5, 7))
        if self.num_classes < 2:
            _fail("model.num_classes", f"{self.num_classes} must be >= 2")
        _check_weights(self)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30  # enough for ~94% with this recipe on full CIFAR-10
    batch_size: int = 512  # large batches keep a GPU busy; lr is set for this size
    lr: float = 0.2  # peak learning rate for batch 512 (0.1 per 256, linear scaling)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # the usual CIFAR ResNet value
    # Learned mode: the alpha logits' learning rate is lr x this (no weight decay on them, which
    # would pull every alpha to 1/2 = tau). One logit per filter gets a gradient summed over the
    # whole layer's effect, far smaller than a kernel's; docs/method.md has the measured reason.
    alpha_lr_multiplier: float = 10.0
    schedule: str = "onecycle"  # onecycle: linear warm-up then cosine down; cosine: cosine from the start
    warmup_fraction: float = 0.15  # share of steps spent warming up (onecycle)
    label_smoothing: float = 0.0
    compile: bool = False  # torch.compile: 10-19% on GPU, minutes to compile
    checkpoint_every: int = 1  # epochs between checkpoints; 0 disables
    # ...and at least this long since the last one (the last epoch always gets one):
    # a full checkpoint is ~90 MB and ~0.2-0.3 s to write and hand to Tune, a
    # third of a GPU epoch, while a crash costs at most this much work.
    checkpoint_min_seconds: float = 30.0
    # An epoch whose mean loss exceeds divergence_factor x max(first epoch's loss, ln num_classes)
    # ends the trial as diverged (a fresh network starts near ln num_classes; 1000x that is no
    # longer training). Non-finite loss or first-layer statistics always do.
    divergence_factor: float = 1000.0

    def __post_init__(self) -> None:
        if not 1 <= self.epochs <= limits.MAX_EPOCHS:
            _fail("train.epochs", f"{self.epochs} is not allowed; allowed 1..{limits.MAX_EPOCHS}")
        if not 1 <= self.batch_size <= limits.CIFAR10_TRAIN_IMAGES:
            _fail(
                "train.batch_size",
                f"{self.batch_size} is not allowed; allowed 1..{limits.CIFAR10_TRAIN_IMAGES} "
                "(CIFAR-10's training images)",
            )
        _check_range("train.lr", self.lr, 0.0, math.inf, lo_open=True)
        _check_range("train.momentum", self.momentum, 0.0, 1.0, hi_open=True)
        _check_range("train.weight_decay", self.weight_decay, 0.0, math.inf)
        _check_range("train.alpha_lr_multiplier", self.alpha_lr_multiplier, 0.0, math.inf)
        _check_choice("train.schedule", self.schedule, SCHEDULES)
        _check_range("train.warmup_fraction", self.warmup_fraction, 0.0, 1.0, hi_open=True)
        _check_range("train.label_smoothing", self.label_smoothing, 0.0, 1.0, hi_open=True)
        if self.checkpoint_every < 0:
            _fail("train.checkpoint_every", f"{self.checkpoint_every} must be >= 0")
        _check_range("train.checkpoint_min_seconds", self.checkpoint_min_seconds, 0.0, math.inf)
        _check_range("train.divergence_factor", self.divergence_factor, 1.0, math.inf)


@dataclass(frozen=True)
class EvalConfig:
    corruption_limit: int | None = None  # images per corruption and severity, for quick runs
    batch_size: int = 2000  # inference batches; large is fast on a GPU
    corruptions: tuple[str, ...] = ALL_CORRUPTIONS
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    cifar10c_dir: str | None = None  # official CIFAR-10-C .npy files; generated when absent
    frost_dir: str | None = None  # frost textures; default: the ones shipped in the package
    corruption_seed: int = 0  # seed of the generated corrupted copies (shared by a study)
    test: bool = True  # also report test metrics (never used for selection)
    # Fourier heat map (study.analysis.fourier) on the first N test images: 514 forward passes
    # over them (514·N images, ~0.7 of a CIFAR-10-C pass for N = 1000); 0 = off.
    fourier_images: int = 0
    fourier_eps: float = 4.0  # L2 norm of the basis image in [0, 1] pixel units (Yin et al.'s CIFAR value)

    def __post_init__(self) -> None:
        if (
            self.corruption_limit is not None
            and not 1 <= self.corruption_limit <= limits.CIFAR10_TRAIN_IMAGES
        ):
            _fail(
                "eval.corruption_limit",
                f"{self.corruption_limit} is not allowed; allowed 1..{limits.CIFAR10_TRAIN_IMAGES} "
                "(the largest split CIFAR-10 has) or null",
            )
        if not 0 <= self.fourier_images <= limits.CIFAR10_TEST_IMAGES:
            _fail(
                "eval.fourier_images",
                f"{self.fourier_images} is not allowed; allowed 0..{limits.CIFAR10_TEST_IMAGES} "
                "(CIFAR-10's test images; 0 = no Fourier heat map)",
            )
        if self.fourier_images > 0 and not self.test:
            _fail("eval.fourier_images", "the heat map is measured on test images; it needs eval.test: true")
        _check_range("eval.fourier_eps", self.fourier_eps, 0.0, math.inf, lo_open=True, hi_open=True)
        if self.batch_size < 1:
            _fail("eval.batch_size", f"{self.batch_size} must be >= 1")
        _check_seed("eval.corruption_seed", self.corruption_seed)
        for name in self.corruptions:
            if name not in ALL_CORRUPTIONS:
                _fail(
                    "eval.corruptions",
                    f"{name!r} is not a CIFAR-10-C corruption; allowed {', '.join(ALL_CORRUPTIONS)}",
                )
        if len(set(self.corruptions)) != len(self.corruptions):
            _fail("eval.corruptions", "names must not repeat")
        for s in self.severities:
            if s not in (1, 2, 3, 4, 5):
                _fail("eval.severities", f"{s!r} is not a severity; allowed 1..5")
        if self.corruptions and not self.severities:
            _fail(
                "eval.severities", "empty, but corruptions are evaluated; allowed a non-empty subset of 1..5"
            )
        if len(set(self.severities)) != len(self.severities):
            _fail("eval.severities", f"{list(self.severities)}: severities must not repeat")


@dataclass(frozen=True)
class TrackingConfig:
    uri: str | None = None  # an `mlflow server`; none = local store behind an embedded server
    experiment: str = "freqstudy"  # MLflow experiment = study
    run_name: str | None = None
    log_model: bool = True

    def __post_init__(self) -> None:
        if not self.experiment:
            _fail("tracking.experiment", "must be a non-empty name")


@dataclass(frozen=True)
class TrialConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    frequency: FrequencySettings = field(
        default_factory=FrequencySettings
    )  # models.settings: the stem's own type
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 0  # everything random in a trial follows it
    device: str = "auto"  # auto = cuda when available, else cpu
    precision: str = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU

    def __post_init__(self) -> None:
        if not (self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:[0-9]+", self.device)):
            _fail(
                "device",
                f"{self.device!r} is not one of auto, cpu, cuda, cuda:N (N a non-negative integer)",
            )
        _check_seed("seed", self.seed)
        _check_choice("precision", self.precision, PRECISIONS)
        # The cutoff must leave both bands non-empty on this kernel's coarse grid.
        from models.spectral import check_cutoff

        try:
            check_cutoff(self.model.stem_kernel, self.frequency.cutoff)
        except ValueError as e:
            _fail("frequency.cutoff", str(e))
        _check_batches(self)

    # -- building -----------------------------------------------------------------

    @classmethod
    def from_dict(cls, tree: Mapping[str, Any] | None) -> TrialConfig:
        """Nested mapping (a parsed YAML file) -> config; unknown keys are errors."""
        return _build(cls, tree or {}, prefix="")

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> TrialConfig:
        """``{"frequency.mode": "fixed", "seed": 3}`` -> config (the Ray boundary)."""
        return cls.from_dict(unflatten(flat))

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()
    ) -> TrialConfig:
        """A YAML file (or none: the defaults) plus ``section.key=value`` overrides."""
        tree: dict[str, Any] = {}
        if path is not None:
            try:
                loaded = yamlfiles.load_file(path, "config file")
            except FileNotFoundError:
                raise ValueError(f"config file {path}: not found") from None
            if loaded is not None and not isinstance(loaded, dict):
                raise ValueError(f"config file {path}: top level must be a mapping of sections")
            tree = loaded or {}
        flat = flatten_tree(tree)
        flat.update(parse_overrides(overrides))
        return cls.from_flat(flat)

    # -- views ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_flat(self) -> dict[str, Any]:
        """Dotted keys with plain values: MLflow params, Ray param spaces, hashing."""
        return flatten_tree(self.to_dict())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **flat: Any) -> TrialConfig:
        """A copy with dotted keys changed: ``cfg.replace(**{"train.epochs": 2})``."""
        merged = self.to_flat()
        for key in flat:
            if key not in merged:
                _fail(key, f"unknown key; known keys: {', '.join(sorted(merged))}")
        merged.update(flat)
        return TrialConfig.from_flat(merged)


def known_keys() -> list[str]:
    """Every dotted key a config accepts."""
    return sorted(_flat_keys(TrialConfig))


def _flat_keys(cls: type, prefix: str = "") -> list[str]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            out += _flat_keys(t, prefix + f.name + ".")
        else:
            out.append(prefix + f.name)
    return out


def flatten_tree(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_tree(v, key + "."))
        else:
            out[key] = v
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        parts = str(key).split(".")
        node = tree
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                _fail(key, f"{part!r} is a value, not a section")
            node = nxt
        node[parts[-1]] = value
    return tree


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["train.lr=0.1", "eval.corruptions=[fog,frost]"]`` -> dotted dict (YAML-typed values)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r}: expected section.key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key in out:
            raise ValueError(f"override {key}: given twice ({key}={out[key]!r} and {item!r}); give it once")
        try:
            out[key] = yamlfiles.safe_load(raw) if raw.strip() != "" else None
        except (yamlfiles.LimitError, yamlfiles.DuplicateKeyError) as e:
            raise ValueError(f"override {key}: {yamlfiles.error_line(e)[1]}") from None
        except yaml.YAMLError:
            out[key] = raw
    return out


def _build(cls: type, tree: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(tree, Mapping):
        _fail(prefix.rstrip(".") or "<root>", f"expected a mapping of keys, got {type(tree).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    for key in tree:
        if key not in names:
            where = prefix.rstrip(".") or "top level"
            _fail(prefix + str(key), f"unknown key; allowed in {where}: {', '.join(sorted(names))}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in tree:
            continue
        t = hints[f.name]
        key = prefix + f.name
        if dataclasses.is_dataclass(t):
            kwargs[f.name] = _build(t, tree[f.name] or {}, key + ".")
        else:
            kwargs[f.name] = _coerce(key, tree[f.name], t)
    try:
        return cls(**kwargs)
    except SettingError as e:  # models' settings name their field; the config names the dotted key
        raise ConfigError(prefix + e.name, e.problem) from None


def _coerce(key: str, value: Any, t: Any) -> Any:
    """Check ``value`` against the annotation ``t``; widen int->float, list->tuple."""
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0])
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            _fail(key, f"expected a list, got {value!r}")
        return tuple(_coerce(key, v, args[0]) for v in value)
    if t is bool:
        if isinstance(value, bool):
            return value
        _fail(key, f"expected true or false, got {value!r}")
    if t is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        _fail(key, f"expected an integer, got {value!r}")
    if t is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value) if isinstance(value, float) or abs(value) < 2**1000 else math.inf
        elif isinstance(value, str):
            # YAML 1.1 reads "1e6" and "1e-3" (no dot) as strings.
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            _fail(key, f"expected a number, got {value!r}")
        # .inf, -.inf and .nan pass here: each float key's range check refuses them, naming the range.
        return number
    if t is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        _fail(key, f"expected a string, got {value!r}")
    raise AssertionError(f"unhandled annotation {t} for {key}")


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj
