"""Commands, their parsers and CIFAR-10-C workers import nothing heavy until they need it.

Each case runs in a fresh interpreter with an import hook (a ``sitecustomize``
on ``PYTHONPATH``, so spawned workers load it too) that logs every import of a
watched module with the importing process's id. ``freqstudy --help``, each
``freqstudy <cmd> --help`` and argument errors must import none of torch,
scipy.stats, Ray, MLflow or Optuna; a corruption worker running every
corruption must import none of them either (it needs numpy and Pillow, and
scipy only for shot noise and zoom blur, which one worker does together).
Deterministic: what is asserted is which modules were imported,
never how long it took (``freqstudy bench --only startup`` times it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from study.cli import COMMANDS
from tests.cli_runner import freqstudy_command, no_traceback

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "scipy.stats", "ray", "mlflow", "optuna")
# Imported by a worker that did its work: proof that the hook ran where the units ran.
WITNESSES = (
    "study.cifar10c.worker",
    "study.corruptions.noise",
    "study.corruptions.blur",
    "study.corruptions.weather",
    "study.corruptions.digital",
    "study.corruptions.elastic",
    "PIL.Image",
    "scipy.special",  # shot noise's tables
    "scipy.sparse",  # zoom blur's operator
)
# scipy.ndimage's filters are repeated in numpy (study.corruptions._filters): no worker needs it.
NOT_IN_WORKERS = ("scipy.ndimage",)

HOOK = '''
import os, sys

_LOG = os.environ["LEAN_IMPORT_LOG"]
_WATCH = frozenset(os.environ["LEAN_IMPORT_WATCH"].split(","))


def _note(name):
    with open(_LOG, "a") as f:
        f.write(f"{os.getpid()} {name}\\n")


class _Watch:
    """Logs the first import of each watched module; finds nothing itself."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in _WATCH and fullname not in sys.modules:
            _note(fullname)
        return None


_note("<hook>")
for _name in _WATCH & set(sys.modules):  # loaded before this hook (by site): logged too
    _note(_name)
sys.meta_path.insert(0, _Watch())
'''


def run_hooked(tmp_path: Path, args: list[str], watch=HEAVY) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``python *args`` under the hook; returns the process and ``{pid: set of watched modules}``."""
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(HOOK)
    log = tmp_path / "imports.log"
    log.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hook_dir), str(REPO), os.environ.get("PYTHONPATH", "")]),
        "LEAN_IMPORT_LOG": str(log),
        "LEAN_IMPORT_WATCH": ",".join(watch),
    }
    proc = subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    seen: dict[int, set[str]] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        pid, name = line.split(" ", 1)
        seen.setdefault(int(pid), set()).add(name)
    return proc, seen


def heavy(seen: dict[int, set[str]]) -> set[str]:
    return {m for names in seen.values() for m in names if m in HEAVY}


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_imports_nothing_heavy(tmp_path, command):
    argv = [*([command] if command else []), "--help"]
    proc, seen = run_hooked(tmp_path, freqstudy_command(*argv)[1:])  # [1:]: after the interpreter
    assert proc.returncode == 0, proc.stderr[-2000:]
    no_traceback(proc.stderr, argv)
    assert "usage: freqstudy" in proc.stdout
    assert any("<hook>" in names for names in seen.values()), "the import hook did not run"
    assert heavy(seen) == set(), f"freqstudy {command or ''} --help imported {sorted(heavy(seen))}"


@pytest.mark.parametrize(
    "argv",
    [
        ["corrupt", "--workers", "two"],  # argparse: not an integer
        ["nocommand"],  # argparse: unknown command
        ["bench", "--only", "nosuchsection"],  # checked in run(), before the bench loads torch
        ["corrupt", "--data-dir", "d", "--out", "o", "--severities", "9"],  # checked in run()
    ],
)
def test_argument_errors_import_nothing_heavy(tmp_path, argv):
    proc, seen = run_hooked(tmp_path, freqstudy_command(*argv)[1:])
    assert proc.returncode == 2, proc.stderr[-2000:]
    no_traceback(proc.stderr, argv)
    assert "error" in proc.stderr
    assert heavy(seen) == set(), f"freqstudy {' '.join(argv)} imported {sorted(heavy(seen))}"


def test_config_plain_data_without_torch(tmp_path):
    code = "from study.config import known_keys; assert 'frequency.mode' in known_keys()"
    proc, seen = run_hooked(tmp_path, ["-c", code])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert heavy(seen) == set(), f"the config's keys imported {sorted(heavy(seen))}"


def test_hook_sees_a_heavy_import(tmp_path):
    # Teeth: the same hook does log torch where a network is built, and scipy.stats where it is used.
    code = "import study.config; import models.stem; import scipy.stats"
    proc, seen = run_hooked(tmp_path, ["-c", code])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert heavy(seen) == {"torch", "scipy.stats"}


def test_corruption_workers_import_only_what_corruption_needs(tmp_path):
    code = textwrap.dedent(
        """
        import os, sys
        import numpy as np
        from study.cifar10c import generate

        print(os.getpid())
        images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
        generate(images, np.arange(4), sys.argv[1], severities=[1], workers=2, progress=False)
        """
    )
    proc, seen = run_hooked(
        tmp_path, ["-c", code, str(tmp_path / "c")], watch=HEAVY + WITNESSES + NOT_IN_WORKERS
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    parent = int(proc.stdout.split()[0])
    # Spawned processes that took units (multiprocessing's resource tracker is spawned too, idle).
    workers = {p: names for p, names in seen.items() if p != parent and "study.cifar10c.worker" in names}
    assert workers, f"no worker process ran under the hook (processes seen: {sorted(seen)})"
    done = set().union(*workers.values())
    assert set(WITNESSES) <= done, f"the workers never imported {sorted(set(WITNESSES) - done)}"
    assert len(list((tmp_path / "c").glob("*.npy"))) == 20  # 19 corruptions and the labels
    assert heavy(seen) == set(), f"generation imported {sorted(heavy(seen))}: " + str(
        {pid: sorted(names & set(HEAVY)) for pid, names in seen.items()}
    )
    assert not done & set(NOT_IN_WORKERS), f"a worker imported {sorted(done & set(NOT_IN_WORKERS))}"
    # Shot noise and zoom blur are one task (study.cifar10c.schedule.TOGETHER): one worker pays for scipy.
    with_scipy = [p for p, names in workers.items() if names & {"scipy.special", "scipy.sparse"}]
    assert len(with_scipy) == 1, f"{len(with_scipy)} workers imported scipy, expected the one that did both"
