"""A study's result as Markdown: what the platform found, every number with its interval.

For each configuration (replicates taken together): its clean and CIFAR-10-C
accuracy on the test set (reported, never chosen on) and on the validation copy
(what the search optimised), each as the mean over seeds with a 95% interval
(:mod:`study.analysis.seedlevel`'s logit t interval with R >= 2 seeds, within [0, 100];
an image bootstrap of the one network with R = 1); and its difference from the
baseline configuration, overall and per corruption category, with interval,
p-value and multiplicity-adjusted p (gain and clean drop: Holm over every
configuration, the primary family; categories: Benjamini-Hochberg). Each row
says its seeds and what its intervals speak of (configurations, or two trained
networks with one seed). Pure: outcomes and configuration records in, text out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from study import metrics as M
from study.analysis.gains import GAINS, Gain
from study.analysis.outcomes import Outcomes
from study.analysis.paired import compare_groups, gain_interval, group_summary
from study.reporting.formatting import DASH, fmt_p, with_ci
from study.selection.race_outcomes import other_labels, race_of, race_text, seeds_text

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


def _ci(mean: float, lo: float, hi: float, signed: bool = False, digits: int = 2) -> str:
    if not all(math.isfinite(v) for v in (mean, lo, hi)):
        return DASH
    return with_ci(mean, (lo, hi), digits, signed, minus="-")


def results_rows(
    records: Sequence[Mapping[str, Any]],
    groups: Mapping[str, Sequence[Outcomes]],
    baseline_id: str,
    *,
    gains: Mapping[str, Mapping[str, Gain]] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per configuration with outcomes: accuracies, gains and per-category
    differences from the baseline.

    Args:
        records: configuration records (``study.selection.configurations``), baseline included.
        groups: record run id -> the outcomes of its replicates.
        baseline_id: the baseline record's run id.
        gains: record run id -> split -> its gains against the baseline, as already computed
            (``Choice.gains``); a configuration or split without them gets them from
            :func:`~study.analysis.paired.gain_interval` here.

    Row fields: ``run_id``, ``label``, ``replicates`` (runs with outcomes), ``seeds`` (what the
    configuration got, as shown), ``race`` (:class:`~study.selection.race_outcomes.Race`), ``race_text``,
    ``baseline``; per evaluated split,
    ``<split>`` (statistic -> ``(mean, low, high)``, its own), ``<split>_gains`` (gain name
    -> Difference) and ``<split>_diff`` (``category/<cat>`` -> Difference).
    """
    base = list(groups[baseline_id])
    label = other_labels(records, label_of)
    rows = []
    for r in records:
        group = list(groups.get(r["run_id"]) or [])
        if not group:
            continue
        row: dict[str, Any] = {
            "run_id": r["run_id"],
            "label": label_of(r),
            "replicates": len(group),
            # A plain trial record (no configuration fields) has the seeds it was given.
            "seeds": seeds_text(r) if "race_reason" in r else str(len(group)),
            "race": race_of(r),
            "race_text": race_text(race_of(r), label),
            "baseline": r["run_id"] == baseline_id,
        }
        for split in ("val", "test"):
            if not all(split in o.splits for o in group):
                continue
            own = group_summary(group, split, seed=seed, statistics=["clean_acc", "corruption_acc"])
            row[split] = {k: (s.mean, s.ci_low, s.ci_high) for k, s in own.items()}
            row[f"{split}_clean_images"] = own["clean_acc"].n_images
            limit = own["corruption_acc"].n_images if "corruption_acc" in own else 0
            if 0 < limit < own["clean_acc"].n_images:
                # eval.corruption_limit: CIFAR-10-C covers the first L source images only; the clean
                # column beside it is recomputed on the same L images (row i of every key is image i).
                row[split]["clean_acc"] = _clean_on_first(group, split, limit)
                row[f"{split}_clean_images"] = limit
            known = (gains or {}).get(r["run_id"], {}).get(split)
            evaluated = {k.split("/")[1] for k in group[0].keys(split)}
            wanted = [f"category/{c}" for c in CATEGORIES if evaluated & set(M.CATEGORIES[c])]
            try:
                row[f"{split}_gains"] = (
                    known if known is not None else gain_interval(base, group, split, seed=seed)
                )
                diffs = compare_groups(base, group, split, seed=seed, statistics=wanted) if wanted else []
            except ValueError:
                # Evaluated on other images than the baseline's: no paired comparison, so the
                # configuration is left out of this split's tables (as pareto leaves its gains blank).
                del row[split]
                continue
            row[f"{split}_diff"] = {d.name: d for d in diffs}
        rows.append(row)
    _adjust(rows)
    return rows


