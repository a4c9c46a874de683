"""The model folder a trial logs: three files no loader runs code from.

``weights.safetensors`` (the state dict), ``config.yaml`` (the trial config the network
is rebuilt from) and ``freqstudy-model.json`` (format, sha256 of the weights and of the
config, input and output). A manifest written before the config was covered (no
``config_sha256``) is read only where the run's logged params vouch for the config.
Pure file format (torch and safetensors, no MLflow): :func:`write_model` and
:func:`read_model` here, :func:`pickle_format` to refuse a folder that holds a file other
tools would unpickle. ``study.tracking.models`` logs and downloads such folders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from study import limits, yamlfiles
from study.config import TrialConfig
from study.engine.trial import build_model
from study.files import write_text_atomic

MODEL_FORMAT = "freqstudy.safetensors/1"
MODEL_MANIFEST = "freqstudy-model.json"
MODEL_WEIGHTS = "weights.safetensors"
MODEL_CONFIG = "config.yaml"
MODEL_FILES = (MODEL_MANIFEST, MODEL_WEIGHTS, MODEL_CONFIG)
# Files that other tools load by unpickling (torch.save, MLflow's pytorch and pyfunc flavours,
# joblib, cloudpickle...), and MLflow's model descriptor that sends a loader to them.
PICKLE_SUFFIXES = (
    ".pt",
    ".pth",
    ".pt2",
    ".pkl",
    ".pickle",
    ".bin",
    ".ckpt",
    ".joblib",
    ".dill",
    ".cloudpickle",
)
MLFLOW_MODEL_FILE = "MLmodel"
# The manifest is a few hundred bytes; a config is YAML text (study.yamlfiles' bound); weights
# must fit in the machine's memory to be loaded at all. Sizes are checked before any read.
MAX_MANIFEST_BYTES = 64 << 10
MODEL_INPUT = "float32 (B, 3, 32, 32), normalised with the CIFAR-10 mean and std (study.data)"
MODEL_OUTPUT = "float32 (B, classes) logits"


def model_manifest(weights_sha256: str, config_sha256: str) -> dict[str, Any]:
    """The ``freqstudy-model.json`` document of a model folder."""
    return {
        "format": MODEL_FORMAT,
        "weights": MODEL_WEIGHTS,
        "config": MODEL_CONFIG,
        "weights_sha256": weights_sha256,
        "config_sha256": config_sha256,
        "torch": torch.__version__,
        "input": MODEL_INPUT,
        "output": MODEL_OUTPUT,
    }


def write_model(out: Path, model: torch.nn.Module, config: TrialConfig) -> list[Path]:
    """Write ``model`` as a freqstudy model folder: ``weights.safetensors`` (the state dict,
    CPU copies), ``config.yaml`` (the trial config it is rebuilt from) and ``freqstudy-model.json``.
    """
    out.mkdir(parents=True, exist_ok=True)
    # Copies: safetensors wants contiguous tensors that share no storage.
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    weights = out / MODEL_WEIGHTS
    save_file(state, str(weights), metadata={"format": MODEL_FORMAT})
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    text = config.to_yaml()
    config_digest = hashlib.sha256(text.encode()).hexdigest()
    return [
        weights,
        write_text_atomic(out / MODEL_CONFIG, text),
        write_text_atomic(out / MODEL_MANIFEST, json.dumps(model_manifest(digest, config_digest), indent=2)),
    ]


def param_text(value: Any) -> str:
    """A config value as MLflow holds it among a run's params (lists comma-joined, None "null")."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(x) for x in value)
    return "null" if value is None else str(value)


def check_against_params(config: TrialConfig, params: Mapping[str, str], *, source: str) -> int:
    """``config`` agrees with a run's logged params on every key both hold; returns how many
    keys were compared.

    Raises:
        ValueError: one line naming the first key that differs and both values.
    """
    compared = 0
    for key, value in sorted(config.to_flat().items()):
        if key not in params:
            continue  # a key added after the run was logged
        compared += 1
        if param_text(value) != params[key]:
            raise ValueError(
                f"{source}{MODEL_CONFIG} says {key}={param_text(value)} but the run's params say "
                f"{key}={params[key]}; the model's config was edited after it was logged"
            )
    return compared


