"""What the multi-node and Ray Jobs tests need and production does not: a gate that holds
every trial of a study after an epoch's checkpoint until the test opens it, so a test acts
on a trial that is certainly mid-way (a node removed under it, a job stopped) however fast
or slow the machine is.

``python -m tests.cluster_support GATE run ...`` is ``freqstudy run ...`` whose trials are
the real tracked trial behind the gate ``GATE`` (a folder). A trial held there writes
``GATE/held-<node id>-<trial id>.json`` and waits until ``GATE/open`` exists. The gate travels
with the trainable (a picklable trial function); Ray workers import this module as
``tests.cluster_support`` (the repository root is on their path, as for ``tests.support``).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

# A held trial gives up after this long (the test failed and never opened the gate), so no
# worker waits for ever.
HOLD_LIMIT_S = 600.0


class GatedTrial:
    """The real tracked trial, held after its first checkpointed epoch while the gate is shut."""

    def __init__(self, gate: Path):
        self.gate = Path(gate)

    def __call__(self, cfg, context, runtime, is_baseline) -> dict[str, Any]:
        from study.search.trials import tracked_trial

        return tracked_trial(cfg, context, _GatedRuntime(runtime, self.gate), is_baseline)


class _GatedRuntime:
    def __init__(self, inner, gate: Path):
        self.inner, self.gate = inner, gate
        self.trial_id, self.trial_name, self.tags = inner.trial_id, inner.trial_name, inner.tags

    def report(self, metrics, checkpoint_dir=None):
        self.inner.report(metrics, checkpoint_dir)  # the checkpoint reaches the study first
        if checkpoint_dir is None or (self.gate / "open").exists():
            return
        from study import metrics as M

        node = self.tags.get(M.TAG_NODE, "unknown")
        mark = {"trial": self.trial_id, "node": node, "epoch": metrics.get(M.EPOCHS_COMPLETED)}
        staged = self.gate / f"held-{node}-{self.trial_id}.tmp"
        staged.write_text(json.dumps(mark))
        staged.replace(staged.with_suffix(".json"))  # whole or absent for the test's reader
        deadline = time.monotonic() + HOLD_LIMIT_S
        while not (self.gate / "open").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.gate}: the gate stayed shut for {HOLD_LIMIT_S:.0f} s")
            time.sleep(0.2)

    def restore(self, into):
        return self.inner.restore(into)


def held_trials(gate: Path) -> list[tuple[str, str]]:
    """``(trial id, node id)`` of every trial that has waited at the gate, in the order they came."""
    marks = sorted(Path(gate).glob("held-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return [(m["trial"], m["node"]) for m in (json.loads(p.read_text()) for p in marks)]


def main(argv: list[str]) -> int:
    """``freqstudy`` with every study's trials behind the gate ``argv[0]``."""
    from study.cli import main as freqstudy
    from study.search import tune

    tune.run_study = functools.partial(tune.run_study, trial_fn=GatedTrial(Path(argv[0])))
    return freqstudy(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
