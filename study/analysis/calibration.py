"""Calibration of :mod:`study.analysis.seedlevel` on simulated studies with a known answer.

Pure (numpy and scipy only); the tests in ``tests/unit/test_calibration.py`` assert
on these figures and ``docs/method.md §8`` quotes them. Each cell is ``studies``
simulated studies (:mod:`study.analysis.simulate`) of three configurations at
``max(rs)`` seeds: a baseline A, a configuration B with a real effect, and A',
identical to A in distribution. A 95% interval of B - A must cover the truth
(coverage) and A' - A must give p < 0.05 rarely (null rejection); the first R
seeds of each configuration give the cell for R. A cell for a pair ``(R_A, R_B)``
compares the first R_A seeds of A with the first R_B of B (and of A'): the unequal
seeds of a racing study, where a dominated configuration stops at 2 and the
baseline goes on to 8. Monte-Carlo sd of a coverage
near 95% over M studies: ``sqrt(0.95 * 0.05 / M)`` (0.49 points at M = 2000).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from study.analysis import seedlevel, simulate

STATISTICS = ("clean_acc", "corruption_acc", "category/noise", "relative_mce")


@dataclass(frozen=True)
class Cell:
    """Calibration of one statistic x R x regime.

    Attributes:
        coverage: share of effect comparisons whose interval covers the truth.
        null_rejection: share of comparisons of A with A' (the same configuration)
            with p < alpha (with ``seed_scale != 1``: whose interval misses the truth).
        power: share of effect comparisons with p < alpha (the effect is in ``effect``).
        mean_seed_share: mean seed share of V in the effect comparisons.
        studies: M.
    """

    regime: str
    statistic: str
    replicates: int | tuple[int, int]
    coverage: float
    null_rejection: float
    power: float
    mean_seed_share: float
    studies: int


def _stat_scores(sc: dict[str, np.ndarray], statistic: str) -> tuple[np.ndarray, str]:
    if statistic == "relative_mce":
        return sc["error_sum"], seedlevel.RATIO
    return sc[statistic], seedlevel.DIFF


def _target(tr: dict[str, np.ndarray], statistic: str, b: int) -> float:
    if statistic == "relative_mce":
        return float(np.log(tr["error_sum"][b] / tr["error_sum"][0]))
    return float(tr[statistic][b] - tr[statistic][0])


def _judge(res: dict, target: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(interval covers target, p of H0: 0) per comparison, from difference_arrays output."""
    se = np.sqrt(res["var"])
    q = stats.t.ppf(1.0 - alpha / 2.0, res["df"])
    p = 2.0 * stats.t.sf(np.abs(res["estimate"]) / se, res["df"])
    return np.abs(res["estimate"] - target) <= q * se, p


def calibrate(
    regime: simulate.Regime,
    rs: Sequence[int | tuple[int, int]] = (2, 3, 5, 10),
    *,
    studies: int = 2000,
    shift: float | None = None,
    clean_shift: float = -0.1,
    seed_scale: float = 1.0,
    statistics: Sequence[str] = STATISTICS,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 50,
) -> list[Cell]:
    """Coverage, null rejection and power per statistic and R for one regime.

    Args:
        rs: seeds per configuration: R for both sides, or ``(R_A, R_B)`` (A the baseline).
        shift: logit effect of B on every corruption (default: +2 points of
            CIFAR-10-C accuracy); ``clean_shift`` its effect on clean images.
        seed_scale: factor on the seed parts of B and A' (1: the same seed
            variance as A; the null then compares equal distributions).
        studies: M simulated studies (drawn in chunks of ``chunk``).
        seed: of ``np.random.default_rng``; equal arguments give equal cells.
    """
    rng = np.random.default_rng(seed)
    if shift is None:
        shift = simulate.shift_for_gain(regime, 2.0)
    shifts, cleans, scales = [0.0, shift, 0.0], [0.0, clean_shift, 0.0], [1.0, seed_scale, seed_scale]
    tr = simulate.truth(regime, shifts, cleans, scales)
    alpha = 1.0 - confidence
    acc: dict[tuple[str, int | tuple[int, int]], dict[str, list[np.ndarray]]] = {
        (s, r): {"cover": [], "null": [], "power": [], "share": []} for s in statistics for r in rs
    }
    most = max(max((r,) if isinstance(r, int) else r) for r in rs)
    done = 0
    while done < studies:
        m = min(chunk, studies - done)
        sc = simulate.scores(
            simulate.simulate(rng, regime, shifts, most, studies=m, clean_shift=cleans, seed_scale=scales)
        )
        for s in statistics:
            y, kind = _stat_scores(sc, s)
            for r in rs:
                ra, rb = (r, r) if isinstance(r, int) else r
                eff = seedlevel.difference_arrays(y[:, 0, :ra], y[:, 1, :rb], kind)
                nul = seedlevel.difference_arrays(y[:, 0, :ra], y[:, 2, :rb], kind)
                cover, p = _judge(eff, _target(tr, s, 1), alpha)
                acc[(s, r)]["cover"].append(cover)
                acc[(s, r)]["power"].append(p < alpha)
                acc[(s, r)]["share"].append(np.minimum(1.0, eff["seed_var"] / eff["var"]))
                # A' - A: its truth is 0 when seed_scale = 1 (then a miss is exactly p < alpha).
                acc[(s, r)]["null"].append(~_judge(nul, _target(tr, s, 2), alpha)[0])
        done += m
    cells = []
    for (s, r), a in acc.items():
        cells.append(
            Cell(
                regime.name,
                s,
                r,
                float(np.mean(np.concatenate(a["cover"]))),
                float(np.mean(np.concatenate(a["null"]))),
                float(np.mean(np.concatenate(a["power"]))),
                float(np.nanmean(np.concatenate(a["share"]))),
                studies,
            )
        )
    return cells


