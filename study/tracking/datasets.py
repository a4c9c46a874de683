"""The images a trial saw, as MLflow dataset inputs of its run.

Each trial logs the training subset, the validation split, the test set and the CIFAR-10-C
copies of the last two (``MlflowClient.log_inputs``, what ``mlflow.log_input`` sends), each
with a name, a digest and its size, so the runs table's Dataset column and filter work and
two runs on different images are visibly different. The digests are the fingerprints the
per-image outcomes already carry (``study.analysis.outcomes``: the clean split's
``source``, and for a corrupted copy the same fields that decide whether two runs can be
compared image by image), so equal digests mean comparable runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag

from study.data.cifar10 import fingerprint

CONTEXT_TAG = "mlflow.data.context"  # MLflow's input tag for what a dataset was used for
SOURCE_TYPE = "freqstudy"

# split -> (name of the clean set, name of its corrupted copy, MLflow context)
NAMES = {
    "train": ("CIFAR-10 train", None, "training"),
    "val": ("CIFAR-10 validation", "CIFAR-10-C validation", "validation"),
    "test": ("CIFAR-10 test", "CIFAR-10-C test", "testing"),
}


def _digest(fields: Mapping[str, Any]) -> str:
    """16 hex digits over a fingerprint's fields (canonical JSON)."""
    return hashlib.sha256(json.dumps(dict(fields), sort_keys=True).encode()).hexdigest()[:16]


def dataset_input(name: str, digest: str, rows: int, context: str, source: Mapping[str, Any]) -> DatasetInput:
    """One MLflow dataset input: ``profile`` holds its size (``num_rows``), ``source`` its origin."""
    dataset = Dataset(
        name=name,
        digest=digest,
        source_type=SOURCE_TYPE,
        source=json.dumps(dict(source), sort_keys=True),
        profile=json.dumps({"num_rows": int(rows)}),
    )
    return DatasetInput(dataset, tags=[InputTag(CONTEXT_TAG, context)])


def trial_datasets(config, fingerprints: Mapping[str, Mapping[str, Any]], train: tuple[Any, Any] | None):
    """The dataset inputs of a trial.

    Args:
        config: the ``TrialConfig`` (which corruptions and severities were evaluated).
        fingerprints: ``Outcomes.fingerprints``: ``{split: {source, n, corruption_limit,
            corrupted_copy, corruption_seed}}`` of the evaluated splits.
        train: ``(images, labels)`` the trial trained on ((N, 32, 32, 3) uint8, (N,)), or None.

    Returns:
        ``DatasetInput`` list: the training subset (digest = :func:`study.data.fingerprint` of its
        images and labels, as the outcomes fingerprint their splits), then per evaluated split
        the clean set (digest = its ``source``) and its corrupted copy when one was evaluated
        (digest over the copy's whole fingerprint and the corruptions and severities).
    """
    ev = config.eval
    out = []
    data_source = {"dir": str(config.data.dir) if config.data.dir else "default cache"}
    if train is not None:
        images, labels = train
        name, _, context = NAMES["train"]
        source = {
            **data_source,
            "train_limit": config.data.train_limit,
            "val_fraction": config.data.val_fraction,
            "split_seed": config.data.split_seed,
        }
        out.append(dataset_input(name, fingerprint(images, labels), len(labels), context, source))
    for split in ("val", "test"):
        fp = fingerprints.get(split)
        if fp is None:
            continue
        name, corrupted_name, context = NAMES[split]
        source = {**data_source, "split": split}
        out.append(dataset_input(name, str(fp["source"]), int(fp["n"]), context, source))
        if fp.get("corrupted_copy", "none") == "none" or not ev.corruptions:
            continue
        per_cell = min(int(fp["n"]), int(fp.get("corruption_limit") or fp["n"]))
        copy = {**fp, "corruptions": list(ev.corruptions), "severities": list(ev.severities)}
        rows = per_cell * len(ev.corruptions) * len(ev.severities)
        assert corrupted_name is not None  # val and test have corrupted copies
        out.append(dataset_input(corrupted_name, _digest(copy), rows, context, copy))
    return out


def log_trial_datasets(client, run_id: str, config, outcomes, data) -> None:
    """Log :func:`trial_datasets` on the run (``outcomes`` None: a diverged trial, training set only)."""
    train = None if data is None else (data.train_images, data.train_labels)
    fingerprints = {} if outcomes is None else outcomes.fingerprints
    inputs = trial_datasets(config, fingerprints, train)
    if inputs:
        client.log_inputs(run_id, datasets=inputs)
