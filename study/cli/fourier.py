"""``freqstudy fourier``: the Fourier heat map of a logged model (``study.analysis.fourier``).

The model is loaded with the project's loader (``study.tracking.load_logged_model``:
no pickle), the test images come from ``--data-dir`` or the run's ``data.dir``,
and the map is computed with the run's evaluation settings (batch size, bf16
autocast on CUDA unless the run asked for fp32, channels_last) and the same
sign seed as a trial's ``eval.fourier_images``, so with the same images and ε
it is the map the trial logged (up to kernel rounding on another device). A
progress bar goes to stderr; stdout holds the summary, or with ``--json`` exactly
one JSON document.
"""

from __future__ import annotations

import argparse
import math
import sys

from study.cli.output import print_json

DEFAULT_IMAGES = 500
DEFAULT_EPS = 4.0
TOP_FREQUENCIES = 5


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id")
    p.add_argument(
        "--images",
        type=int,
        default=DEFAULT_IMAGES,
        metavar="N",
        help=f"the first N test images (default {DEFAULT_IMAGES}); the map costs 514·N forward passes",
    )
    p.add_argument(
        "--eps",
        type=float,
        default=DEFAULT_EPS,
        metavar="E",
        help=f"L2 norm of the basis image in [0, 1] pixel units (default {DEFAULT_EPS:g}, Yin et al.'s)",
    )
    p.add_argument("--tracking-uri")
    p.add_argument("--data-dir", help="folder holding cifar-10-batches-py/; default: the run's data.dir")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="PATH.png", help="also write the map as a PNG")


def check_flags(args: argparse.Namespace) -> None:
    """One-line ``ValueError`` naming the flag, before any server or data is touched."""
    if args.images < 1:
        raise ValueError(f"--images {args.images}: must be >= 1")
    if not math.isfinite(args.eps) or args.eps <= 0:
        raise ValueError(f"--eps {args.eps:g}: must be a finite number > 0")


def top_frequencies(heatmap, k: int = TOP_FREQUENCIES) -> list[dict[str, float]]:
    """The ``k`` frequencies with the highest error, one per conjugate pair.

    Returns:
        ``{"f_vertical", "f_horizontal", "r", "error"}`` (cycles/pixel; ``r`` as in
        :func:`study.analysis.fourier.radius_map`), highest error first, ties by lower ``r``.
    """
    import numpy as np

    from study.analysis.fourier import radius_map, shifted_frequencies

    size = heatmap.shape[0]
    f, r = shifted_frequencies(size), radius_map(size)
    cells = []
    for i in range(size):
        for j in range(size):
            # The conjugate of shifted cell (i, j) is ((S - i) mod S, (S - j) mod S): keep one of each pair.
            if (i, j) <= ((size - i) % size, (size - j) % size) and np.isfinite(heatmap[i, j]):
                cells.append((-heatmap[i, j], r[i, j], i, j))
    cells.sort()
    return [
        {"f_vertical": float(f[i]), "f_horizontal": float(f[j]), "r": float(rr), "error": float(-neg)}
        for neg, rr, i, j in cells[:k]
    ]


def _test_split(data_dir: str | None, source: str):
    from study.data import load_cifar10, resolve_folder

    if not data_dir:
        raise ValueError(
            "--data-dir: the run logged no data.dir; pass --data-dir DIR holding cifar-10-batches-py/"
        )
    try:
        cifar = load_cifar10(data_dir, download=False)
    except FileNotFoundError:
        raise ValueError(
            f"--data-dir: no CIFAR-10 at {resolve_folder(data_dir)} ({source}); "
            "pass --data-dir DIR holding cifar-10-batches-py/"
        ) from None
    return cifar.test_images, cifar.test_labels


def run(args: argparse.Namespace) -> int:
    check_flags(args)
    from study.cli.output import check_run_id

    check_run_id("RUN_ID", args.run_id)
    import torch
    from tqdm import tqdm

    from study.analysis.fourier import band_errors, clean_error, conjugate_pairs, fourier_heatmap
    from study.engine.device import resolve_device, uses_channels_last
    from study.tracking import load_logged_model, local_tracking_uri
    from study.tracking.models import model_files
    from study.tracking.queries import client_for, run_params

    device = resolve_device(args.device, field="fourier --device")
    with local_tracking_uri(args.tracking_uri) as uri:
        # The run's params and the test images first: a flag that does not fit them is an
        # error before the model download (and its progress output) starts.
        client = client_for(uri)
        params = run_params(args.run_id, client=client)
        model_files(client, args.run_id)  # no logged model: say so, before any data.dir question
        source = "given" if args.data_dir else "the run's data.dir"
        images, labels = _test_split(args.data_dir or params.get("data.dir"), source)
        if args.images > len(labels):
            raise ValueError(
                f"--images {args.images}: the test set has {len(labels)} images; allowed 1..{len(labels)}"
            )
        images, labels = images[: args.images], labels[: args.images]
        model = load_logged_model(args.run_id, uri)

    precision = params.get("precision", "auto")
    amp = torch.bfloat16 if precision == "bf16" or (precision == "auto" and device.type == "cuda") else None
    try:
        batch_size = max(1, int(params.get("eval.batch_size", 2000)))
    except ValueError:
        batch_size = 2000
    channels_last = uses_channels_last(device)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    settings = dict(batch_size=batch_size, device=device, amp_dtype=amp, channels_last=channels_last)

    total = len(conjugate_pairs(images.shape[1]))
    with tqdm(total=total, desc="Fourier heat map", unit="freq", file=sys.stderr, leave=False) as bar:
        heatmap = fourier_heatmap(
            model, images, labels, args.eps, progress=lambda done, _: bar.update(done - bar.n), **settings
        )
    clean = clean_error(model, images, labels, **settings)
    bands = band_errors(heatmap)

    if args.out:
        from study.files import write_bytes_atomic
        from study.reporting.fourier_figures import heatmap_png

        title = f"run {args.run_id[:8]}: error (%), ε = {args.eps:g}, {len(labels)} test images"
        path = write_bytes_atomic(args.out, heatmap_png(heatmap, title))
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)

    if args.json:
        # print_json writes NaN as null.
        doc = {
            "run_id": args.run_id,
            "eps": args.eps,
            "images": len(labels),
            "shape": list(heatmap.shape),
            "heatmap": heatmap.tolist(),
            "bands": {k: float(v) for k, v in bands.items()},
            "clean_error": float(clean),
        }
        print_json(doc)
        return 0
    print(
        f"run {args.run_id}: Fourier heat map, ε = {args.eps:g}, the first {len(labels)} test images, "
        f"on {device}"
    )
    print(f"  clean error           {clean:6.2f}%")
    print(
        f"  mean error by band    low {bands['low']:.2f}%  middle {bands['middle']:.2f}%  "
        f"high {bands['high']:.2f}%   (r ≤ 1/3, ≤ 2/3, > 2/3 of Nyquist)"
    )
    print("  most damaging frequencies (cycles/pixel; each with its conjugate):")
    for rank, t in enumerate(top_frequencies(heatmap), start=1):
        print(
            f"    {rank}. vertical {t['f_vertical']:+.4f}, horizontal {t['f_horizontal']:+.4f}  "
            f"r {t['r']:.2f}  error {t['error']:6.2f}%"
        )
    return 0
