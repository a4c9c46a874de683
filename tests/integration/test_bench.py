"""``freqstudy bench`` runs with torch, numpy and the project alone, and its
JSON holds every section the issue names, with figures that hang together."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO

from tests.cli_runner import run_freqstudy

pytestmark = pytest.mark.integration

# Make `import ray` and `import mlflow` fail, as on a bare GPU machine.
BLOCK_HEAVY = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("ray", "mlflow"):
                raise ImportError(f"{name} blocked for this test")
            return None
    sys.meta_path.insert(0, Block())
    from study.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def run_bench(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_HEAVY, "bench", "--quick", "--json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_quick_bench_without_ray_or_mlflow_reports_every_section():
    out = run_bench("--device", "cpu", "--only", "train,eval,orchestration", "--compile")
    train, ev = out["train"], out["eval"]
    assert train["engine_img_s"] > 0 and train["baseline_img_s"] > 0
    assert math.isclose(train["ratio"], train["engine_img_s"] / train["baseline_img_s"], rel_tol=1e-9)
    # --compile: the engine again through torch.compile, compilation timed apart.
    assert train["compiled_img_s"] > 0 and train["compile_s"] > 0
    assert math.isclose(
        train["compiled_ratio"], train["compiled_img_s"] / train["baseline_img_s"], rel_tol=1e-9
    )
    assert ev["img_s"] > 0
    assert math.isclose(ev["cifar10c_pass_s"], 760_000 / ev["img_s"], rel_tol=1e-9)
    # End to end: official-layout files read, moved to the device and counted per severity.
    assert 0 < ev["from_disk_img_s"] and math.isclose(
        ev["cifar10c_pass_from_disk_s"], 760_000 / ev["from_disk_img_s"]
    )
    assert out["mfu"] is None  # MFU is a GPU figure
    # Ray is "not installed" here: skipped with the reason, the other sections kept.
    assert out["orchestration"]["skipped"].startswith("Ray is not importable here")
    assert out["peak_memory_mb"] > 0


@pytest.mark.slow
def test_fourier_section_gives_the_map_cost_beside_evaluation():
    fo = run_bench("--device", "cpu", "--only", "fourier")["fourier"]
    assert fo["images_per_s"] > 0 and fo["eval_img_s"] > 0 and fo["frequencies"] == 514
    assert math.isclose(fo["ratio"], fo["images_per_s"] / fo["eval_img_s"], rel_tol=1e-9)
    # Perturbed images per second: 514 forward passes over each of the map's images.
    assert math.isclose(fo["images_per_s"], 514 * fo["images"] / fo["map_s"], rel_tol=1e-9)
    assert math.isclose(fo["map_s_1000"], 514_000 / fo["images_per_s"], rel_tol=1e-9)


@pytest.mark.slow
def test_startup_and_generation_sections_hang_together():
    out = run_bench("--only", "startup,corrupt")
    st, co = out["startup"], out["corrupt"]
    assert st["repeats"] == 7
    for key in ("python", "help", "worker", "worker_all"):
        assert 0 < st[f"{key}_s"] <= st[f"{key}_median_s"] and st[f"{key}_cpu_s"] > 0
    # Each subject does what the bare interpreter does and more (the ratio's statistic itself is
    # tested in tests/unit/test_bench_startup.py).
    for key in ("help", "worker", "worker_all"):
        assert st[f"{key}_ratio"] > 1
    # Generation: the kernels' CPU seconds are part of the run's (workers joined), and each
    # worker's start was seen by the units it ran.
    assert co["units"] == 95 and co["n_images"] == 200 and co["workers"] >= 1
    assert 0 < co["kernel_cpu_s"] <= co["cpu_seconds"] * 1.02 and 0 < co["kernel_cpu_share"] <= 1.02
    assert co["unit_overhead_cpu_ms"] >= 0 and co["worker_start_cpu_s"] > 0 and co["worker_ready_s"] > 0
    assert math.isclose(co["speedup_vs_reference"], co["images_per_s"] / co["reference_images_per_s"])
    assert isinstance(out["regressions"], list)
    assert all(line.startswith("REGRESSION ") for line in out["regressions"])


@pytest.mark.slow
def test_bench_json_with_ray_is_exactly_one_document_on_stdout():
    """The orchestration section starts Ray and runs a Tune study; none of that reaches stdout."""
    argv = ["bench", "--quick", "--device", "cpu", "--only", "eval,orchestration", "--json"]
    proc = run_freqstudy(*argv, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)  # the whole of stdout
    assert out["eval"]["img_s"] > 0
    assert out["orchestration"]["n_trials"] == 4 and out["orchestration"]["per_trial_overhead_s"] > 0
    assert "orchestration:" in proc.stderr  # the progress lines went to stderr


def test_a_section_that_cannot_run_is_skipped_and_the_others_kept(monkeypatch, capfd):
    import study.bench
    from study.cli import main

    def no_disk(*args, **kwargs):
        raise OSError("[Errno 28] No space left on device")

    monkeypatch.setattr(study.bench, "bench_eval", no_disk)
    code = main(["bench", "--quick", "--device", "cpu", "--only", "train,eval", "--json"])
    captured = capfd.readouterr()
    assert code == 0, captured.err  # one section ran
    out = json.loads(captured.out)
    assert out["eval"] == {"skipped": "OSError: [Errno 28] No space left on device"}
    assert out["train"]["engine_img_s"] > 0 and out["peak_memory_mb"] > 0
    assert "eval: skipped: OSError: [Errno 28] No space left on device" in captured.err

    # Every section asked for skipped: still the document, and exit status 1.
    code = main(["bench", "--quick", "--device", "cpu", "--only", "eval", "--json"])
    captured = capfd.readouterr()
    assert code == 1
    assert json.loads(captured.out)["eval"]["skipped"].startswith("OSError")


def test_unknown_section_is_one_line_error():
    proc = run_freqstudy("bench", "--only", "train,warp", timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "warp" in lines[0] and "allowed" in lines[0]


@pytest.mark.gpu
def test_engine_beats_plain_baseline_on_cuda():
    import torch

    if not torch.cuda.is_available():
        pytest.skip(
            "CUDA is not available on this machine: the GPU fast path is measured by `freqstudy bench` there"
        )
    from study.bench import bench_train

    r = bench_train(torch.device("cuda"), width=64, batch_size=512, steps=10, warmup=3)
    assert r["ratio"] > 1.0, r
