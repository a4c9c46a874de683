"""``freqstudy corrupt`` as a user runs it: a subprocess on the real subset, rerun,
rejecting bad input, and killed mid-way then resumed."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from study.cifar10c import generate
from study.data import load_cifar10, stratified_split
from tests.cli_runner import freqstudy_command, no_traceback, run_freqstudy

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def corrupt_cli(*args) -> subprocess.CompletedProcess:
    return run_freqstudy("corrupt", *args, timeout=120)


@pytest.mark.slow
def test_corrupt_val_split_then_rerun_is_a_no_op(subset_dir, tmp_path):
    out = tmp_path / "val-c"
    args = [
        "--data-dir",
        subset_dir,
        "--split",
        "val",
        "--out",
        out,
        "--corruptions",
        "gaussian_noise,contrast",
        "--severities",
        "1,3",
        "--limit",
        6,
        "--seed",
        4,
        "--workers",
        1,
        "--val-fraction",
        0.2,
        "--split-seed",
        9,
    ]
    r = corrupt_cli(*args)
    assert r.returncode == 0, r.stderr
    assert "2 corruptions x 2 severities x 6 val images" in r.stdout
    m = json.loads((out / "manifest.json").read_text())
    assert (
        m["source_name"] == "val"
        and m["seed"] == 4
        and m["n"] == 6
        and m["corruptions"] == ["gaussian_noise", "contrast"]
    )
    d = load_cifar10(subset_dir)
    _, va = stratified_split(d.train_labels, 0.2, 9)
    assert np.array_equal(np.load(out / "labels.npy"), np.tile(d.train_labels[va][:6], 2))
    g = np.load(out / "gaussian_noise.npy")
    assert g.shape == (12, 32, 32, 3) and g.dtype == np.uint8
    before = {p.name: p.read_bytes() for p in out.glob("*.npy")}
    r = corrupt_cli(*args)
    assert r.returncode == 0, r.stderr
    assert {p.name: p.read_bytes() for p in out.glob("*.npy")} == before


def test_corrupt_rejects_bad_names_in_one_line(subset_dir, tmp_path):
    r = corrupt_cli("--data-dir", subset_dir, "--out", tmp_path / "c", "--corruptions", "fogg")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "unknown fogg" in r.stderr and "allowed gaussian_noise" in r.stderr
    r = corrupt_cli("--data-dir", subset_dir, "--out", tmp_path / "c", "--severities", "1,9")
    assert r.returncode == 2 and "--severities" in r.stderr
    r = corrupt_cli("--data-dir", tmp_path / "nowhere", "--out", tmp_path / "c", "--corruptions", "fog")
    assert r.returncode == 2 and "nowhere/cifar-10-batches-py" in r.stderr


@pytest.mark.slow
def test_killed_run_resumes_byte_identical_and_its_workers_exit(subset_dir, tmp_path):
    out = tmp_path / "test-c"
    names = "gaussian_noise,glass_blur,elastic_transform"
    args = [
        "--data-dir",
        subset_dir,
        "--split",
        "test",
        "--out",
        out,
        "--corruptions",
        names,
        "--limit",
        400,
        "--seed",
        3,
        "--workers",
        2,
    ]
    errors = tmp_path / "killed.err"
    with open(errors, "w") as err:  # what the killed run and its orphaned workers print
        run = subprocess.Popen(
            freqstudy_command("corrupt", *args), cwd=REPO, stdout=subprocess.DEVNULL, stderr=err
        )
    deadline = time.monotonic() + 60
    while not list(out.glob(".partial/*.done")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    workers = [int(p) for p in Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()]
    run.kill()  # SIGKILL to the parent alone, as the OOM killer would
    run.wait()
    assert run.returncode == -signal.SIGKILL
    assert list(out.glob(".partial/*.npy.tmp")) and len(list(out.glob("*.npy"))) < 4  # killed mid-way
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers and not any(Path(f"/proc/{w}").exists() for w in workers)  # orphans do not linger
    no_traceback(errors.read_text(), ["corrupt", *args])

    r = corrupt_cli(*args)
    assert r.returncode == 0, r.stderr
    assert not (out / ".partial").exists()
    d = load_cifar10(subset_dir)
    ref = generate(
        d.test_images[:400],
        d.test_labels[:400],
        tmp_path / "ref",
        corruptions=names.split(","),
        seed=3,
        workers=1,
        progress=False,
    )
    for name in names.split(","):
        assert (out / f"{name}.npy").read_bytes() == (ref / f"{name}.npy").read_bytes(), name
