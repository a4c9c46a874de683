"""Non-dominated sorting and crowding distance: numpy kernels on an ``(n, m)``
array of objective values with a direction per column (``maximize``/``max``
or ``minimize``/``min``). Pure; ``study.selection.choose`` applies them to a
study's trials."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from study.objectives import parse_direction


def _as_minimisation(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """(n, m) values -> (n, m) costs where smaller is better in every column."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values: expected a 2-D (points, objectives) array, got shape {values.shape}")
    if len(directions) != values.shape[1]:
        raise ValueError(f"directions: {len(directions)} given for {values.shape[1]} objectives")
    try:
        canonical = [parse_direction(d) for d in directions]
    except ValueError as e:
        raise ValueError(f"directions: {e}") from None
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in canonical])
    return values * sign


def dominance_matrix(costs: np.ndarray) -> np.ndarray:
    """(n, m) costs -> (n, n) bool, ``[i, j]`` true when i dominates j.

    i dominates j when it is no worse in every objective and better in at least
    one; equal points do not dominate each other (ties share a front).
    """
    le = np.all(costs[:, None, :] <= costs[None, :, :], axis=2)
    lt = np.any(costs[:, None, :] < costs[None, :, :], axis=2)
    return le & lt


def non_dominated_ranks(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Front index of every point: 1 = non-dominated, 2 = non-dominated once
    front 1 is removed, and so on; 0 for a row holding NaN (excluded).

    Args:
        values: (n, m) objective values, any units.
        directions: m entries, ``"max"`` or ``"min"``.

    Returns:
        (n,) int array of ranks.
    """
    costs = _as_minimisation(values, directions)
    ranks = np.zeros(len(costs), dtype=int)
    valid = ~np.isnan(costs).any(axis=1)
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        return ranks
    dom = dominance_matrix(costs[idx])
    # Peel fronts: a point joins the current front once nothing left dominates it.
    n_dominators = dom.sum(axis=0)
    remaining = np.ones(len(idx), dtype=bool)
    rank = 0
    while remaining.any():
        rank += 1
        front = remaining & (n_dominators == 0)
        assert front.any(), "a finite point set always has a non-dominated point"
        ranks[idx[front]] = rank
        remaining &= ~front
        n_dominators = n_dominators - dom[front].sum(axis=0)
    return ranks


def crowding_distance(values: np.ndarray, directions: Sequence[str] | None = None) -> np.ndarray:
    """NSGA-II crowding distance of the points of one front.

    Per objective, points sorted by value get the gap between their neighbours
    normalised by the objective's span; the extremes get ``inf``. Objectives
    with zero span add nothing, so duplicated points never divide by zero. The
    distance does not depend on directions (accepted for symmetry).

    Args:
        values: (n, m) objective values of one front, no NaN.

    Returns:
        (n,) float array; all ``inf`` when n <= 2.
    """
    values = np.asarray(values, dtype=float)
    if directions is not None:
        values = _as_minimisation(values, directions)
    n, m = values.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        # Stable order, ties broken by row index, so the result is deterministic.
        order = np.lexsort((np.arange(n), values[:, j]))
        col = values[order, j]
        span = col[-1] - col[0]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


# -- the adapter over trial records ------------------------------------------------
