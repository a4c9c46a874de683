"""Racing replicated configurations: spend seeds where a decision is still open.

Pure (numpy and scipy; no Ray, no MLflow, no Optuna): the Ray searcher and the
in-process harness (:mod:`study.search.harness`) both drive :func:`decide`.

Every configuration starts with ``min_seeds`` seeds. Once they have ended, the
racer looks at what is known of every configuration of the study (the
:class:`Evidence`: per objective, each configuration's run means, per-image means
and the seed x image residual, the variance pieces of
:func:`study.analysis.seedlevel.difference_from_moments`, with the seed variance
pooled over the configurations where Bartlett's test keeps them equal,
:mod:`study.analysis.pooling`) and decides for each configuration still racing
(docs/method.md §8.7):

- **dominated**: some configuration on the current estimated front is
  confidently at least as good on every objective and confidently better on one
  (one-sided t tests of the configuration-level differences at level ``alpha``
  for each front member; an intersection-union test over objectives needs no
  adjustment, Berger 1982). Its race **stops, dominated** once a configuration
  that confidently dominates it has ended its own race (or ends in this decision),
  or dominates it for good already: still confidently were the dominator's estimate
  to fall by what its seeds up to M could still move it (``z_{1-alpha} * s_f *
  sqrt(1/R_f - 1/M)`` on each objective). Otherwise it **waits**: no seed, decided
  again each round, and racing again (seeds) if no front member confidently
  dominates it any more. An early stop against a front member whose estimate later
  fell was the racer's main error on the harness. Elimination is not split over
  the front members (no Bonferroni): a doubtful one waits while its dominator races;
- **stop, settled**: it is on the estimated front, its pair with every contender
  (a configuration not confidently dominated) is a confident trade-off (each
  confidently better than the other on some objective, level ``alpha / J``,
  Bonferroni over the J objectives of each union), and its gain against the
  baseline is settled on every objective (the two-sided interval at
  ``1 - alpha / J`` excludes 0, or lies within ``+- margin`` points: TOST);
- **stop, max seeds** at ``max_seeds``; **stop, budget** when the study's total
  trainings would exceed ``budget``;
- otherwise **one more seed**. The baseline races too: every gain involves it, so
  it gets a seed while its own membership is open or any racing front member's gain
  is open on an objective where it could still settle by ``max_seeds`` (were the
  estimate the truth, :func:`_projected_se`): a gain near 0 never settles.

The ancestors are single-objective: F-Race (Birattari et al. 2002; Friedman test
after each round, no adjustment for repeated looks), irace (Lopez-Ibanez et al.
2016) and SMAC's intensification (Hutter et al. 2011). As in F-Race the repeated
looks are not adjusted; the harness measures the end-to-end error that leaves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from study.analysis import pooling
from study.analysis.seedlevel import difference_from_moments

SEED = "seed"
STOP = "stop"
WAIT = "wait"
DOMINATED = "dominated"
SETTLED = "settled"
MAX_SEEDS = "max seeds"
BUDGET = "budget"
STOP_REASONS = (DOMINATED, SETTLED, MAX_SEEDS, BUDGET)


@dataclass(frozen=True)
class RacePolicy:
    """How a race is run.

    Attributes:
        min_seeds: m, seeds every configuration starts with (>= 2: a seed variance
            needs two).
        max_seeds: M, the most a configuration gets.
        confidence: 1 - alpha of each decision (before the Bonferroni split).
        margin: points within which a gain against the baseline counts as settled
            at "no difference" (0: only a known sign settles it).
        pool: pool the seed variance over the study's configurations where they
            share one (:mod:`study.analysis.pooling`); False: each comparison has
            only its two configurations' runs (2 df at 2 seeds each).
    """

    min_seeds: int = 2
    max_seeds: int = 8
    confidence: float = 0.95
    margin: float = 0.0
    pool: bool = True

    def __post_init__(self) -> None:
        if not 2 <= self.min_seeds <= self.max_seeds:
            raise ValueError(
                f"racing: need 2 <= min_seeds <= max_seeds, got min {self.min_seeds}, max {self.max_seeds}"
            )
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"racing: confidence must be in (0, 1), got {self.confidence}")
        if self.margin < 0:
            raise ValueError(f"racing: margin must be >= 0 points, got {self.margin}")


@dataclass(frozen=True)
class Evidence:
    """What is known of K configurations on J objectives (scores in [0, 1] per image).

    Attributes:
        seeds: ``(K,)`` runs per configuration (each >= 2).
        mean: ``(J, K)`` grand mean score.
        run_var: ``(J, K)`` variance of the run means (ddof 1).
        mse: ``(J, K)`` seed x image residual mean square.
        image_means: J arrays ``(K, n_j)``: per-image means over the runs.
    """

    seeds: np.ndarray
    mean: np.ndarray
    run_var: np.ndarray
    mse: np.ndarray
    image_means: tuple[np.ndarray, ...]

    @classmethod
    def from_sums(
        cls,
        seeds: np.ndarray,
        run_means: Sequence[np.ndarray],
        run_sumsq: Sequence[np.ndarray],
        image_sums: Sequence[np.ndarray],
    ) -> Evidence:
        """From running sums, per objective j: ``run_means[j]`` and ``run_sumsq[j]``
        ``(K, S)`` (each run's mean score and sum of squared scores, runs beyond
        ``seeds[k]`` ignored) and ``image_sums[j]`` ``(K, n_j)`` (per-image sums over
        the first ``seeds[k]`` runs). What a searcher keeps: O(n) per configuration."""
        r = np.asarray(seeds, dtype=np.int64)
        if r.ndim != 1 or np.any(r < 2):
            raise ValueError(f"racing: every configuration needs >= 2 seeds of evidence, got {r}")
        rf = r.astype(np.float64)
        means, vars_, mses, images = [], [], [], []
        for rm, sq, im in zip(run_means, run_sumsq, image_sums):
            rm, sq, im = (np.asarray(a, dtype=np.float64) for a in (rm, sq, im))
            n = im.shape[1]
            mask = np.arange(rm.shape[1])[None, :] < r[:, None]
            g = np.where(mask, rm, 0.0).sum(axis=1) / rf
            var = np.where(mask, (rm - g[:, None]) ** 2, 0.0).sum(axis=1) / (rf - 1.0)
            img = im / rf[:, None]
            # Two-way residual SS of a crossed layout without replication:
            # sum y^2 - n sum m_r^2 - R sum ybar_i^2 + R n g^2.
            ss = (
                np.where(mask, sq, 0.0).sum(axis=1)
                - n * np.where(mask, rm**2, 0.0).sum(axis=1)
                - rf * (img**2).sum(axis=1)
                + rf * n * g**2
            )
            means.append(g)
            vars_.append(var)
            mses.append(np.maximum(ss, 0.0) / ((rf - 1.0) * (n - 1.0)))
            images.append(img)
        return cls(r, np.stack(means), np.stack(vars_), np.stack(mses), tuple(images))

    @classmethod
    def from_scores(cls, scores: Sequence[Sequence[np.ndarray]]) -> Evidence:
        """From per-image scores: ``scores[k][j]`` an ``(R_k, n_j)`` array."""
        k = len(scores)
        j = len(scores[0])
        seeds = np.array([np.asarray(s[0]).shape[0] for s in scores])
        width = int(seeds.max())
        rm, sq, im = [], [], []
        for jj in range(j):
            a = np.zeros((k, width))
            b = np.zeros((k, width))
            for kk in range(k):
                y = np.asarray(scores[kk][jj], dtype=np.float64)
                a[kk, : len(y)] = y.mean(axis=1)
                b[kk, : len(y)] = (y**2).sum(axis=1)
            rm.append(a)
            sq.append(b)
            im.append(np.stack([np.asarray(scores[kk][jj], dtype=np.float64).sum(axis=0) for kk in range(k)]))
        return cls.from_sums(seeds, rm, sq, im)


@dataclass(frozen=True)
class Decision:
    """The racer's word on one configuration.

    Attributes:
        index: the configuration.
        action: :data:`SEED` (one more), :data:`STOP`, or :data:`WAIT` (confidently
            dominated only by configurations still racing: no seed, the race stays open).
        reason: for a stop one of :data:`STOP_REASONS`; for a seed what is open; for a
            wait :data:`DOMINATED`.
        other: the configuration the reason names (the dominating one, the one
            membership is open against), or -1.
    """

    index: int
    action: str
    reason: str
    other: int = -1


def pairwise(
    evidence: Evidence, directions: Sequence[int], *, pool: bool = True, level: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every configuration against every other on every objective.

    With ``pool`` the seed variances are pooled over all the configurations per
    objective where Bartlett's test at ``level`` keeps them equal
    (:mod:`study.analysis.pooling`), and the seed term then has the pooled df
    ``sum (R_k - 1)``; where they differ each side's variance is the larger of its
    own and the pooled one, with the pair's own df (``2R - 2``); without ``pool``
    each pair has only its own runs.

    Returns:
        ``(est, se, df)``, each ``(J, K, K)``: ``est[j, a, b]`` is how much better
        b is than a in points (``100 * (mean_b - mean_a)``, sign-flipped for a
        minimised objective), ``se`` its configuration-level standard error and
        ``df`` its Welch-Satterthwaite degrees of freedom (``se = 0`` on the diagonal).
    """
    est, se, df, _ = _pairwise(evidence, directions, pool=pool, level=level)
    return est, se, df


