"""``freqstudy bench``: how fast the trial engine is, beside a plain baseline.

Every figure is measured in the same process as its baseline, so the ratios
hold on any machine: (1) training images/s of the trial engine (device-resident
uint8 data, batch augmentation on the device, channels_last; bf16 autocast and
fused SGD on CUDA) against a plain PyTorch loop (a ``DataLoader`` over a
``Dataset`` with per-sample transforms, fp32, default memory layout) on the
same model and batch size; (2) evaluation images/s and the implied time for a
full CIFAR-10-C + clean pass (15 x 5 x 10,000 + 10,000 = 760,000 images);
(3) model FLOPs utilisation on a GPU from 3.33 GFLOP per trained image;
(4) peak memory; (5) CIFAR-10-C generation images/s beside the original
generator's, with kernel time, per-unit overhead and worker start-up; (6)
per-trial orchestration overhead of a Ray study (only where Ray is installed);
(7) the cost of a Fourier heat map in perturbed images/s beside the evaluation
rate; (8) start-up: ``freqstudy --help`` and a generation worker beside
``python -c pass``; (9) the head's PostgreSQL-backed tracking server under 8, 32 and 128
concurrent GPU trials (``tracking``: requests/s, latency, errors; only where PostgreSQL is
installed, and only when asked for by ``--only``: it takes minutes). Figures the README's
table records are checked against it (``study.bench.recorded``): a regression is printed as such.

Needs only torch, numpy and the project: data are random uint8 images, so it
runs on a bare GPU machine with no dataset and no network. A section that
cannot run here (Ray missing, say) is reported as skipped with its reason, in
the JSON too, and the other sections keep their results.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import torch

from study.bench.engine import bench_eval, bench_fourier, bench_train, mfu
from study.bench.recorded import regressions
from study.engine.device import peak_memory_mb, peak_memory_reserved_mb, resolve_device

SKIPPED = "skipped"  # a section that could not run: {"skipped": "<one-line reason>"} in the JSON


class SectionSkipped(Exception):
    """A section cannot run here; the message is the reason, as the JSON gives it."""


@contextlib.contextmanager
def _section(out: dict[str, Any], name: str, log) -> Iterator[None]:
    """Run one section; if it raises, record ``out[name] = {"skipped": reason}``, log it, go on.

    A bench is a set of independent measurements: one that cannot run here
    (no Ray, no frost textures, a full disk, out of memory) must not cost the
    others their results.
    """
    try:
        yield
    except Exception as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        reason = text if isinstance(e, SectionSkipped) else f"{type(e).__name__}: {text}".rstrip(": ")
        out[name] = {SKIPPED: reason[:300]}
        log(f"{name}: skipped: {reason}")


def skipped_sections(result: dict[str, Any]) -> list[str]:
    """The sections of a ``run_bench`` result that were skipped."""
    return [k for k, v in result.items() if isinstance(v, dict) and SKIPPED in v]


def run_bench(
    *,
    device: str | None = None,
    quick: bool = False,
    only: set[str] | None = None,
    compile: bool = False,
    log=print,
) -> dict[str, Any]:
    """Run the sections asked for; returns the JSON object ``freqstudy bench --json`` prints.

    A section that cannot run is ``{"skipped": "<reason>"}`` in the result (and
    logged); the other sections run and keep their results.
    """
    dev = resolve_device(device or "auto", field="bench --device")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.set_device(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    sections = only or {"startup", "train", "eval", "fourier", "corrupt", "corruptions", "orchestration"}
    gpu = dev.type == "cuda"
    out: dict[str, Any] = {
        "device": str(dev),
        "quick": quick,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    if gpu:
        out["device_name"] = torch.cuda.get_device_name(dev)
    if "startup" in sections:
        with _section(out, "startup", log):
            from study.bench.startup import bench_startup, startup_line

            # Rounds cost ~0.5 s; below 7 the median ratio moved by a third between quiet runs.
            repeats = 7 if quick else 15
            log(f"startup: python -c pass, freqstudy --help and a generation worker, {repeats} rounds ...")
            out["startup"] = bench_startup(repeats)
            log(startup_line(out["startup"]))
    if "train" in sections:
        with _section(out, "train", log):
            if gpu:
                kw = dict(width=64, batch_size=512, steps=20 if quick else 60, warmup=5 if quick else 10)
            else:
                kw = dict(
                    width=16 if quick else 64,
                    batch_size=64 if quick else 128,
                    steps=4 if quick else 6,
                    warmup=1,
                )
            log(
                f"train: width {kw['width']}, batch {kw['batch_size']}, {kw['steps']} timed steps"
                f"{' (and compiled: minutes to compile)' if compile else ''} ..."
            )
            out["train"] = bench_train(dev, compile=compile, **kw)
            tr = out["train"]
            log(
                f"train: engine {tr['engine_img_s']:,.0f} img/s, baseline {tr['baseline_img_s']:,.0f} img/s, "
                f"ratio {tr['ratio']:.2f}"
            )
            if compile:
                log(
                    f"train: compiled engine {tr['compiled_img_s']:,.0f} img/s, "
                    f"ratio {tr['compiled_ratio']:.2f} (compiled in {tr['compile_s']:.0f} s)"
                )
            # MFU of the fastest engine measured (compiled when asked for and faster).
            best = max(tr["engine_img_s"], tr.get("compiled_img_s") or 0.0)
            out["mfu"] = mfu(dev, best, tr["width"])
            if out["mfu"] and out["mfu"]["mfu"] is not None:
                log(f"mfu: {out['mfu']['mfu']:.1%} of {out['mfu']['peak_tflops']:.0f} TFLOP/s bf16")
    if "eval" in sections:
        with _section(out, "eval", log):
            if gpu:
                kw = dict(
                    width=64,
                    batch_size=5000,
                    n_images=50_000 if quick else 200_000,
                    disk_corruptions=2 if quick else 4,
                    disk_n=10_000,
                )
            else:
                kw = dict(
                    width=16 if quick else 64,
                    batch_size=500,
                    n_images=1000 if quick else 2000,
                    disk_corruptions=1 if quick else 2,
                    disk_n=100 if quick else 200,
                )
            log(
                f"eval: width {kw['width']}, batch {kw['batch_size']}, "
                f"{kw['n_images']:,} images on the device, then "
                f"{kw['disk_corruptions']} CIFAR-10-C files of 5 x {kw['disk_n']:,} from disk ..."
            )
            out["eval"] = ev = bench_eval(dev, **kw)
            log(
                f"eval: {ev['img_s']:,.0f} img/s on the device "
                f"(CIFAR-10-C + clean pass {ev['cifar10c_pass_s']:.1f} s); "
                f"{ev['from_disk_img_s']:,.0f} img/s from disk (pass {ev['cifar10c_pass_from_disk_s']:.1f} s)"
            )
    if "fourier" in sections:
        with _section(out, "fourier", log):
            # Width 64 on a CPU would take minutes for even a few images (514 forwards each).
            if gpu:
                kw = dict(width=64, n_images=1000 if quick else 2000, batch_size=2000, eval_images=50_000)
            else:
                kw = dict(width=16, n_images=16, batch_size=500, eval_images=1000)
            log(
                f"fourier: heat map of width {kw['width']} on {kw['n_images']:,} images "
                f"(514 x {kw['n_images']:,} forwards), batch {kw['batch_size']}, beside evaluation ..."
            )
            out["fourier"] = fo = bench_fourier(dev, **kw)
            log(
                f"fourier: {fo['images_per_s']:,.0f} perturbed img/s beside {fo['eval_img_s']:,.0f} img/s "
                f"evaluation (ratio {fo['ratio']:.2f}); a 1000-image map takes {fo['map_s_1000']:.1f} s"
            )
    if "corrupt" in sections:
        with _section(out, "corrupt", log):
            from study.bench.corrupt import bench_corruption_generation, generation_line

            log(f"corrupt: all 19 corruptions x 5 severities on {200 if quick else 2000} images ...")
            out["corrupt"] = bench_corruption_generation(
                n_images=200 if quick else 2000, workers=0, quick=quick
            )
            log(generation_line(out["corrupt"]))
    if "corruptions" in sections:
        with _section(out, "corruptions", log):
            from study.bench.corrupt import synthetic_images
            from study.bench.corruption_timing import time_corruptions

            n = 50 if quick else 200
            log(f"corruptions: each of the 19 at 5 severities on {n} images, one process ...")
            out["corruptions"] = time_corruptions(synthetic_images(n), repeats=1 if quick else 2)
            slowest = min(out["corruptions"].items(), key=lambda kv: kv[1]["images_per_cpu_s"])
            log(f"corruptions: slowest {slowest[0]} at {slowest[1]['images_per_cpu_s']:,.0f} images/CPU-s")
    if "orchestration" in sections:
        with _section(out, "orchestration", log):
            try:
                from study.bench.orchestration import bench_orchestration  # Ray, through study.search
            except ImportError as e:
                raise SectionSkipped(f"Ray is not importable here ({e})") from None
            log("orchestration: a study of tiny trials on local Ray ...")
            out["orchestration"] = bench_orchestration(n_trials=4 if quick else 12, quick=quick)
            log(f"orchestration: {json.dumps(out['orchestration'], default=float)}")
    if "tracking" in sections:
        with _section(out, "tracking", log):
            from study.bench.postgres import PostgresMissing
            from study.bench.tracking import bench_tracking

            try:
                import psycopg  # noqa: F401  (what SQLAlchemy loads for the server's postgresql:// URI)
            except ImportError:
                raise SectionSkipped("psycopg is not installed: pip install -e '.[cluster]'") from None
            try:
                out["tracking"] = bench_tracking(quick=quick, log=log)
            except PostgresMissing as e:
                raise SectionSkipped(str(e)) from None
    out["peak_memory_mb"] = peak_memory_mb(dev)
    if gpu:
        out["peak_memory_reserved_mb"] = peak_memory_reserved_mb(dev)
    out["regressions"] = regressions(out)
    for line in out["regressions"]:
        log(line)
    return out
