"""The GPU fast path, checked where it can be on a CPU: no host synchronisation
inside a training epoch or an evaluation pass (seen at the dispatcher, so it
holds for any device), and ``torch.compile`` giving the eager trial's numbers."""

from __future__ import annotations

import collections
import warnings

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from models.stem import initial_alpha
from study import metrics as M
from study.config import TrialConfig
from study.data import DeviceLoader
from study.engine.evaluate import EvalSettings, correct_predictions, eval_loader
from study.engine.trial import build_model, run_trial, train_epoch
from tests.unit.test_trial import tiny, write_cifar

# Operators whose result the host must read on a CUDA device: a scalar read
# (.item(), float(), bool(), if tensor:), data-dependent output sizes, and
# boolean-mask indexing (a hidden nonzero).
SYNCING_OPS = {
    "_local_scalar_dense",
    "item",
    "is_nonzero",
    "equal",
    "nonzero",
    "masked_select",
    "unique",
    "_unique",
    "_unique2",
    "unique_consecutive",
    "unique_dim",
    "bincount",
    "repeat_interleave",
}


class SyncProbe(TorchDispatchMode):
    """Counts, by name, every dispatched operator that would wait for the device."""

    def __init__(self):
        super().__init__()
        self.seen: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._overloadpacket.__name__
        if name in SYNCING_OPS:
            self.seen[name] += 1
        elif name in ("index", "index_put", "index_put_") and any(
            i is not None and i.dtype == torch.bool for i in args[1]
        ):
            self.seen[f"{name} with a bool mask"] += 1
        return func(*args, **(kwargs or {}))


class _SyncInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        float(grad.sum())  # a host read during backward
        return grad


def test_the_probe_sees_scalar_reads_masks_and_backward():
    x = torch.randn(8, requires_grad=True)
    with SyncProbe() as probe:
        float(x.detach().sum())
        _ = x[x > 0]
        _SyncInBackward.apply(x).sum().backward()
    assert probe.seen["_local_scalar_dense"] == 2
    assert probe.seen["index with a bool mask"] == 1


def _batches(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


@pytest.mark.parametrize("mode,sigma", [("free", 0.0), ("fixed", 0.2), ("learned", 0.2)])
def test_an_epoch_and_an_evaluation_never_wait_for_the_device(mode, sigma):
    """The trial's epoch (augmentation, bf16 autocast, channels_last, fused SGD,
    proportion loss, perturbation) and its evaluation dispatch no syncing operator."""
    config = TrialConfig.from_flat(
        {
            "model.width": 8,
            "frequency.mode": mode,
            "frequency.perturbation": sigma,
            "frequency.proportion_weight": 0.1 if mode == "learned" else 0.0,
            "train.batch_size": 16,
            "device": "cpu",
        }
    )
    images, labels = _batches()
    model = build_model(config).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    loader = DeviceLoader(images, labels, batch_size=16, device="cpu", train=True, channels_last=True)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    with SyncProbe() as probe:
        loss_sum, seen = train_epoch(model, model, loader, optimizer, scheduler, criterion, torch.bfloat16)
    assert seen == 64 and loss_sum.dim() == 0
    assert not probe.seen, f"host syncs inside the epoch: {dict(probe.seen)}"

    settings = EvalSettings(
        device=torch.device("cpu"), batch_size=24, channels_last=True, amp_dtype=torch.bfloat16
    )
    model.eval()
    with SyncProbe() as probe:
        correct = correct_predictions(model, eval_loader(images, labels, settings), settings)
    assert correct.shape == (64,)
    assert not probe.seen, f"host syncs inside the evaluation: {dict(probe.seen)}"


def test_compiled_trial_gives_the_eager_trials_numbers(tmp_path, monkeypatch):
    """``train.compile=true`` runs the whole trial through inductor (stem included:
    no complex tensors, no fallback) and lands on the eager trial's losses."""
    import torch._inductor.config as inductor_config

    # Inductor draws its own random numbers unless told to use eager's; with the
    # same draws the perturbation is identical and the two runs are comparable.
    monkeypatch.setattr(inductor_config, "fallback_random", True)
    monkeypatch.setenv("FREQSTUDY_HOME", str(tmp_path / "home"))
    data_dir = write_cifar(tmp_path / "cifar")
    # One step per epoch (160 training images, batch 128). The first step sees the
    # same weights and draws; after it, rounding differences flip a few ReLUs near
    # zero (~1e-3 of a gradient's norm), which grows with every further step.
    flat = {
        "frequency.mode": "learned",
        "frequency.perturbation": 0.2,
        "frequency.proportion_weight": 0.1,
        "train.epochs": 2,
        "train.batch_size": 128,
        "eval.test": True,
    }
    eager = run_trial(tiny(data_dir, **flat))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = run_trial(tiny(data_dir, **flat, **{"train.compile": True}))
    assert compiled.status == "finished"
    complex_fallbacks = [w for w in caught if "complex" in str(w.message)]
    assert not complex_fallbacks, complex_fallbacks[0].message
    first, second = (row[M.TRAIN_LOSS] for row in eager.history)
    assert compiled.history[0][M.TRAIN_LOSS] == pytest.approx(first, rel=1e-5)
    assert compiled.history[1][M.TRAIN_LOSS] == pytest.approx(second, rel=1e-3)
    # The first step's move of alpha (the frequency gate), the same to rounding.
    start = initial_alpha(eager.alpha_history.shape[1]).numpy()
    moved_eager, moved_compiled = eager.alpha_history[0] - start, compiled.alpha_history[0] - start
    assert np.linalg.norm(moved_compiled - moved_eager) <= 0.05 * np.linalg.norm(moved_eager)
    for key in (M.VAL_CLEAN_ACC, M.TEST_CLEAN_ACC):
        assert (
            abs(compiled.metrics[key] - eager.metrics[key]) <= 100 / 39 + 1e-6
        )  # one image at most (val 39, test 50)


def test_cuda_devices_come_back_indexed_for_set_device(monkeypatch):
    """``torch.cuda.set_device(torch.device("cuda"))`` raises; the trial and the bench
    call it, so every CUDA device they resolve carries its index. (CUDA is absent
    here: availability and the current index are stood in for at torch.cuda.)"""
    from torch.cuda._utils import _get_device_index  # what set_device runs first

    from study.engine.device import resolve_device

    with pytest.raises(ValueError, match="specified index"):
        _get_device_index(torch.device("cuda"))  # the failure being guarded against
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert resolve_device("auto") == torch.device("cuda", 2)
    assert resolve_device("cuda") == torch.device("cuda", 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert _get_device_index(resolve_device("cuda")) == 2
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(
        ValueError,
        match=r"^config device: 'cuda:3', but this process sees 3 GPU\(s\); allowed here: cuda:0 to cuda:2",
    ):
        resolve_device("cuda:3")


def test_cuda_without_cuda_is_a_one_line_error_naming_the_field(monkeypatch):
    from study.engine.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^bench --device: 'cuda' asked for, but CUDA is not available"):
        resolve_device("cuda", field="bench --device")