def read_model(folder: Path, *, source: str, params: Mapping[str, str] | None = None) -> torch.nn.Module:
    """The network of a model folder written by :func:`write_model`, on the CPU in eval mode.

    Only JSON, YAML (safe loader) and safetensors are read: nothing in the folder can run code.
    The weights and ``config.yaml`` must match the manifest's sha256s; with ``params`` (the
    run's logged params) the config must also agree with them key by key. A manifest without
    ``config_sha256`` (a model logged before the config was covered) is read only when
    ``params`` vouch for the config.

    Raises:
        ValueError: one line naming ``source`` and what is wrong.
    """
    for name, most in (
        (MODEL_MANIFEST, MAX_MANIFEST_BYTES),
        (MODEL_CONFIG, yamlfiles.MAX_BYTES),
        (MODEL_WEIGHTS, limits.machine_memory_bytes()),
    ):
        _check_size(folder / name, most, source=source)
    try:
        manifest = json.loads((folder / MODEL_MANIFEST).read_text())
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: '[[[[...' too deep
        reason = str(e) or type(e).__name__
        raise ValueError(f"{source}: {MODEL_MANIFEST} unreadable ({reason})".splitlines()[0]) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MODEL_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ValueError(f"{source}: {MODEL_MANIFEST} declares format {found!r}; expected {MODEL_FORMAT!r}")
    weights = folder / MODEL_WEIGHTS
    try:
        sha = hashlib.sha256()
        with open(weights, "rb") as f:  # in chunks: the weights are never held twice
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha.update(chunk)
        digest = sha.hexdigest()
    except OSError as e:
        raise ValueError(f"{source}: {MODEL_WEIGHTS} unreadable ({e})".splitlines()[0]) from None
    if manifest.get("weights_sha256") != digest:
        raise ValueError(f"{source}: {MODEL_WEIGHTS} does not match the sha256 in {MODEL_MANIFEST}")
    try:  # safetensors parses only its JSON header and raw tensors: nothing runs
        state = load_file(str(weights), device="cpu")
    except (OSError, RuntimeError, ValueError, SafetensorError) as e:
        raise ValueError(
            f"{source}: {MODEL_WEIGHTS} is not a safetensors file ({e})".splitlines()[0]
        ) from None
    try:
        config_bytes = (folder / MODEL_CONFIG).read_bytes()
    except OSError as e:
        raise ValueError(f"{source}: {MODEL_CONFIG} unreadable ({e})".splitlines()[0]) from None
    expected = manifest.get("config_sha256")
    if expected is None and params is None:
        raise ValueError(
            f"{source}: {MODEL_MANIFEST} has no config_sha256 (a model logged before {MODEL_CONFIG} "
            "was covered) and no run's params to check the config against; load it through its run"
        )
    if expected is not None and expected != hashlib.sha256(config_bytes).hexdigest():
        raise ValueError(
            f"{source}: {MODEL_CONFIG} does not match the sha256 in {MODEL_MANIFEST} "
            "(the config was edited after the model was logged)"
        )
    try:
        config = TrialConfig.from_yaml(folder / MODEL_CONFIG)
    except ValueError as e:
        raise ValueError(f"{source}: {MODEL_CONFIG}: {e}".splitlines()[0]) from None
    if params is not None:
        compared = check_against_params(config, params, source=f"{source}: ")
        if expected is None and not compared:
            raise ValueError(
                f"{source}: {MODEL_MANIFEST} has no config_sha256 (a model logged before {MODEL_CONFIG} "
                "was covered) and the run logged no params to check the config against"
            )
    try:
        model = build_model(config)
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError, SafetensorError) as e:  # shapes, names, a bad file
        raise ValueError(
            f"{source}: {MODEL_WEIGHTS} does not fit {MODEL_CONFIG} ({e})".splitlines()[0]
        ) from None
    return model.eval()


def _check_size(path: Path, most: int, *, source: str) -> None:
    """``path`` is a regular file of at most ``most`` bytes (from its size, before a read)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ValueError(f"{source}: {path.name} unreadable ({e.strerror or e})") from None
    if not path.is_file():
        raise ValueError(f"{source}: {path.name} is not a regular file")
    if size > most:
        raise ValueError(
            f"{source}: {path.name} is {limits.format_bytes(size)}; "
            f"at most {limits.format_bytes(most)} is read"
        )


def pickle_format(files: list[str]) -> str | None:
    """The first pickle-format file of ``files`` (a pickle before an ``MLmodel``), or None."""
    names = [(path, path.rsplit("/", 1)[-1]) for path in files]
    pickles = [path for path, name in names if name.lower().endswith(PICKLE_SUFFIXES)]
    descriptors = [path for path, name in names if name == MLFLOW_MODEL_FILE]
    found = pickles + descriptors
    return found[0] if found else None
