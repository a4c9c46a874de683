"""The statistic table: every statistic a paired comparison reports, defined once.

Pure (numpy and scipy). A statistic is one entry of :data:`STATISTICS`: which of a
split's outcome keys it averages (``select``), and its :class:`Kind`, which says how
those keys reduce to one score per source image, how the point values follow from
the scores, which test gives its p-value and which contrast the bootstraps resample.
:mod:`study.analysis.paired` (``compare_runs``, ``compare_groups``, ``group_summary``),
the report's interval set and ``freqstudy compare`` all iterate over this table; adding
a statistic is adding an entry (and its test). Accuracies are percent; a
:data:`RATIO` statistic (relative mCE) is percent of A's summed error and needs an A
(it is left out of a configuration's own summary).

Order of the table is the order of every report: clean, corruption mean, extras,
relative mCE, categories, corruptions, and on request corruption x severity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from study.analysis.outcomes import Outcomes, clean_key, parse_key
from study.analysis.resampling import MCNEMAR, SIGN_FLIP, mcnemar_p, sign_flip_p
from study.metrics import BENCHMARK_CORRUPTIONS, CATEGORIES, EXTRA_CORRUPTIONS

Arrays = Mapping[str, np.ndarray]


def _single_scores(arrays: Arrays, keys: Sequence[str]) -> np.ndarray:
    return arrays[keys[0]].astype(np.float64)


def _mean_scores(arrays: Arrays, keys: Sequence[str]) -> np.ndarray:
    return np.asarray(np.mean([arrays[k] for k in keys], axis=0, dtype=np.float64))


def _summed_error_scores(arrays: Arrays, keys: Sequence[str]) -> np.ndarray:
    # Per image: sum over corruptions of the error averaged over that corruption's severities.
    per_corruption: dict[str, list[np.ndarray]] = {}
    for k in keys:
        per_corruption.setdefault(str(parse_key(k)[1]), []).append(arrays[k])
    return np.sum([1.0 - np.mean(v, axis=0, dtype=np.float64) for v in per_corruption.values()], axis=0)


def _accuracy_points(sa: np.ndarray, sb: np.ndarray) -> tuple[float, float]:
    if not sa.size:
        return math.nan, math.nan
    return 100.0 * float(sa.mean()), 100.0 * float(sb.mean())


def _ratio_points(sa: np.ndarray, sb: np.ndarray) -> tuple[float, float]:
    # A against itself is 100 by definition; B is 100 x mean summed error of B / of A.
    return 100.0, (100.0 * float(sb.mean() / sa.mean()) if sa.size and sa.sum() > 0 else math.nan)


def _mcnemar(a: Arrays, b: Arrays, keys: Sequence[str], d: np.ndarray, n_permutations: int, seed: int):
    return mcnemar_p(a[keys[0]], b[keys[0]])


def _sign_flip(a: Arrays, b: Arrays, keys: Sequence[str], d: np.ndarray, n_permutations: int, seed: int):
    return sign_flip_p(d, n_permutations, seed)


@dataclass(frozen=True)
class Kind:
    """How a statistic's keys become per-image scores, point values and a test.

    Attributes:
        name: ``single``, ``mean`` or ``ratio``.
        scores: ``(arrays, keys) -> (n,)`` float64 per-image score of one run.
        points: ``(scores A, scores B) -> (a, b)``; for two runs, or each group's
            scores stacked ``(R, n)`` (the mean is over runs and images).
        test: the p-value's test for two runs (``mcnemar-exact`` or ``sign-flip-permutation``).
        p_value: ``(arrays A, arrays B, keys, d = scores B - A, n_permutations, seed) -> p``.
        contrast: what the bootstraps resample: ``"diff"`` (100 x mean(B - A), points)
            or ``"ratio"`` (100 x mean B / mean A - 100, percent; resampled as a pair).
        relative: defined only against an A (no own value: left out of group summaries).
    """

    name: str
    scores: Callable[[Arrays, Sequence[str]], np.ndarray]
    points: Callable[[np.ndarray, np.ndarray], tuple[float, float]]
    test: str
    p_value: Callable[..., float]
    contrast: str
    relative: bool = False


SINGLE = Kind("single", _single_scores, _accuracy_points, MCNEMAR, _mcnemar, "diff")
MEAN = Kind("mean", _mean_scores, _accuracy_points, SIGN_FLIP, _sign_flip, "diff")
RATIO = Kind("ratio", _summed_error_scores, _ratio_points, SIGN_FLIP, _sign_flip, "ratio", relative=True)


@dataclass(frozen=True)
class KeyIndex:
    """A split's outcome keys by corruption: ``by_name[corruption]`` is its keys in severity order."""

    split: str
    by_name: Mapping[str, Sequence[str]]

    def of(self, names: Collection[str]) -> tuple[str, ...]:
        """The keys of ``names`` (in ``names``' order) that were evaluated."""
        return tuple(k for n in names for k in self.by_name.get(n, ()))