def _clean_on_first(group: Sequence[Outcomes], split: str, limit: int) -> tuple[float, float, float]:
    """Clean accuracy (mean, low, high; percent) of a configuration on the first ``limit`` source
    images: seedlevel's logit interval (within [0, 100]; with one run, of that network)."""
    import numpy as np

    from study.analysis.outcomes import clean_key
    from study.analysis.seedlevel import configuration_level

    y = np.stack([o.arrays[clean_key(split)][:limit] for o in group]).astype(np.float64)
    iv = configuration_level(y)
    return iv.estimate, iv.ci_low, iv.ci_high


def _adjust(rows: list[dict[str, Any]]) -> None:
    """Per split, in place: the primary family (every configuration's robustness gain and clean
    drop) Holm-adjusted, the per-category differences Benjamini-Hochberg (secondary)."""
    from dataclasses import replace

    from study.analysis.multiplicity import PRIMARY, SECONDARY, adjust

    for split in ("val", "test"):
        mine = [r for r in rows if not r["baseline"] and split in r]
        for fam, field, names in (
            (PRIMARY, f"{split}_gains", (M.ROBUSTNESS_GAIN, M.CLEAN_DROP)),
            (SECONDARY, f"{split}_diff", tuple(f"category/{c}" for c in CATEGORIES)),
        ):
            cells = [(r, n) for r in mine for n in names if n in r[field]]
            if not cells:
                continue
            adj = adjust([r[field][n].p_value for r, n in cells], fam)
            for (r, n), p in zip(cells, adj, strict=True):
                table = r[field] if isinstance(r[field], dict) else dict(r[field].differences)
                table[n] = replace(r[field][n], family=fam, p_adjusted=float(p))
                r[field] = table if isinstance(r[field], dict) else Gain(table)


def markdown_table(rows: Sequence[Mapping[str, Any]], split: str) -> str:
    """Accuracy and gains (every entry of the gain table) of every configuration on ``split``,
    the baseline first."""
    heads = [f"{split} clean acc (%)", f"{split} CIFAR-10-C acc (%)"]
    aligns = ["---", "---"]
    for g in GAINS:
        heads.append(g.label)
        aligns.append("---")
        if g.has_p:
            heads += ["p", "p adj (Holm)"]
            aligns += ["---:", "---:"]
    # A racing study says why each configuration got no more seeds; a study of fixed seeds keeps
    # today's columns (the published results.md of one is regenerated byte for byte).
    raced = any(r["race"].raced for r in rows if split in r)
    race_head, race_align = ("race ended | ", "---|") if raced else ("", "")
    lines = [
        f"| configuration | seeds | {race_head}intervals about | " + " | ".join(heads) + " |",
        f"|---|---:|{race_align}---|" + "|".join(aligns) + "|",
    ]
    counts: set[Any] = set()
    for r in sorted(rows, key=lambda r: (not r["baseline"], r["label"])):
        if split not in r:
            continue
        own, gains = r[split], r[f"{split}_gains"]
        counts.add(r.get(f"{split}_clean_images"))
        cells = [_ci(*own["clean_acc"]), _ci(*own["corruption_acc"])]
        for g in GAINS:
            d = None if r["baseline"] else gains[g.name]
            cells.append(DASH if d is None else _ci(g.value(d), *g.interval(d), g.signed, g.digits))
            if g.has_p:
                cells.append(DASH if d is None else fmt_p(d.p_value))
                cells.append(DASH if d is None else fmt_p(d.p_adjusted))
        lines.append(
            f"| {r['label']}{' (baseline)' if r['baseline'] else ''} | {r['seeds']} | "
            + (f"{r['race_text']} | " if raced else "")
            + f"{_about(r, split)} | "
            + " | ".join(cells)
            + " |"
        )
    shown = sorted(c for c in counts if c is not None)
    lines += [
        "",
        f"Clean and CIFAR-10-C accuracy above are on the same source images ({', '.join(map(str, shown))} "
        "per run: the first ones, as eval.corruption_limit takes them); the clean drop uses every clean "
        "image evaluated.",
    ]
    return "\n".join(lines)


def _about(row: Mapping[str, Any], split: str) -> str:
    """What a row's gain intervals speak of, with the seed share of their variance."""
    d = None if row["baseline"] else row[f"{split}_gains"][GAINS[0].name]
    if d is None:
        return "configurations" if row["replicates"] >= 2 else "one network"
    if d.scope != "configurations":
        return "two trained networks (1 seed)"
    share = f", {100 * d.seed_share:.0f}% seed variance" if math.isfinite(d.seed_share) else ""
    return "configurations ({}v{} seeds{})".format(*d.replicates, share)


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
                DASH
                if x is None
                else f"{_ci(x.diff, x.ci_low, x.ci_high, True)} (p {fmt_p(x.p_value)}, "
                f"BH {fmt_p(x.p_adjusted)})"
            )
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
