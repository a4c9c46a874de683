"""The study's console: one compact view of the trials, without Ray.

``study.search.tune`` forwards Tune's trial events here (start, each result,
end, retry, failure). On a terminal the view is a short block — a header line
and one row per running trial: configuration in short, status, epoch/epochs,
the objectives, p̂, elapsed — redrawn in place; when stdout is not a terminal
(a log file, a pipe) it is plain lines at events only: a trial's start, its
progress at most once per ``progress_every_s``, its end. Either way each trial
that ends leaves one line with its objectives, and the end summary
(``study.search.summary.format_summary``) follows the view.

The formatting functions are pure (values in, strings out); :class:`StudyConsole`
keeps the state and writes to ``sys.stdout`` as it is at each write, so it
pickles (Tune stores its callbacks with the experiment).
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from study import metrics as M
from study.search.spaces import BASELINE_FLAG
from study.search.trials import CONFIG_ID_KEY, REPLICATE_KEY, config_replicate

# Short names of the usual searched keys; any other key shows its last dotted part.
SHORT_KEYS = {
    "frequency.mode": "",
    "frequency.proportion": "p",
    "frequency.perturbation": "σ",
    "frequency.cutoff": "r_c",
    "frequency.proportion_weight": "λ",
    "frequency.threshold": "τ",
    "model.stem_kernel": "k",
    "train.lr": "lr",
}
ACTIVE = ("pending", "running", "retrying")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def short_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return ",".join(short_value(x) for x in v)
    return str(v)


def short_config(config: Mapping[str, Any]) -> str:
    """``fixed p=0.527 σ=0.212 lr=0.0692``; ``baseline`` for the study's baseline trial;
    ``#2`` appended for replicate 2 of a replicated configuration."""
    replicate = f" #{config_replicate(config)}" if REPLICATE_KEY in config else ""
    if config.get(BASELINE_FLAG):
        return "baseline" + replicate
    known = list(SHORT_KEYS)
    keys = sorted(
        (k for k in config if k not in (BASELINE_FLAG, REPLICATE_KEY, CONFIG_ID_KEY)),
        key=lambda k: (known.index(k) if k in known else len(known), k),
    )
    parts = []
    for key in keys:
        name = SHORT_KEYS.get(key, key.rsplit(".", 1)[-1])
        parts.append(short_value(config[key]) if not name else f"{name}={short_value(config[key])}")
    return (" ".join(parts) or "-") + replicate


def metric_text(value: Any, digits: int = 2) -> str:
    if not _number(value) or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def elapsed_text(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, s = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def error_line(error_file: str | None) -> str | None:
    """The last line of a trial's latest error (its ``error.txt``), as the summary shows it."""
    try:
        with open(error_file) as f:  # type: ignore[arg-type]
            lines = [line.strip() for line in f.read().splitlines() if line.strip()]
    except (OSError, TypeError):
        return None
    return lines[-1][:300] if lines else None


def seed_line(config_id: str, config: str, seed: int, reason: str, other: str | None) -> str:
    """``race 3848fd60 fixed p=0.527: seed 3 added (front membership open vs baseline)``;
    ``seed`` counts the configuration's seeds with this one."""
    return f"race {config_id} {config}: seed {seed} added ({reason}{f' vs {other}' if other else ''})"


def wait_line(config_id: str, config: str, seeds: int, other: str | None) -> str:
    """``race 3848fd60 fixed p=0.527: waits at 2 seeds (dominated by 1a2b3c4d ..., still racing)``."""
    by = f" by {other}" if other else ""
    plural = "" if seeds == 1 else "s"
    return f"race {config_id} {config}: waits at {seeds} seed{plural} (dominated{by}, still racing)"


def stop_line(
    config_id: str,
    config: str,
    seeds: int,
    reason: str,
    other: str | None,
    told: Mapping[str, float] | None,
    objectives: Sequence[str],
) -> str:
    """``race 3848fd60 baseline: ended after 4 seeds (settled); told val/clean_acc 51.20 ...``."""
    why = f"{reason}{f' by {other}' if other and reason == 'dominated' else f' vs {other}' if other else ''}"
    head = f"race {config_id} {config}: ended after {seeds} seed{'' if seeds == 1 else 's'} ({why}); "
    if told is None:
        return head + "no seed finished: told as failed"
    return head + "told " + "  ".join(f"{o} {metric_text(told.get(o))}" for o in objectives)


@dataclass
class TrialRow:
    """What the console shows of one trial."""

    trial_id: str
    config: str
    epochs: int
    started: float
    status: str = "running"
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    ended: float | None = None
    attempts: int = 1
    error: str | None = None
    last_line: float = 0.0  # when its last plain progress line was written


def trial_line(row: TrialRow, objectives: Sequence[str], now: float) -> str:
    """One plain line: ``trial 3848fd60 finished  baseline  epoch 2/2  val/clean_acc 15.58 ...  13 s``."""
    parts = [f"trial {row.trial_id} {row.status:<8}", row.config, f"epoch {row.epoch}/{row.epochs}"]
    parts += [f"{o} {metric_text(row.metrics.get(o))}" for o in objectives]
    parts.append(f"p̂ {metric_text(row.metrics.get(M.FILTER_PROPORTION), 3)}")
    parts.append(elapsed_text((row.ended or now) - row.started))
    line = "  ".join(parts)
    if row.error:
        line += f"  error: {row.error}"
    return line


def table(rows: Sequence[TrialRow], objectives: Sequence[str], now: float) -> list[str]:
    """Aligned rows (with a header) for the live view."""
    head = ["trial", "config", "status", "epoch", *objectives, "p̂", "elapsed"]
    cells = [head]
    for r in rows:
        cells.append(
            [
                r.trial_id,
                r.config,
                r.status if r.attempts == 1 else f"{r.status} ({r.attempts})",
                f"{r.epoch}/{r.epochs}",
                *(metric_text(r.metrics.get(o)) for o in objectives),
                metric_text(r.metrics.get(M.FILTER_PROPORTION), 3),
                elapsed_text(now - r.started),
            ]
        )
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]


