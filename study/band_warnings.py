"""One line when a config, a search space or a study splits the stem's grid into a band
without spatial structure (``models.band_bins``; docs/method.md §1, "Band split").

``frequency.cutoff 0.5 with model.stem_kernel 3: the low band is the DC bin alone, so a
low-frequency filter is a constant filter; cutoffs giving real structure for k=3: 0.667 to
0.942``. Such a split is allowed (it is a valid config), but what the study measures is then
not what its names say: ``freqstudy train`` and ``freqstudy run`` print the line as a warning
and the report puts it in its opening paragraph.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from models.band_bins import rings, split_problem, structured_cutoffs_text
from study.config import FrequencySettings, ModelConfig, TrialConfig

__all__ = ["config_warning", "report_note", "space_warnings", "split_warning"]

CUTOFF_KEY = "frequency.cutoff"
KERNEL_KEY = "model.stem_kernel"


def split_warning(k: int, cutoff: float, shown: str | None = None, scope: str = "") -> str | None:
    """The line for kernel ``k`` split at ``cutoff``, or None when both bands hold structure.

    ``shown`` replaces the cutoff's value in the wording (``"searched from 0.3 to 0.9"``) and
    ``scope`` says where the problem holds (``"below 0.667, "``).
    """
    problem = split_problem(k, cutoff)
    if problem is None:
        return None
    shown = f"{cutoff:g}" if shown is None else shown
    return (
        f"{CUTOFF_KEY} {shown} with {KERNEL_KEY} {k}: {scope}{problem}; "
        f"cutoffs giving real structure for k={k}: {structured_cutoffs_text(k)}"
    )


def range_warnings(k: int, low: float, high: float, what: str = "searched") -> list[str]:
    """Lines for cutoffs anywhere in ``[low, high]``: one per stretch between two ring radii
    whose split is degenerate (on the stem's grids: below the first ring after DC)."""
    radii = [r.radius for r in rings(k)] + [float("inf")]
    out = []
    for a, b in zip(radii, radii[1:]):  # the split is the same for every cutoff in [a, b)
        start, stop = max(a, low), min(b, high)
        if start > stop or start >= b:
            continue
        scope = ""
        if (start, stop) != (low, high):
            scope = f"below {b:.3f}, " if start == low else f"from {start:.3f} to {stop:.3f}, "
        out.append(split_warning(k, start, f"{what} from {low:g} to {high:g}", scope))
    return _present(out)


def config_warning(config: TrialConfig) -> str | None:
    """The line for one trial config, or None."""
    return split_warning(config.model.stem_kernel, config.frequency.cutoff)


def _kernel_values(param: Any) -> list[int]:
    if param.type == "choice":
        return [int(c) for c in param.choices]
    step = int(param.step or 1)
    return [k for k in range(int(param.low), int(param.high) + 1, step) if k % 2]


def space_warnings(space: Any) -> list[str]:
    """Lines for a ``study.search.spaces.SearchSpace``: every stem kernel it can give with every
    cutoff it can give (a searched cutoff's whole range; the fixed or default value too where a
    condition leaves a key unsearched for some trials) and the baseline's, without repeats."""
    params = {p.key: p for p in space.parameters}
    kernel, cutoff = params.get(KERNEL_KEY), params.get(CUTOFF_KEY)
    kernels: list[int] = _kernel_values(kernel) if kernel else []
    if kernel is None or kernel.when:
        kernels.append(int(space.fixed.get(KERNEL_KEY, ModelConfig().stem_kernel)))
    lines: list[str | None] = []
    for k in dict.fromkeys(kernels):
        if cutoff is not None and cutoff.type == "choice":
            lines += [split_warning(k, float(c)) for c in cutoff.choices]
        elif cutoff is not None:
            lines += range_warnings(k, float(cutoff.low), float(cutoff.high))
        if cutoff is None or cutoff.when:
            lines.append(split_warning(k, float(space.fixed.get(CUTOFF_KEY, FrequencySettings().cutoff))))
    lines.append(config_warning(TrialConfig.from_flat(space.baseline_flat())))  # what trial 0 builds
    return list(dict.fromkeys(_present(lines)))


def report_note(trials: Sequence[Mapping[str, Any]]) -> str:
    """The report's sentence on the study's band split: empty when every trial's split holds
    structure, else one line per stem kernel naming the degenerate cutoffs it ran."""
    by_kernel: dict[int, set[float]] = {}
    for t in trials:
        params = t.get("params", {})
        try:
            k = int(params.get(KERNEL_KEY, ModelConfig().stem_kernel))
            c = float(params.get(CUTOFF_KEY, FrequencySettings().cutoff))
        except (TypeError, ValueError):
            continue  # an unreadable param is the trial tables' business, not this note's
        if k % 2 and k > 0 and split_problem(k, c) is not None:
            by_kernel.setdefault(k, set()).add(c)
    lines = []
    for k, cutoffs in sorted(by_kernel.items()):
        lo, hi = min(cutoffs), max(cutoffs)
        lines += [split_warning(k, lo, None if lo == hi else f"{lo:g} to {hi:g} ({len(cutoffs)} values)")]
    return " ".join(f"Band split: {line}." for line in _present(lines))


def _present(lines: Iterable[str | None]) -> list[str]:
    return [line for line in lines if line]
