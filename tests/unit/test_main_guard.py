"""A plain script without ``if __name__ == "__main__":`` that generates corruptions (as a
trial does) works: spawned workers would re-run it, so the units run in-process and
one line on stderr says what to add. With the guard, the workers are used."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
BODY = """
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    out = generate(images, np.arange(4), sys.argv[1], corruptions=["contrast", "brightness"],
                   severities=[1, 2], workers=2, progress=False)
    print("done", out)
"""


def run_script(tmp_path: Path, name: str, source: str) -> subprocess.CompletedProcess:
    script = tmp_path / f"{name}.py"
    script.write_text(source)
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / name)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unguarded_script_generates_in_process_with_one_line_of_advice(tmp_path):
    head = "import sys\nimport numpy as np\nfrom study.cifar10c import generate\n"
    proc = run_script(tmp_path, "unguarded", head + textwrap.dedent(BODY))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("done ")
    assert {p.name for p in (tmp_path / "unguarded").glob("*.npy")} == {
        "contrast.npy",
        "brightness.npy",
        "labels.npy",
    }
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert 'if __name__ == "__main__":' in lines[0] and "in this process" in lines[0]


def test_guarded_script_uses_worker_processes(tmp_path):
    head = "import sys\nimport numpy as np\nfrom study.cifar10c import generate\n\ndef main():"
    source = head + BODY + '\n\nif __name__ == "__main__":\n    main()\n'
    proc = run_script(tmp_path, "guarded", source)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip() == ""  # no advice: the pool ran
    assert (tmp_path / "guarded" / "brightness.npy").is_file()
    same = np.load(tmp_path / "guarded" / "contrast.npy")
    assert same.shape == (8, 32, 32, 3)


def test_detection_under_pytest_allows_workers():
    from study.cifar10c.generate import spawn_reruns_caller

    assert spawn_reruns_caller() is False  # pytest's own main module is guarded (or a package main)
