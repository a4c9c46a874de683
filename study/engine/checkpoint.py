"""Trial checkpoints: everything needed to continue a trial at the next epoch.

A checkpoint holds the model, optimiser and scheduler states, the number of
epochs completed, the per-epoch history so far, and every random-number state
a trial consumes (torch CPU and CUDA, numpy, Python), so a trial resumed on the
CPU reproduces the uninterrupted run bit for bit. Files are written to a
temporary name beside the target and moved into place with ``os.replace``: a
reader never sees half a checkpoint, even when a trial is killed mid-write.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from study.files import write_atomic

CHECKPOINT_VERSION = 1


def checkpoint_path(directory: str | os.PathLike, epoch: int) -> Path:
    """``<directory>/epoch-0003.pt`` for ``epoch`` 3 (1-based, epochs completed)."""
    return Path(directory) / f"epoch-{epoch:04d}.pt"


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The checkpoint with the most epochs completed in ``directory``, or None."""
    found = sorted(Path(directory).glob("epoch-*.pt")) if Path(directory).is_dir() else []
    return found[-1] if found else None


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The RNG states a resumed trial needs; on CUDA only the trial's own device,
    so a checkpoint resumes in a process that sees fewer GPUs, and a CPU trial
    never creates a CUDA context."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # As plain values and a tensor, so the weights-only unpickler reads it.
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "python": random.getstate(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


# Per-group flags that choose the optimiser's kernels, not its state.
_IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable", "differentiable")


def restore_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a saved optimiser state, keeping the kernels chosen for this device.

    ``load_state_dict`` takes each group's settings from the file, ``fused``
    among them, so a checkpoint written on a CPU would resume a CUDA trial on
    the slower foreach path (and a CUDA one a CPU trial on the fused CPU kernel).
    """
    chosen = [{k: g[k] for k in _IMPLEMENTATION_FLAGS if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flags in zip(optimizer.param_groups, chosen):
        group.update(flags)


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    history: list[dict[str, float]],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically; returns its path.

    Args:
        path: target file; its folder is created.
        epoch: epochs completed (1-based), so a resumed trial starts at ``epoch + 1``.
        history: per-epoch metric dicts reported so far.
        extra: anything else the trial needs back (e.g. the alpha history).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "version": CHECKPOINT_VERSION,
        "epoch": int(epoch),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": list(history),
        "rng": capture_rng_state(next(model.parameters()).device),
        "extra": dict(extra or {}),
    }
    return write_atomic(path, lambda f: torch.save(payload, f), fsync=True)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU).

    Raises:
        ValueError: the file is missing or is not a freqstudy checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path}: not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one clear line
        raise ValueError(
            f"checkpoint {path}: not a readable freqstudy checkpoint ({type(e).__name__}: {e})".splitlines()[
                0
            ]
        ) from None
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint {path}: not a freqstudy checkpoint (version {CHECKPOINT_VERSION} expected)"
        )
    return payload


def load_model_state(model: torch.nn.Module, state: dict[str, Any], path: str | os.PathLike) -> None:
    """Load a checkpoint's model weights into ``model``, which must be the same network.

    Raises:
        ValueError: one line naming the checkpoint and the first parameter whose
            shape differs (a checkpoint of another width, kernel or class count),
            or the first one missing on either side (another mode of the stem).
    """
    own = model.state_dict()
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path}: holds no model weights")
    for key, value in state.items():
        if key not in own:
            raise ValueError(
                f"checkpoint {path}: parameter {key} is not in this config's model; "
                "resume with the config the checkpoint was written with"
            )
        have = tuple(getattr(value, "shape", ()))
        want = tuple(own[key].shape)
        if have != want:
            raise ValueError(
                f"checkpoint {path}: parameter {key} has shape {have}, this config's model has {want}; "
                "resume with the config the checkpoint was written with"
            )
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(
            f"checkpoint {path}: lacks parameter {missing[0]} of this config's model"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + "; resume with the config the checkpoint was written with"
        )
    model.load_state_dict(state)


def _numpy_state_to_plain(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