def _pairwise(
    evidence: Evidence, directions: Sequence[int], *, pool: bool, level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pairwise` and, fourth, the seed variances ``(J, K)`` (points^2, per run:
    pooled where pooled) its seed terms used, for projecting a comparison to more seeds."""
    r = evidence.seeds.astype(np.float64)
    ra, rb = r[:, None], r[None, :]
    est, se, df, seed = [], [], [], []
    for j, sign in enumerate(directions):
        img = evidence.image_means[j]
        n = img.shape[1]
        c = img - img.mean(axis=1, keepdims=True)
        gram = c @ c.T / (n - 1.0)
        d = np.diag(gram)
        s_d = np.maximum(d[:, None] + d[None, :] - 2.0 * gram, 0.0)
        run_var, seed_df = evidence.run_var[j], None
        if pool:
            got = pooling.pool(run_var, r - 1.0, level)
            run_var = got.var
            if got.pooled:
                seed_df = float(got.df[0])
        ma = {"run_var": run_var[:, None], "mse": evidence.mse[j][:, None]}
        mb = {"run_var": run_var[None, :], "mse": evidence.mse[j][None, :]}
        res = difference_from_moments(ma, mb, ra, rb, n, s_d, seed_df=seed_df)
        m = evidence.mean[j]
        est.append(100.0 * sign * (m[None, :] - m[:, None]))
        v = 1e4 * res["var"]
        np.fill_diagonal(v, 0.0)
        se.append(np.sqrt(np.maximum(v, 0.0)))
        df.append(res["df"])
        seed.append(1e4 * run_var)
    return np.stack(est), np.stack(se), np.stack(df), np.stack(seed)


def front_of(values: np.ndarray) -> np.ndarray:
    """``(K,)`` bool: not dominated, from ``(J, K)`` values (larger is better)."""
    v = values.T  # (K, J)
    ge = np.all(v[:, None, :] >= v[None, :, :], axis=2)  # ge[a, b]: a >= b everywhere
    gt = np.any(v[:, None, :] > v[None, :, :], axis=2)
    dominated = np.any(ge & gt, axis=0)
    return ~dominated


def _confident(est: np.ndarray, se: np.ndarray, df: np.ndarray, shift: float, level: float) -> np.ndarray:
    """One-sided: the lower bound at ``1 - level`` of ``est`` lies above ``shift``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, (est - shift) / np.where(se > 0, se, 1.0), np.sign(est - shift) * np.inf)
    return t > stats.t.ppf(1.0 - level, np.where(np.isfinite(df), df, 1e12))


def _projected_se(
    g_se: np.ndarray, seed_var: np.ndarray, seeds: np.ndarray, baseline: int, max_seeds: int
) -> np.ndarray:
    """``(J, K)`` standard errors (points) of every configuration's gain against the
    baseline were both sides at ``max_seeds`` seeds (those beyond it kept): the seed
    term ``s_b^2 / R_b + s_k^2 / R_k`` shrinks to its value at M seeds, the
    configuration x image term stays (more seeds of the same images do not shrink it).
    ``g_se`` ``(J, K)`` the gains' standard errors now, ``seed_var`` ``(J, K)`` the
    seed variances (points^2) their seed terms used, ``seeds`` ``(K,)``."""
    r = np.asarray(seeds, dtype=np.float64)
    m = np.maximum(r, float(max_seeds))
    sb = seed_var[:, baseline][:, None]
    v = g_se**2 - sb / r[baseline] - seed_var / r[None, :] + sb / m[baseline] + seed_var / m[None, :]
    v[:, baseline] = 0.0
    return np.sqrt(np.maximum(v, 0.0))


def decide(
    evidence: Evidence,
    racing: np.ndarray,
    *,
    baseline: int = 0,
    directions: Sequence[int] | None = None,
    policy: RacePolicy = RacePolicy(),
    budget_left: int | None = None,
) -> list[Decision]:
    """The racer's decisions for the configurations still racing.

    Args:
        evidence: every configuration of the study with >= 2 ended seeds (those
            that stopped racing too: they dominate and are dominated).
        racing: ``(K,)`` bool, which configurations are still racing (their
            seeds so far have all ended).
        baseline: index of the baseline in ``evidence``.
        directions: per objective +1 (maximise) or -1 (minimise); default all +1.
        policy: the race's settings.
        budget_left: trainings the study may still start (None: no cap).

    Returns:
        One :class:`Decision` per racing configuration, in index order.
    """
    racing = np.asarray(racing, dtype=bool)
    k = len(evidence.seeds)
    j = len(evidence.image_means)
    dirs = [1] * j if directions is None else [int(d) for d in directions]
    if racing.shape != (k,) or not 0 <= baseline < k:
        raise ValueError(f"racing: racing mask must be ({k},) and baseline in [0, {k}), got {baseline}")
    alpha = 1.0 - policy.confidence
    est, se, df, seed_var = _pairwise(evidence, dirs, pool=policy.pool, level=alpha)
    values = np.array(dirs)[:, None] * evidence.mean
    front = front_of(values)
    # better[j, a, b]: b confidently better than a on objective j, at alpha / J (a union over J).
    better = _confident(est, se, df, 0.0, alpha / j)
    # Dominance of a by f: f no worse by more than the margin everywhere and better somewhere,
    # each one-sided at alpha for each front member f. Not split over the front: a stop
    # waits until a dominator's estimate is final (below), which is what protects a true
    # front member from an early, lucky dominator (docs/method.md §8.7).
    lvl = alpha
    no_worse = _confident(est, se, df, -policy.margin, lvl).all(axis=0)
    strictly = _confident(est, se, df, 0.0, lvl).any(axis=0)
    dominates = no_worse & strictly & front[None, :]  # [a, f]
    np.fill_diagonal(dominates, False)
    # Dominated for good already: still confidently dominated were f's estimate to fall by
    # what its seeds up to M could still move it (one-sided at alpha: z * s_f * sqrt(1/R_f -
    # 1/M) on each objective). Only a dominance that a moving estimate could undo waits.
    r_f = evidence.seeds.astype(np.float64)
    move = np.sqrt(seed_var * np.maximum(0.0, 1.0 / r_f - 1.0 / policy.max_seeds))  # (J, K)
    fallen = est - stats.norm.ppf(1.0 - alpha) * move[:, None, :]
    no_worse_fallen = _confident(fallen, se, df, -policy.margin, lvl).all(axis=0)
    robust = np.asarray(no_worse_fallen & _confident(fallen, se, df, 0.0, lvl).any(axis=0))  # [a, f]
    # (read only where dominates[a, f], below)
    # Gain against the baseline settled: sign known, or within +- margin (two one-sided tests).
    g_est, g_se, g_df = est[:, baseline, :], se[:, baseline, :], df[:, baseline, :]
    sign_known = _confident(g_est, g_se, g_df, 0.0, alpha / (2 * j)) | _confident(
        -g_est, g_se, g_df, 0.0, alpha / (2 * j)
    )
    if policy.margin > 0:
        within = _confident(g_est, g_se, g_df, -policy.margin, alpha / j) & _confident(
            -g_est, g_se, g_df, -policy.margin, alpha / j
        )
        sign_known = sign_known | within
    gain_open = ~sign_known.all(axis=0)  # (K,)
    gain_open[baseline] = False
    # What keeps the baseline racing: a gain open on an objective where it could still
    # settle by M seeds on both sides, were the estimate the truth (the seed term shrinks
    # to M seeds, the configuration x image term does not; z: the df at their largest).
    # A gain near 0 never settles with margin 0: seeds spent on it are wasted.
    se_m = _projected_se(g_se, seed_var, evidence.seeds, baseline, policy.max_seeds)
    z = stats.norm.ppf(1.0 - alpha / (2 * j))
    reachable = np.abs(g_est) > z * se_m
    if policy.margin > 0:
        reachable |= np.abs(g_est) + stats.norm.ppf(1.0 - alpha / j) * se_m < policy.margin
    gain_serves = (~sign_known & reachable).any(axis=0) & gain_open
    # Contenders: not confidently dominated by a front member. Membership is settled
    # against a contender g only when the pair is a confident trade-off (each better
    # on some objective): then neither's estimate can come to dominate the other's.
    # Being ahead of g is not enough: a front member that stops on a lucky estimate
    # would knock a true neighbour off the front that its own further seeds would not.
    ahead = better.transpose(0, 2, 1).any(axis=0)  # ahead[a, g]: a confidently better than g somewhere
    contender = np.asarray(~dominates.any(axis=1), dtype=bool)
    resolved = (ahead & ahead.T) | ~contender[None, :]
    np.fill_diagonal(resolved, True)
    decisions: list[Decision] = []
    wanted: list[int] = []
    for i in map(int, np.flatnonzero(racing)):
        doms = np.flatnonzero(dominates[i])
        if doms.size:
            # Stop or wait: settled below, once every other decision is known.
            decisions.append(Decision(i, WAIT, DOMINATED, int(doms[0])))
            continue
        if evidence.seeds[i] >= policy.max_seeds:
            decisions.append(Decision(i, STOP, MAX_SEEDS))
            continue
        open_vs = np.flatnonzero(~resolved[i])
        if not front[i]:
            above = np.flatnonzero(front & ~dominates[i])
            decisions.append(Decision(i, SEED, "off the front, not confidently dominated", int(above[0])))
        elif open_vs.size:
            decisions.append(Decision(i, SEED, "front membership open", int(open_vs[0])))
        elif i == baseline:
            waiting = np.flatnonzero(racing & gain_serves & front)
            if waiting.size:
                decisions.append(Decision(i, SEED, "gains against the baseline open", int(waiting[0])))
            else:
                decisions.append(Decision(i, STOP, SETTLED))
                continue
        elif gain_open[i]:
            decisions.append(Decision(i, SEED, "gain against the baseline open", baseline))
        else:
            decisions.append(Decision(i, STOP, SETTLED))
            continue
        wanted.append(len(decisions) - 1)
    # A baseline that is off the front or settled still serves the gains of racing front members.
    for pos, d in enumerate(decisions):
        if d.index == baseline and d.action == WAIT:
            waiting = np.flatnonzero(racing & gain_serves & front)
            if waiting.size and evidence.seeds[baseline] < policy.max_seeds:
                decisions[pos] = Decision(baseline, SEED, "gains against the baseline open", int(waiting[0]))
                wanted.append(pos)
    if budget_left is not None and len(wanted) > budget_left:
        # Fewest seeds first: the least known configurations gain most from a seed.
        order = sorted(wanted, key=lambda p: (evidence.seeds[decisions[p].index], decisions[p].index))
        for p in order[max(0, budget_left) :]:
            decisions[p] = Decision(decisions[p].index, STOP, BUDGET)
    # A dominated race ends once a configuration that confidently dominates it has ended
    # (or ends now: its estimate is final) or dominates it for good already (robust).
    # Otherwise it waits for them, without seeds.
    ended = ~racing
    for d in decisions:
        ended[d.index] = d.action == STOP
    for pos, d in enumerate(decisions):
        if d.action == WAIT:
            final = np.flatnonzero(dominates[d.index] & (ended | robust[d.index]))
            if final.size:
                decisions[pos] = Decision(d.index, STOP, DOMINATED, int(final[0]))
    return decisions
