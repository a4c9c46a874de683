"""A study's result as Markdown: what the platform found, every number with its interval.

For each configuration (replicates taken together): its clean and CIFAR-10-C
accuracy on the test set (reported, never chosen on) and on the validation copy
(what the search optimised), each as the mean over seeds with a 95% interval
from the two-level bootstrap (seeds, then images); and its difference from the
baseline configuration, overall and per corruption category, with interval and
p-value. Pure: outcomes and configuration records in, text out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from study import metrics as M
from study.analysis.outcomes import Outcomes
from study.analysis.paired import compare_groups, group_summary

CATEGORIES = tuple(M.CATEGORIES)


def label_of(record: Mapping[str, Any]) -> str:
    """``fixed p=0.25 σ=0.5``: a configuration in the words of the method."""
    params = record.get("params", {})
    mode = params.get("frequency.mode", "?")
    parts = [mode]
    if mode == "fixed":
        parts.append(f"p={float(params.get('frequency.proportion', 'nan')):g}")
    if mode == "learned" and float(params.get("frequency.proportion_weight", 0) or 0) > 0:
        parts.append(f"λ={float(params['frequency.proportion_weight']):g}")
    parts.append(f"σ={float(params.get('frequency.perturbation', 0) or 0):g}")
    if M.learned_form_of(record) == M.LEGACY_LEARNED_FORM:
        parts.append("(earlier band-gains form)")
    return " ".join(parts)


def _ci(mean: float, lo: float, hi: float, signed: bool = False) -> str:
    if not all(math.isfinite(v) for v in (mean, lo, hi)):
        return "–"
    f = "+.2f" if signed else ".2f"
    return f"{mean:{f}} [{lo:{f}}, {hi:{f}}]"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def configuration_rows(
    records: Sequence[Mapping[str, Any]],
    groups: Mapping[str, Sequence[Outcomes]],
    baseline_id: str,
    *,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per configuration with outcomes: accuracies and differences from the baseline.

    Args:
        records: configuration records (``study.selection.configurations``), baseline included.
        groups: record run id -> the outcomes of its replicates.
        baseline_id: the baseline record's run id.
    """
    base = list(groups[baseline_id])
    rows = []
    for r in records:
        group = list(groups.get(r["run_id"]) or [])
        if not group:
            continue
        row: dict[str, Any] = {
            "run_id": r["run_id"],
            "label": label_of(r),
            "replicates": len(group),
            "baseline": r["run_id"] == baseline_id,
        }
        for split in ("val", "test"):
            if not all(split in o.splits for o in group):
                continue
            own = group_summary(group, split, seed=seed, statistics=["clean_acc", "corruption_acc"])
            row[split] = {k: (s.mean, s.ci_low, s.ci_high) for k, s in own.items()}
            evaluated = {k.split("/")[1] for k in group[0].keys(split)}
            wanted = ["clean_acc", "corruption_acc", "relative_mce"] + [
                f"category/{c}" for c in CATEGORIES if evaluated & set(M.CATEGORIES[c])
            ]
            diffs = compare_groups(base, group, split, seed=seed, statistics=wanted)
            row[f"{split}_diff"] = {d.name: d for d in diffs}
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]], split: str) -> str:
    """Accuracy and gains of every configuration on ``split``, the baseline first."""
    head = (
        f"| configuration | seeds | {split} clean acc (%) | {split} CIFAR-10-C acc (%) | "
        "robustness gain (points) | p | clean drop (points) | p | relative mCE (%) |\n"
        "|---|---:|---|---|---|---:|---|---:|---|"
    )
    lines = [head]
    for r in sorted(rows, key=lambda r: (not r["baseline"], r["label"])):
        if split not in r:
            continue
        own, d = r[split], r[f"{split}_diff"]
        gain, clean, mce = d["corruption_acc"], d["clean_acc"], d.get("relative_mce")
        lines.append(
            f"| {r['label']}{' (baseline)' if r['baseline'] else ''} | {r['replicates']} | "
            f"{_ci(*own['clean_acc'])} | {_ci(*own['corruption_acc'])} | "
            f"{'–' if r['baseline'] else _ci(gain.diff, gain.ci_low, gain.ci_high, True)} | "
            f"{'–' if r['baseline'] else _p(gain.p_value)} | "
            f"{'–' if r['baseline'] else _ci(-clean.diff, -clean.ci_high, -clean.ci_low, True)} | "
            f"{'–' if r['baseline'] else _p(clean.p_value)} | "
            f"{'–' if r['baseline'] or mce is None else _ci(mce.b, mce.ci_low + 100, mce.ci_high + 100)} |"
        )
    return "\n".join(lines)


def category_table(rows: Sequence[Mapping[str, Any]], split: str) -> str:
    """Robustness gain against the baseline per corruption category, with intervals."""
    lines = [
        "| configuration | " + " | ".join(f"{c} gain (points)" for c in CATEGORIES) + " |",
        "|---|" + "---|" * len(CATEGORIES),
    ]
    for r in sorted(rows, key=lambda r: r["label"]):
        if r["baseline"] or split not in r:
            continue
        d = r[f"{split}_diff"]
        cells = []
        for c in CATEGORIES:
            x = d.get(f"category/{c}")
            cells.append(
                "–" if x is None else f"{_ci(x.diff, x.ci_low, x.ci_high, True)} (p {_p(x.p_value)})"
            )
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