@dataclass(frozen=True)
class Statistic:
    """One entry of the table: a statistic, or a family of them (``category/<cat>``).

    Attributes:
        family: the name, or its pattern (``corruption/<name>``), for documentation.
        kind: :data:`SINGLE`, :data:`MEAN` or :data:`RATIO`.
        select: ``KeyIndex -> [(name, keys)]``: the statistics of the family that the
            split's keys support, and the outcome keys each reduces over.
        per_severity: computed only on request (``per_severity=True``).
    """

    family: str
    kind: Kind
    select: Callable[[KeyIndex], list[tuple[str, tuple[str, ...]]]]
    per_severity: bool = False


def _named(name: str, keys: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    return [(name, keys)] if keys else []


STATISTICS: list[Statistic] = [
    Statistic("clean_acc", SINGLE, lambda ix: [("clean_acc", (clean_key(ix.split),))]),
    Statistic("corruption_acc", MEAN, lambda ix: _named("corruption_acc", ix.of(BENCHMARK_CORRUPTIONS))),
    Statistic("extra_acc", MEAN, lambda ix: _named("extra_acc", ix.of(EXTRA_CORRUPTIONS))),
    Statistic("relative_mce", RATIO, lambda ix: _named("relative_mce", ix.of(BENCHMARK_CORRUPTIONS))),
    Statistic(
        "category/<category>",
        MEAN,
        lambda ix: [(f"category/{c}", ix.of(m)) for c, m in CATEGORIES.items() if ix.of(m)],
    ),
    Statistic(
        "corruption/<name>", MEAN, lambda ix: [(f"corruption/{n}", tuple(k)) for n, k in ix.by_name.items()]
    ),
    Statistic(
        "corruption/<name>/<severity>",
        SINGLE,
        lambda ix: [(f"corruption/{n}/{parse_key(k)[2]}", (k,)) for n, ks in ix.by_name.items() for k in ks],
        per_severity=True,
    ),
]


@dataclass(frozen=True)
class Stat:
    """One statistic on one split's keys: its name, its kind and the keys it reduces over."""

    name: str
    kind: Kind
    keys: tuple[str, ...]

    def scores(self, outcomes: Outcomes) -> np.ndarray:
        """``(n,)`` float64 per-image score of one run."""
        return self.kind.scores(outcomes.arrays, self.keys)


def key_index(keys: Sequence[str], split: str) -> KeyIndex:
    by_name: dict[str, list[str]] = {}
    for key in keys:
        _, name, _ = parse_key(key)
        if name is not None:
            by_name.setdefault(name, []).append(key)
    return KeyIndex(split, by_name)


def statistics_of(
    keys: Sequence[str], split: str, *, per_severity: bool = False, relative: bool = True
) -> list[Stat]:
    """The statistics a split's keys support, in table order (``relative``: with those that
    need an A, such as relative mCE; ``per_severity``: with the on-request ones)."""
    ix = key_index(keys, split)
    out: list[Stat] = []
    for entry in STATISTICS:
        if (entry.per_severity and not per_severity) or (entry.kind.relative and not relative):
            continue
        out.extend(Stat(name, entry.kind, ks) for name, ks in entry.select(ix))
    return out


def select(available: list[Stat], statistics: Collection[str] | None) -> list[Stat]:
    """``available`` restricted to the names in ``statistics`` (all when None), table order.

    Raises:
        ValueError: naming the statistics the outcomes do not support, and those they do.
    """
    if statistics is None:
        return available
    names = {s.name: s for s in available}
    missing = [s for s in statistics if s not in names]
    if missing:
        raise ValueError(
            f"paired: statistics not available on these outcomes: {', '.join(missing)} "
            f"(have {', '.join(names)})"
        )
    wanted = set(statistics)
    return [s for s in available if s.name in wanted]


def available_statistics(outcomes: Outcomes, split: str, *, relative: bool = False) -> set[str]:
    """Names of the statistics a run's outcomes support on ``split`` (by default those a
    configuration has on its own, as :func:`~study.analysis.paired.group_summary` gives)."""
    return {s.name for s in statistics_of(outcomes.keys(split), split, relative=relative)}
