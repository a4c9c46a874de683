"""Fidelity of all 19 corruptions against outputs of the original CIFAR-10-C
algorithms (``shared/data/cifar10c-reference/``) on the real test images
0..499 of ``shared/data/cifar10-subset/``.

Deterministic corruptions must equal the reference arrays to ±1 on every
value (images 0..99). Random ones must match in distribution: the mean
absolute change from clean per severity within 6% of the reference's, and
the other statistics of ``stats_test0-499.json`` close (looser bounds).
"""

from __future__ import annotations

import importlib
import json
import pickle

import numpy as np
import pytest

from study import corruptions
from study.metrics import ALL_CORRUPTIONS

pytestmark = pytest.mark.integration

SEVERITIES = (1, 2, 3, 4, 5)
MAD_RTOL = 0.06  # the bound on mean |corrupted - clean|
# Looser checks of the other statistics (reference vs ours, same 500 images, other random draws).
SIGNED_ATOL = 0.5  # mean signed change, 0-255 levels, plus SIGNED_OF_MAD of the reference's mean |change|
SIGNED_OF_MAD = 0.06  # frost and fog shift the mean by tens of levels; their texture draw moves it by a few %
STD_RTOL = 0.03  # std of all values
CHANGED_ATOL = 0.03  # fraction of values changed
PSNR_ATOL = 1.0  # dB, mean over images


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Admits numpy's array reconstruction and nothing else (the batches are plain dicts of arrays)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}")
        return super().find_class(module, name)


@pytest.fixture(scope="module")
def clean(subset_dir) -> np.ndarray:
    """uint8 (500, 32, 32, 3): official test images 0..499."""
    with open(subset_dir / "cifar-10-batches-py" / "test_batch", "rb") as f:
        batch = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    data = np.asarray(batch["data"], dtype=np.uint8)
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # (N, 3072) -> NHWC


@pytest.fixture(scope="module")
def reference_stats(reference_dir) -> dict:
    return json.loads((reference_dir / "stats_test0-499.json").read_text())["corruptions"]


@pytest.fixture(scope="module")
def reference_arrays(reference_dir):
    with np.load(reference_dir / "deterministic_test0-99.npz") as npz:
        return {k: npz[k] for k in npz.files}


def _require(name: str) -> None:
    """Import the corruption's module: a missing one fails the test, never skips it."""
    importlib.import_module(corruptions.REGISTRY[name].partition(":")[0])


def _stats(out: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """The reference's statistics (see its README) of a corrupted batch against its clean one."""
    o, c = out.astype(np.float64), clean.astype(np.float64)
    mse = ((o - c) ** 2).reshape(len(o), -1).mean(axis=1)
    changed = mse > 0
    return {
        "mean_abs_diff": float(np.abs(o - c).mean()),
        "mean_signed_diff": float((o - c).mean()),
        "std": float(o.std()),
        "frac_values_changed": float((out != clean).mean()),
        "mean_psnr_db": float(np.mean(10 * np.log10(255.0**2 / mse[changed])))
        if changed.any()
        else float("nan"),
    }


def test_reference_covers_all_19(reference_stats, reference_arrays):
    assert set(reference_stats) == set(ALL_CORRUPTIONS)
    assert set(reference_arrays) == set(corruptions.DETERMINISTIC)


@pytest.mark.parametrize("name", sorted(corruptions.DETERMINISTIC))
def test_deterministic_within_one_level(name, clean, reference_arrays):
    _require(name)
    expected = reference_arrays[name]  # (5, 100, 32, 32, 3)
    for s in SEVERITIES:
        out = corruptions.corrupt(name, clean[:100], s)
        diff = np.abs(out.astype(np.int16) - expected[s - 1].astype(np.int16))
        assert diff.max() <= 1, (
            f"{name} s{s}: {int((diff > 1).sum())} values differ by more than 1 (max {diff.max()})"
        )


@pytest.mark.slow  # 500 images x 5 severities each: about 1 s per corruption, elastic ~4 s
@pytest.mark.parametrize("name", sorted(corruptions.RANDOM))
def test_random_matches_in_distribution(name, clean, reference_stats, request):
    _require(name)
    kwargs = {"frost_dir": request.getfixturevalue("frost_dir")} if name == "frost" else {}
    problems = []
    for s in SEVERITIES:
        ref = reference_stats[name][str(s)]
        got = _stats(corruptions.corrupt(name, clean, s, np.random.default_rng(1000 + s), **kwargs), clean)
        checks = {
            "mean_abs_diff": abs(got["mean_abs_diff"] / ref["mean_abs_diff"] - 1) <= MAD_RTOL,
            "mean_signed_diff": abs(got["mean_signed_diff"] - ref["mean_signed_diff"])
            <= SIGNED_ATOL + SIGNED_OF_MAD * ref["mean_abs_diff"],
            "std": abs(got["std"] / ref["std"] - 1) <= STD_RTOL,
            "frac_values_changed": abs(got["frac_values_changed"] - ref["frac_values_changed"])
            <= CHANGED_ATOL,
            "mean_psnr_db": abs(got["mean_psnr_db"] - ref["mean_psnr_db"]) <= PSNR_ATOL,
        }
        problems += [
            f"s{s} {k}: ours {got[k]:.4f}, reference {ref[k]:.4f}" for k, ok in checks.items() if not ok
        ]
    assert not problems, f"{name}: " + "; ".join(problems)