class StudyConsole:
    """The study's console (see the module docstring).

    Args:
        study: the study's name, for the header.
        objectives: the objective metrics, shown for every trial.
        epochs: the trials' training epochs (a trial whose config sets ``train.epochs`` shows its own).
        num_trials: how many trials the study runs, for the header.
        live: redraw a block in place (a terminal); None = when stdout is a terminal.
        progress_every_s: without ``live``, the least time from a trial's start or its last
            progress line to its next one.
        clock: seconds, for elapsed times (tests pass their own).
    """

    def __init__(
        self,
        study: str,
        objectives: Sequence[str],
        epochs: int,
        num_trials: int,
        *,
        live: bool | None = None,
        progress_every_s: float = 10.0,
        clock=time.monotonic,
    ) -> None:
        self.study = study
        self.objectives = tuple(objectives)
        self.epochs = epochs
        self.num_trials = num_trials
        self.live = live
        self.progress_every_s = progress_every_s
        self.clock = clock
        self.rows: dict[str, TrialRow] = {}
        self.began = self.clock()
        self._drawn = 0  # lines of the live block on screen now
        self._last_draw = 0.0
        self._notes: list[str] = []  # race lines waiting for the trial line that led to them

    # -- output -------------------------------------------------------------------------

    def _is_live(self) -> bool:
        if self.live is None:
            try:
                self.live = sys.stdout.isatty()
            except (AttributeError, ValueError):
                self.live = False
        return self.live

    def _write(self, lines: Sequence[str]) -> None:
        """Lines that stay (above the live block, which is redrawn after them), then the
        race lines waiting (:meth:`note`)."""
        lines, self._notes = [*lines, *self._notes], []
        out = sys.stdout
        if self._is_live():
            out.write(self._erase() + "".join(line + "\n" for line in lines) + self._block())
        else:
            out.write("".join(line + "\n" for line in lines))
        out.flush()

    def _erase(self) -> str:
        drawn, self._drawn = self._drawn, 0
        return f"\x1b[{drawn}F\x1b[J" if drawn else ""

    def _block(self) -> str:
        now = self.clock()
        self._last_draw = now
        active = [r for r in self.rows.values() if r.status in ACTIVE]
        lines = [self.header(now)]
        if active:
            lines += ["  " + line for line in table(active, self.objectives, now)]
        width = max(20, shutil.get_terminal_size((120, 24)).columns - 1)
        lines = [line[:width] for line in lines]
        self._drawn = len(lines)
        return "".join(line + "\n" for line in lines)

    def refresh(self, *, min_interval_s: float = 1.0) -> None:
        """Redraw the live block (elapsed times move); at most once per ``min_interval_s``."""
        if self._notes:
            self._write([])
        if not self._is_live() or self.clock() - self._last_draw < min_interval_s:
            return
        sys.stdout.write(self._erase() + self._block())
        sys.stdout.flush()

    def close(self) -> None:
        """Take the live block off the screen before the summary is printed."""
        if self._notes:
            self._write([])
        if self._is_live() and self._drawn:
            sys.stdout.write(self._erase())
            sys.stdout.flush()

    # -- state --------------------------------------------------------------------------

    def header(self, now: float) -> str:
        counts = {}
        for r in self.rows.values():
            counts[r.status] = counts.get(r.status, 0) + 1
        done = sum(v for k, v in counts.items() if k not in ACTIVE)
        running = sum(v for k, v in counts.items() if k in ACTIVE)
        detail = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()) if k not in ACTIVE)
        return (
            f"study {self.study}: {done}/{self.num_trials} trials done"
            f"{f' ({detail})' if detail else ''}, {running} running, {elapsed_text(now - self.began)}"
        )

    def begin(self, text: str) -> None:
        """The study's opening line; the study's elapsed time counts from here."""
        self.began = self.clock()
        self._write([text])

    def _row(self, trial_id: str, config: Mapping[str, Any] | None = None) -> TrialRow:
        row = self.rows.get(trial_id)
        if row is None:
            config = config or {}
            epochs = config.get("train.epochs", self.epochs)
            row = TrialRow(
                trial_id=trial_id,
                config=short_config(config),
                epochs=int(epochs) if _number(epochs) else self.epochs,
                started=self.clock(),
            )
            row.last_line = row.started
            self.rows[trial_id] = row
        return row

    def _update(self, row: TrialRow, metrics: Mapping[str, Any]) -> None:
        for k, v in metrics.items():
            if _number(v):
                row.metrics[k] = float(v)
        if _number(metrics.get(M.EPOCHS_COMPLETED)):
            row.epoch = int(metrics[M.EPOCHS_COMPLETED])

    def started(self, trial_id: str, config: Mapping[str, Any]) -> None:
        """A trial started (or restarted after a crash, or continues on ``--resume``)."""
        row = self.rows.get(trial_id)
        if row is not None and row.status == "retrying":
            row.status = "running"
            self._write([])
            return
        row = self._row(trial_id, config)
        row.status = "running"
        self._write([] if self._is_live() else [f"trial {row.trial_id} {'started':<8}  {row.config}"])

    def result(self, trial_id: str, metrics: Mapping[str, Any]) -> None:
        """A trial reported (once per epoch, and its final report)."""
        row = self._row(trial_id)
        self._update(row, metrics)
        now = self.clock()
        if self._is_live():
            self.refresh(min_interval_s=0.0)
        elif "trial_status" not in metrics and now - row.last_line >= self.progress_every_s:
            row.last_line = now
            self._write([trial_line(row, self.objectives, now)])

    def ended(self, trial_id: str, metrics: Mapping[str, Any]) -> None:
        """A trial completed: finished, diverged or stopped (``trial_status`` of its final report)."""
        row = self._row(trial_id)
        self._update(row, metrics)
        row.status = str(metrics.get("trial_status") or "finished")
        row.ended = self.clock()
        self._write([trial_line(row, self.objectives, row.ended)])

    def retrying(self, trial_id: str, error: str | None) -> None:
        """A trial crashed and is retried from its last checkpoint."""
        row = self._row(trial_id)
        row.status = "retrying"
        row.attempts += 1
        line = f"trial {row.trial_id} crashed ({error or 'see the Tune experiment folder'}); retrying"
        self._write([line])

    def note(self, line: str) -> None:
        """A line of the study's own (a race's seed or end): Tune tells the searcher of a
        trial's end before the console, so the line waits for the trial's own line (or the
        next redraw) and follows it."""
        self._notes.append(line)

    def failed(self, trial_id: str, error: str | None) -> None:
        """A trial crashed for good (retries spent)."""
        row = self._row(trial_id)
        row.status = "failed"
        row.error = error or "see the Tune experiment folder"
        row.ended = self.clock()
        self._write([trial_line(row, self.objectives, row.ended)])
