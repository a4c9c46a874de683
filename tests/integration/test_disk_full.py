"""``freqstudy corrupt`` on a full disk, as a user meets it: a subprocess writing into
a real, tiny tmpfs (where the test may mount one), and a worker process whose writes
fail with ENOSPC (a ``sitecustomize`` the test puts on ``PYTHONPATH``, so spawned
workers load it too). Each ends with one line naming the path and the errno, exit 1,
no traceback, and nothing in the output folder that a later run reads as whole."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from study.cifar10c import load_corrupted
from study.cifar10c.generate import completed
from tests.cli_runner import run_freqstudy
from tests.unit.test_data import write_cifar

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
NAMES = ("gaussian_noise", "brightness")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root)  # 20 synthetic test images
    return root


def corrupt_cli(data_dir: Path, out: Path, workers: int, env: dict | None = None):
    argv = ["--data-dir", data_dir, "--out", out, "--corruptions", ",".join(NAMES), "--severities", "1,2"]
    return run_freqstudy(
        "corrupt",
        *argv,
        "--limit",
        "20",
        "--workers",
        workers,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_enospc(r: subprocess.CompletedProcess, path_part: str) -> str:
    assert r.returncode == 1, (r.returncode, r.stderr)  # 135 = the SIGBUS this used to be
    assert "Traceback" not in r.stderr and "BrokenProcessPool" not in r.stderr, r.stderr
    # Besides the progress note ("CIFAR-10-C test: generating ..."), one line.
    lines = [line for line in r.stderr.splitlines() if line and not line.startswith("CIFAR-10-C ")]
    assert len(lines) == 1, r.stderr
    err = lines[0]
    assert err.startswith("freqstudy corrupt: error: ") and path_part in err, err
    assert err.endswith("[Errno 28] No space left on device (ENOSPC)"), err
    return err


def assert_nothing_whole(out: Path) -> None:
    """No corruption a later run (or a trial's loader) would read as a finished file."""
    assert not completed(out, NAMES, (1, 2), 20)
    for name in NAMES:
        with pytest.raises(FileNotFoundError):
            load_corrupted(out, name)
    assert not list(out.glob("*.tmp")), "a torn temporary was left in the folder"


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """Mount a tmpfs of a given size on a fresh folder; skips (saying why) where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root; the ENOSPC-injection variant covers this machine")
        where = tmp_path / f"tmpfs-{len(mounted)}"
        where.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            pytest.skip(f"could not mount a tmpfs here ({r.stderr.strip() or r.returncode})")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_disk_while_making_the_partials_is_one_line_not_sigbus(data_dir, tiny_tmpfs, workers):
    # 64 KiB: the manifest and labels fit; a 40-image partial (123 KB) does not. Before its blocks
    # were allocated up front, writing the block through the map died of SIGBUS (exit 135, no word).
    out = tiny_tmpfs("64k") / "c"
    r = corrupt_cli(data_dir, out, workers)
    assert_one_line_enospc(r, f"{out}/.partial/gaussian_noise.")
    assert_nothing_whole(out)
    assert not list((out / ".partial").iterdir())  # the partial that could not be allocated is gone


def test_a_full_disk_while_writing_labels_is_one_line_naming_labels_npy(data_dir, tiny_tmpfs):
    out = tiny_tmpfs("4k") / "c"  # one page: the manifest takes it
    r = corrupt_cli(data_dir, out, 1)
    assert_one_line_enospc(r, f"error: {out}/labels.npy: ")
    assert_nothing_whole(out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]  # no labels.npy, whole or torn


SITECUSTOMIZE = textwrap.dedent(
    """
    # Test fault: a full disk when a worker marks its block written (the parent never does
    # with --workers 2). Spawned workers load this too: PYTHONPATH is inherited.
    import errno
    import os
    import pathlib

    _touch = pathlib.Path.touch

    def touch(self, *args, **kwargs):
        if self.name.endswith(".done"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return _touch(self, *args, **kwargs)

    pathlib.Path.touch = touch
    """
)


@pytest.mark.slow
def test_a_workers_os_error_comes_back_as_one_line_not_a_broken_pool(data_dir, tmp_path):
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = tmp_path / "c"
    r = corrupt_cli(data_dir, out, 2, env={"PYTHONPATH": str(tmp_path / "inject")})
    err = assert_one_line_enospc(r, f"{out}/.partial/")
    assert ".s1.done" in err or ".s2.done" in err
    assert_nothing_whole(out)
    # Space again: the next run resumes and finishes the same folder.
    r = corrupt_cli(data_dir, out, 2)
    assert r.returncode == 0, r.stderr
    assert completed(out, NAMES, (1, 2), 20)