def table(cells: Sequence[Cell]) -> str:
    """Markdown table of cells (percent)."""
    lines = [
        "| regime | statistic | R | coverage | p < 0.05 under H0 | power | seed share |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        lines.append(
            f"| {c.regime} | {c.statistic} | {c.replicates} | {100 * c.coverage:.1f} | "
            f"{100 * c.null_rejection:.1f} | {100 * c.power:.1f} | {100 * c.mean_seed_share:.0f}% |"
        )
    return "\n".join(lines)


def calibrate_borrowed(
    regime: simulate.Regime,
    baseline_replicates: int = 5,
    *,
    studies: int = 2000,
    seed_scale: float = 1.0,
    statistic: str = "corruption_acc",
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 50,
) -> Cell:
    """The ``baseline_replicates: K`` path: a baseline at K seeds against a
    single-seed configuration whose seed variance is taken to be the baseline's.
    ``seed_scale`` multiplies the candidate's seed parts (1: the assumption holds).
    ``coverage`` is of a candidate with a +2-point effect, ``null_rejection`` of one
    with none (seed_scale = 1) or the share of its intervals that miss the truth."""
    rng = np.random.default_rng(seed)
    shifts = [0.0, simulate.shift_for_gain(regime, 2.0), 0.0]
    scales = [1.0, seed_scale, seed_scale]
    tr = simulate.truth(regime, shifts, None, scales)
    alpha = 1.0 - confidence
    cover, null, power, share = [], [], [], []
    done = 0
    while done < studies:
        m = min(chunk, studies - done)
        sim = simulate.simulate(rng, regime, shifts, baseline_replicates, studies=m, seed_scale=scales)
        y, kind = _stat_scores(simulate.scores(sim), statistic)
        base = y[:, 0]
        eff = seedlevel.difference_arrays(base, y[:, 1, :1], kind, seed_variance="baseline")
        nul = seedlevel.difference_arrays(base, y[:, 2, :1], kind, seed_variance="baseline")
        c, p = _judge(eff, _target(tr, statistic, 1), alpha)
        cover.append(c)
        power.append(p < alpha)
        share.append(np.minimum(1.0, eff["seed_var"] / eff["var"]))
        null.append(~_judge(nul, _target(tr, statistic, 2), alpha)[0])
        done += m
    return Cell(
        f"{regime.name}, borrowed (K={baseline_replicates}, seed x{seed_scale:g})",
        statistic,
        1,
        float(np.mean(np.concatenate(cover))),
        float(np.mean(np.concatenate(null))),
        float(np.mean(np.concatenate(power))),
        float(np.nanmean(np.concatenate(share))),
        studies,
    )


@dataclass(frozen=True)
class NoiseStudy:
    """Pure-noise studies: ``configs`` configurations identical to the baseline.

    Attributes:
        any_primary: share of studies with >= 1 Holm-adjusted primary p < alpha.
        any_unadjusted: share with >= 1 unadjusted primary p < alpha.
        crowned: share in which :func:`~study.analysis.multiplicity.significant_champion`
            names the champion (the largest gain on the Pareto front of gain and
            clean accuracy difference), adjusted for all ``configs`` candidates.
        crowned_front_only: the same, adjusted only for the front's size (too few).
    """

    regime: str
    configs: int
    replicates: int
    any_primary: float
    any_unadjusted: float
    crowned: float
    crowned_front_only: float
    studies: int


