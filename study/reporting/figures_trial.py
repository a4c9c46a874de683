"""Figures of one trial: first-layer filters, their spectra, the radial power
profile, the corruption x severity accuracy map, and the proportion history.

Pure functions of numpy arrays that return a matplotlib ``Figure`` (built
without pyplot, so no display and no global backend switch; PNGs render
through Agg), plus :func:`save_figure`, which writes a PNG atomically
and closes the figure. Frequencies follow docs/method.md: radius ``r`` is a
fraction of the Nyquist frequency (0.5 cycles/pixel), so the cutoff circle of
``r_c`` on an ``N x N`` padded spectrum has a radius of ``r_c * N / 2`` bins.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from models.spectral import CLASS_NAMES
from study.files import write_atomic
from study.metrics import (
    ALL_CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    FILTER_ALPHA_PROPORTION,
    FILTER_MEAN_ALPHA,
    FILTER_PROPORTION,
)


def _grid(n: int) -> tuple[int, int]:
    cols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def plot_filters(weights: np.ndarray, classes: np.ndarray, alpha: np.ndarray | None = None) -> Figure:
    """Each first-layer filter as a small image, titled low/high (and its alpha).

    Args:
        weights: (O, C, k, k) effective first-layer weights. With C = 3 a filter is
            shown as an RGB image, otherwise its channel mean in grey; each filter is
            min-max scaled on its own, so shapes show, not magnitudes.
        classes: (O,) 1 low, 0 high, -1 unclassified (zero energy).
        alpha: (O,) learned low-band energy shares, or None.
    """
    o = weights.shape[0]
    rows, cols = _grid(o)
    fig = Figure(figsize=(1.3 * cols, 1.45 * rows))
    for i in range(o):
        ax = fig.add_subplot(rows, cols, i + 1)
        w = weights[i]
        img = np.transpose(w, (1, 2, 0)) if w.shape[0] == 3 else w.mean(axis=0)  # (C,k,k) -> (k,k,C)
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        ax.imshow(img, cmap=None if img.ndim == 3 else "gray", interpolation="nearest")
        title = CLASS_NAMES.get(int(classes[i]), "?")
        if alpha is not None:
            title += f" α={float(alpha[i]):.2f}"
        ax.set_title(title, fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("first-layer filters", fontsize=9)
    fig.tight_layout()
    return fig


def padded_spectra(weights: np.ndarray, size: int = 32) -> np.ndarray:
    """(O, C, k, k) -> (O, size, size) power spectra, zero-padded, DC centred."""
    spec = np.abs(np.fft.fft2(weights, s=(size, size))) ** 2  # (O, C, N, N)
    return np.fft.fftshift(spec.sum(axis=1), axes=(-2, -1))


def plot_spectra(weights: np.ndarray, classes: np.ndarray, cutoff: float, size: int = 32) -> Figure:
    """Zero-padded power spectrum of each filter, log scale, with the cutoff circle.

    Args:
        weights: (O, C, k, k) effective first-layer weights.
        classes: (O,) 1 low, 0 high, -1 unclassified.
        cutoff: ``r_c`` as a fraction of Nyquist.
        size: padded size N (the image size).
    """
    spec = np.log10(padded_spectra(weights, size) + 1e-12)
    o = spec.shape[0]
    rows, cols = _grid(o)
    fig = Figure(figsize=(1.3 * cols, 1.45 * rows))
    centre = size // 2
    for i in range(o):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(spec[i], cmap="magma", interpolation="nearest")
        ax.add_patch(Circle((centre, centre), cutoff * size / 2, fill=False, color="cyan", linewidth=0.8))
        ax.set_title(CLASS_NAMES.get(int(classes[i]), "?"), fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"log10 power spectra ({size}x{size}, DC centred), cutoff r_c={cutoff:g}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_radial_profile(radii: np.ndarray, profile: np.ndarray, classes: np.ndarray, cutoff: float) -> Figure:
    """Mean radial power profile of low vs high filters.

    Args:
        radii: (B,) bin centres, fraction of Nyquist.
        profile: (O, B) power per radius bin of each filter.
        classes: (O,) 1 low, 0 high, -1 unclassified.
        cutoff: ``r_c``, drawn as a vertical line.
    """
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    for cls, colour in ((1, "tab:blue"), (0, "tab:red")):
        sel = classes == cls
        if sel.any():
            # Normalise each filter to unit total power so large filters do not dominate.
            p = profile[sel] / np.maximum(profile[sel].sum(axis=1, keepdims=True), 1e-12)
            ax.plot(radii, p.mean(axis=0), color=colour, label=f"{CLASS_NAMES[cls]} ({int(sel.sum())})")
    ax.axvline(cutoff, color="grey", linestyle="--", linewidth=1, label=f"r_c={cutoff:g}")
    return _finish(fig, ax, "radius (fraction of Nyquist)", "share of power", "radial power profile")


def plot_corruption_heatmap(accuracy: Mapping[tuple[str, int], float], title: str = "accuracy (%)") -> Figure:
    """Corruption x severity accuracy map (percent); extras drawn below a rule."""
    names = [n for n in ALL_CORRUPTIONS if any(k[0] == n for k in accuracy)]
    sevs = sorted({s for _, s in accuracy})
    grid = np.full((len(names), len(sevs)), np.nan)
    for (n, s), a in accuracy.items():
        if n in names:
            grid[names.index(n), sevs.index(s)] = a
    fig = Figure(figsize=(max(4.0, 1.5 + 0.9 * len(sevs)), max(2.5, 1.0 + 0.32 * len(names))))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i in range(len(names)):
        for j in range(len(sevs)):
            if not np.isnan(grid[i, j]):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.0f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if grid[i, j] < 60 else "black",
                )
    ax.set_xticks(range(len(sevs)), [str(s) for s in sevs])
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("severity")
    n_bench = sum(1 for n in names if n not in EXTRA_CORRUPTIONS)
    if 0 < n_bench < len(names):
        ax.axhline(n_bench - 0.5, color="white", linewidth=1.5)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def plot_proportion_history(
    history: Sequence[Mapping[str, float]],
    alpha_history: np.ndarray | None = None,
    target: float | None = None,
    *,
    alpha_start: np.ndarray | None = None,
    threshold: float | None = None,
) -> Figure:
    """Measured proportion p-hat per epoch and, in learned mode, each filter's alpha trajectory.

    Args:
        history: per-epoch metric dicts with ``epoch`` and ``filters/proportion``
            (and ``filters/mean_alpha``, ``filters/alpha_proportion`` in learned mode).
        alpha_history: (E, O) alpha of every filter after each epoch, or None.
        target: the proportion ``p`` the layer is held or pulled to (dashed line), or None.
        alpha_start: (O,) alpha before training, drawn at epoch 0; None starts the lines at epoch 1.
        threshold: ``τ`` (dotted line): a filter is low-frequency while its alpha is at or above it.
    """
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    if alpha_history is not None and len(alpha_history):
        a = np.asarray(alpha_history)[: len(epochs)]  # (E, O)
        x = np.asarray(epochs[: len(a)], dtype=float)
        if alpha_start is not None:
            a, x = np.vstack([np.asarray(alpha_start)[None], a]), np.concatenate([[0.0], x])
        tau = 0.5 if threshold is None else threshold
        for o in range(a.shape[1]):  # one line per filter, coloured by where it ended
            colour = "tab:green" if a[-1, o] >= tau else "tab:purple"
            ax.plot(x, a[:, o], color=colour, alpha=0.35, linewidth=0.8)
        ax.plot([], [], color="tab:green", alpha=0.6, label="α of a filter ending low")
        ax.plot([], [], color="tab:purple", alpha=0.6, label="α of a filter ending high")
    ax.plot(
        epochs, [h[FILTER_PROPORTION] for h in history], "o-", color="tab:blue", label="p̂ from the weights"
    )
    if history and FILTER_ALPHA_PROPORTION in history[0]:
        ax.plot(epochs, [h[FILTER_ALPHA_PROPORTION] for h in history], "x--", color="black", label="p̂ from α")
    if history and FILTER_MEAN_ALPHA in history[0]:
        ax.plot(epochs, [h[FILTER_MEAN_ALPHA] for h in history], "s-", color="tab:orange", label="mean α")
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target p={target:.3g}")
    if threshold is not None and alpha_history is not None:
        ax.axhline(threshold, color="grey", linestyle=":", linewidth=1, label=f"τ={threshold:.3g}")
    ax.set_ylim(-0.02, 1.02)
    return _finish(fig, ax, "epoch", "share of low-frequency filters / α", "frequency proportion")


def _finish(fig: Figure, ax, xlabel: str, ylabel: str, title: str) -> Figure:
    """Axis labels, title and a small legend; the layout tightened."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG atomically (temp file, then ``os.replace``)."""
    return write_atomic(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))
