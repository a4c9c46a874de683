"""Figures of Fourier heat maps (see ``study.analysis.fourier``), returned as PNG bytes.

Maps are in fftshift layout (DC at ``[S/2, S/2]``); they are drawn with the
frequency axes in cycles/pixel (``-0.5 .. 0.5 - 1/S``), DC at the centre, the
horizontal frequency (column index) on x and the vertical frequency (row index)
on y, increasing upwards. Figures are built without pyplot (no global backend,
no display) and rendered through Agg; nothing is written to disk.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["heatmap_grid_png", "heatmap_png"]

_CMAP = "viridis"
_DIFF_CMAP = "RdBu_r"  # red: more error than the baseline


def _extent(size: int) -> tuple[float, float, float, float]:
    """imshow extent so that cell centres sit at the frequencies ``(k - S/2)/S`` cycles/pixel."""
    f = np.fft.fftshift(np.fft.fftfreq(size))
    half = 0.5 / size
    return (f[0] - half, f[-1] + half, f[0] - half, f[-1] + half)


def _check_map(heatmap: np.ndarray, name: str = "heatmap") -> np.ndarray:
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.ndim != 2 or heatmap.shape[0] != heatmap.shape[1]:
        raise ValueError(f"{name}: expected a square (S, S) map, got shape {heatmap.shape}")
    return heatmap


def _draw(
    ax,
    heatmap: np.ndarray,
    *,
    vmin: float,
    vmax: float,
    cmap: str,
    title: str,
    xlabel: bool = True,
    ylabel: bool = True,
):
    im = ax.imshow(
        heatmap,
        origin="lower",
        extent=_extent(heatmap.shape[0]),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )
    ax.set_title(title, fontsize=9)
    ticks = [-0.5, -0.25, 0.0, 0.25]
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.tick_params(labelsize=7)
    if xlabel:
        ax.set_xlabel("horizontal frequency (cycles/pixel)", fontsize=7)
    if ylabel:
        ax.set_ylabel("vertical frequency (cycles/pixel)", fontsize=7)
    return im


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _finite_range(arrays) -> tuple[float, float]:
    values = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays]) if arrays else np.zeros(0)
    if values.size == 0:
        return 0.0, 100.0
    lo, hi = float(values.min()), float(values.max())
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def heatmap_png(
    heatmap: np.ndarray,
    title: str,
    vmin: float | None = None,
    vmax: float | None = None,
) -> bytes:
    """One heat map as a PNG.

    Args:
        heatmap: (S, S) percent error, fftshift layout (DC at the centre).
        title: figure title (e.g. the run name and ε).
        vmin, vmax: colour scale limits in percent (default: the map's finite range).

    Returns:
        PNG bytes.
    """
    heatmap = _check_map(heatmap)
    lo, hi = _finite_range([heatmap])
    vmin = lo if vmin is None else float(vmin)
    vmax = hi if vmax is None else float(vmax)
    fig = Figure(figsize=(4.6, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    im = _draw(ax, heatmap, vmin=vmin, vmax=vmax, cmap=_CMAP, title=title)
    fig.colorbar(im, ax=ax).set_label("error (%)", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def heatmap_grid_png(maps: Mapping[str, np.ndarray], baseline: str) -> bytes:
    """Several heat maps side by side, and their differences from a baseline, as one PNG.

    Top row: each map on ONE colour scale shared by all (the joint finite range), so
    colours compare across maps. Bottom row: ``map - maps[baseline]`` in percentage
    points on one diverging scale symmetric about 0 (``±`` the largest absolute
    difference), red where a map errs more than the baseline; the baseline's own
    panel is zero.

    Args:
        maps: ``{name: (S, S) percent error}``, all the same shape, fftshift layout.
        baseline: the key of the reference map.

    Returns:
        PNG bytes.
    """
    if not maps:
        raise ValueError("heatmap_grid_png: no maps")
    if baseline not in maps:
        raise ValueError(f"heatmap_grid_png: baseline {baseline!r} is not one of {list(maps)}")
    arrays = {name: _check_map(m, name) for name, m in maps.items()}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1:
        raise ValueError(f"heatmap_grid_png: maps differ in shape: {sorted(shapes)}")
    diffs = {name: a - arrays[baseline] for name, a in arrays.items()}
    vmin, vmax = _finite_range(list(arrays.values()))
    finite = [np.abs(d[np.isfinite(d)]) for d in diffs.values()]
    lim = max((float(d.max()) for d in finite if d.size), default=0.0)
    lim = lim if lim > 0 else 1.0  # all maps equal: still a valid, symmetric scale

    k = len(arrays)
    fig = Figure(figsize=(3.1 * k + 1.2, 6.2))
    axes_top = [fig.add_subplot(2, k, i + 1) for i in range(k)]
    axes_bottom = [fig.add_subplot(2, k, k + i + 1) for i in range(k)]
    im_top = im_bottom = None
    for i, name in enumerate(arrays):
        im_top = _draw(
            axes_top[i],
            arrays[name],
            vmin=vmin,
            vmax=vmax,
            cmap=_CMAP,
            title=name,
            xlabel=False,
            ylabel=i == 0,
        )
        title = f"{name} − {baseline}" if name != baseline else f"{name} (baseline)"
        im_bottom = _draw(
            axes_bottom[i],
            diffs[name],
            vmin=-lim,
            vmax=lim,
            cmap=_DIFF_CMAP,
            title=title,
            ylabel=i == 0,
        )
    fig.colorbar(im_top, ax=axes_top, fraction=0.04, pad=0.02).set_label("error (%)", fontsize=8)
    fig.colorbar(im_bottom, ax=axes_bottom, fraction=0.04, pad=0.02).set_label(
        f"error − {baseline} (points)", fontsize=8
    )
    return _png(fig)