def _front(gain: np.ndarray, clean: np.ndarray) -> list[int]:
    """Indices not dominated in (gain, clean difference), both larger-is-better."""
    return [
        i
        for i in range(len(gain))
        if not np.any((gain >= gain[i]) & (clean >= clean[i]) & ((gain > gain[i]) | (clean > clean[i])))
    ]


def noise_study(
    regime: simulate.Regime,
    configs: int = 10,
    replicates: int = 3,
    *,
    studies: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 20,
) -> NoiseStudy:
    """Family-wise error of the primary family and the champion rule under pure noise."""
    from study.analysis import multiplicity

    rng = np.random.default_rng(seed)
    alpha = 1.0 - confidence
    any_adj = any_raw = crowned = crowned_front = 0
    done = 0
    while done < studies:
        m = min(chunk, studies - done)
        sim = simulate.simulate(rng, regime, np.zeros(configs + 1), replicates, studies=m)
        sc = simulate.scores(sim)
        gain = seedlevel.difference_arrays(sc["corruption_acc"][:, :1], sc["corruption_acc"][:, 1:])
        clean = seedlevel.difference_arrays(sc["clean_acc"][:, :1], sc["clean_acc"][:, 1:])
        p_gain = _judge(gain, 0.0, alpha)[1]
        p_clean = _judge(clean, 0.0, alpha)[1]
        for j in range(m):
            p = np.concatenate([p_gain[j], p_clean[j]])
            any_raw += bool(np.any(p < alpha))
            any_adj += bool(np.any(multiplicity.holm(p) < alpha))
            front = _front(gain["estimate"][j], clean["estimate"][j])
            best = max(front, key=lambda i: gain["estimate"][j, i])
            ya = sc["corruption_acc"][j, 0]
            intervals = [
                seedlevel.configuration_difference(ya, sc["corruption_acc"][j, 1 + i], confidence=confidence)
                for i in front
            ]
            crowned += multiplicity.significant_champion(intervals, front.index(best), configs).crowned
            crowned_front += multiplicity.significant_champion(intervals, front.index(best)).crowned
        done += m
    return NoiseStudy(
        regime.name,
        configs,
        replicates,
        any_adj / studies,
        any_raw / studies,
        crowned / studies,
        crowned_front / studies,
        studies,
    )


def calibrate_networks(
    regime: simulate.Regime,
    *,
    studies: int = 2000,
    statistic: str = "corruption_acc",
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 100,
) -> tuple[Cell, float]:
    """R = 1: two single runs of the same configuration, compared image by image
    (scope ``networks``).

    Returns:
        The cell (``coverage``: intervals that cover the two NETWORKS' difference
        over images; ``null_rejection``: p < alpha, read as a claim that the two
        configurations differ, which they do not) and the share of intervals that
        cover the configurations' difference (0).
    """
    rng = np.random.default_rng(seed)
    alpha = 1.0 - confidence
    cover, null, config_cover = [], [], []
    done = 0
    while done < studies:
        m = min(chunk, studies - done)
        sim = simulate.simulate(rng, regime, [0.0, 0.0], 1, studies=m)
        y, kind = _stat_scores(simulate.scores(sim), statistic)
        net = simulate.network_truth(regime, sim, [0.0, 0.0])
        if statistic == "relative_mce":
            target = np.log(net["error_sum"][:, 1, 0] / net["error_sum"][:, 0, 0])
        else:
            target = net[statistic][:, 1, 0] - net[statistic][:, 0, 0]
        res = seedlevel.difference_arrays(y[:, 0], y[:, 1], kind)
        se = np.sqrt(res["var"])
        q = stats.t.ppf(1.0 - alpha / 2.0, res["df"])
        cover.append(np.abs(res["estimate"] - target) <= q * se)
        c0, p = _judge(res, 0.0, alpha)
        null.append(p < alpha)
        config_cover.append(c0)
        done += m
    cell = Cell(
        f"{regime.name}, single runs",
        statistic,
        1,
        float(np.mean(np.concatenate(cover))),
        float(np.mean(np.concatenate(null))),
        math.nan,
        0.0,
        studies,
    )
    return cell, float(np.mean(np.concatenate(config_cover)))
