"""Fourier heat map of a classifier (Yin, Gontijo Lopes, Shlens, Cubuk, Gilmer,
"A Fourier Perspective on Model Robustness in Computer Vision", NeurIPS 2019).

Definition. For a ``S×S`` image grid (``S = 32`` for CIFAR) and a DFT bin
``(u, v)`` (``u`` the row or vertical index, ``v`` the column or horizontal
index, both in ``0..S-1``), the basis image ``U_{u,v}`` is the real part of the
inverse DFT of a spectrum holding ones at ``(u, v)`` and at its conjugate
``(-u, -v) mod S``, scaled to unit L2 norm:

    U_{u,v}[m, n] = c · cos(2π (u·m + v·n) / S),   c = √2/S, or 1/S for the
    four self-conjugate bins (u, v ∈ {0, S/2}: DC and the Nyquist rows/columns).

Each image ``x`` (pixels in [0, 1], 3 channels) becomes
``clip(x + r·ε·U_{u,v}, 0, 1)``, the same ``U`` added to every channel, with a
random sign ``r ∈ {-1, +1}`` drawn independently per image and per frequency
from a seeded generator. The map holds the top-1 error in percent on the
perturbed set at each bin, laid out with ``np.fft.fftshift``: entry ``[i, j]``
is the frequency ``((i - S/2)/S, (j - S/2)/S)`` cycles/pixel, so DC is at
``[S/2, S/2]`` (``[16, 16]``), row ``0`` and column ``0`` are the Nyquist
frequency ``-0.5`` cycles/pixel, and ``map[c+a, c+b] == map[c-a, c-b]`` (a bin
and its conjugate give the same image, so the same error).

Units. ``ε`` is the L2 norm, in [0, 1] pixel units, of the single-channel
``S×S`` basis image; since it is added to each of the 3 channels the norm of the
full RGB perturbation is ``√3·ε`` before clipping. Its peak amplitude per pixel
is ``√2·ε/S`` (``ε/S`` at the self-conjugate bins): ``ε = 4`` (the value Yin
et al. used for CIFAR-10) is ±0.177 in [0, 1] units, about ±45 grey levels.
``ε = 0`` gives exactly the clean error at every bin (``x + 0 = x`` and
clipping is a no-op on [0, 1] data).

Cost. A bin and its conjugate are evaluated once: ``(S² - 4)/2 + 4`` unique
frequencies, i.e. **514 forward passes over the N images for S = 32** (510
conjugate pairs and the 4 self-conjugate bins, not 32·32 = 1024), so a map
costs ``514·N`` image forwards: as much as 514 clean evaluations of the same N
images (5.14 M forwards for the 10 000-image CIFAR-10 test set).

Bands. :func:`band_errors` averages the shifted map over three radial bands of
``r = √(f_u² + f_v²) / 0.5`` (``f`` in cycles/pixel, so ``r = 1`` is the Nyquist
frequency along an axis and the corners reach ``√2``): low ``r ≤ 1/3``, middle
``1/3 < r ≤ 2/3``, high ``r > 2/3``; every bin (DC and the corners included)
belongs to exactly one band. For ``S = 32`` they hold 89, 268 and 667 bins.

Pure: torch and numpy, no I/O.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = [
    "BAND_EDGES",
    "FOURIER_ERROR_HIGH",
    "FOURIER_ERROR_LOW",
    "FOURIER_ERROR_MIDDLE",
    "FOURIER_HEATMAP_NPY",
    "FOURIER_HEATMAP_PNG",
    "band_errors",
    "basis_image",
    "clean_error",
    "conjugate_pairs",
    "fourier_heatmap",
    "radius_map",
    "shifted_frequencies",
]

# MLflow metric keys and artifact names.
FOURIER_ERROR_LOW = "fourier/error_low"
FOURIER_ERROR_MIDDLE = "fourier/error_middle"
FOURIER_ERROR_HIGH = "fourier/error_high"
FOURIER_HEATMAP_NPY = "fourier_heatmap.npy"
FOURIER_HEATMAP_PNG = "fourier_heatmap.png"

# Upper radius of the low and middle bands (fractions of the axis Nyquist frequency).
BAND_EDGES: tuple[float, float] = (1.0 / 3.0, 2.0 / 3.0)

Progress = Callable[[int, int], None]


# -- frequencies and basis images ---------------------------------------------------------


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size={size!r} is not allowed; it must be an integer >= 1")
    return int(size)


def basis_image(u: int, v: int, size: int = 32) -> np.ndarray:
    """The real, unit-L2-norm Fourier basis image of DFT bin ``(u, v)``.

    The real part of the inverse DFT of a spectrum with ones at ``(u, v)`` and
    ``(-u, -v) mod size`` (one single one where the two coincide: DC and, for even
    sizes, the Nyquist rows and columns), normalised to unit L2 norm. ``(u, v)``
    and its conjugate give the same image.

    Args:
        u: row (vertical) frequency index; any integer, taken mod ``size``.
        v: column (horizontal) frequency index; any integer, taken mod ``size``.
        size: the image side ``S``.

    Returns:
        (size, size) float64, ``c·cos(2π(u·m + v·n)/S)`` with ``c`` making the norm 1.
    """
    size = _check_size(size)
    u, v = int(u) % size, int(v) % size
    spectrum = np.zeros((size, size), dtype=np.complex128)
    spectrum[u, v] = 1.0
    spectrum[(-u) % size, (-v) % size] = 1.0  # the same cell for a self-conjugate bin
    image = np.fft.ifft2(spectrum).real
    return image / np.linalg.norm(image)


def conjugate_pairs(
    size: int = 32,
) -> tuple[tuple[tuple[int, int], tuple[int, int]], ...]:
    """One representative per conjugate pair of DFT bins, with its partner.

    Returns:
        ``((u, v), (u', v'))`` for each pair, in row-major order of the
        representative, which is the member first in row-major order;
        ``(u', v') = (-u mod S, -v mod S)`` and equals ``(u, v)`` for a self-conjugate
        bin. Indices are unshifted DFT positions in ``0..S-1``. Every bin of the
        grid appears exactly once (as a representative or as a partner):
        ``(S² - 4)/2 + 4`` entries for even ``S`` (514 for 32).
    """
    size = _check_size(size)
    pairs = []
    for u in range(size):
        for v in range(size):
            cu, cv = (-u) % size, (-v) % size
            if (u, v) <= (cu, cv):
                pairs.append(((u, v), (cu, cv)))
    return tuple(pairs)


def shifted_frequencies(size: int = 32) -> np.ndarray:
    """(size,) float64: the frequency in cycles/pixel of each row/column of a shifted map.

    ``np.fft.fftshift(np.fft.fftfreq(size))``: ``-0.5, ..., 0, ..., 0.5 - 1/S`` for even ``S``.
    """
    size = _check_size(size)
    return np.fft.fftshift(np.fft.fftfreq(size))


def radius_map(size: int = 32) -> np.ndarray:
    """(size, size) float64: ``r = √(f_u² + f_v²)/0.5`` at each cell of a shifted map.

    ``f`` in cycles/pixel, so ``r = 1`` is the Nyquist frequency along an axis, DC is 0
    and the corners are ``√2``.
    """
    f = shifted_frequencies(size)
    return np.sqrt(f[:, None] ** 2 + f[None, :] ** 2) / 0.5


def band_errors(heatmap: np.ndarray) -> dict[str, float]:
    """Mean error (percent) of a shifted heat map in its low, middle and high radial bands.

    Bands of ``r = √(f_u² + f_v²)/0.5`` (:func:`radius_map`): ``low`` r ≤ 1/3,
    ``middle`` 1/3 < r ≤ 2/3, ``high`` r > 2/3 (up to the corners at √2). Every
    cell counts, DC and corners included; each band's mean weighs its cells
    equally (89, 268 and 667 cells for a 32×32 map).

    Args:
        heatmap: (S, S) shifted map (DC at ``[S/2, S/2]``), as from :func:`fourier_heatmap`.

    Returns:
        ``{"low": ..., "middle": ..., "high": ...}`` in percent (NaN for an empty band).
    """
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.ndim != 2 or heatmap.shape[0] != heatmap.shape[1]:
        raise ValueError(f"band_errors: expected a square (S, S) map, got shape {heatmap.shape}")
    r = radius_map(heatmap.shape[0])
    lo, mid = BAND_EDGES
    masks = {"low": r <= lo, "middle": (r > lo) & (r <= mid), "high": r > mid}
    return {name: float(heatmap[m].mean()) if m.any() else float("nan") for name, m in masks.items()}


# -- evaluation ---------------------------------------------------------------------------


def _default_normalisation() -> tuple[Sequence[float], Sequence[float]]:
    # Imported lazily: the data module may move, and this module needs it only for defaults.
    from study.data import CIFAR10_MEAN, CIFAR10_STD

    return CIFAR10_MEAN, CIFAR10_STD


def _model_device(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _images_to_device(images, labels, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, S, S, 3) and (N,) -> float32 (N, 3, S, S) in [0, 1] and int64 (N,), on the device."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[3] != 3 or x.shape[1] != x.shape[2]:
        raise ValueError(f"images: expected uint8 (N, S, S, 3), got {x.dtype} {tuple(x.shape)}")
    y = labels if isinstance(labels, torch.Tensor) else torch.from_numpy(np.asarray(labels))
    if tuple(y.shape) != (x.shape[0],):
        raise ValueError(f"labels: expected shape ({x.shape[0]},), got {tuple(y.shape)}")
    # One transfer as uint8 (4x smaller than float), then convert on the device.
    x = x.to(device).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    return x, y.to(device, torch.int64)


def _prepared(model, images, labels, mean, std, device):
    """The normalisation (CIFAR-10's by default), the device (the model's by default) and
    the images on it: ``(mean, std, device, x01 (N, 3, S, S) in [0, 1], y (N,))``."""
    if mean is None or std is None:
        default_mean, default_std = _default_normalisation()
        mean = default_mean if mean is None else mean
        std = default_std if std is None else std
    device = _model_device(model) if device is None else torch.device(device)
    x01, y = _images_to_device(images, labels, device)
    return mean, std, device, x01, y


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    """The model in eval mode for the block; its own training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _error_counts(
    model: torch.nn.Module,
    x01: torch.Tensor,
    y: torch.Tensor,
    bases: torch.Tensor,
    amplitudes: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    progress: Progress | None,
) -> torch.Tensor:
    """(P,) int64 on the device: misclassified images under each of P perturbations.

    Args:
        x01: (N, 3, S, S) float32 clean images in [0, 1].
        y: (N,) int64 labels.
        bases: (P, S, S) float32 unit-norm basis images.
        amplitudes: (P, N) float32 signed L2 norms ``r·ε`` of each image's perturbation.
    """
    device = x01.device
    n, p_total = x01.shape[0], bases.shape[0]
    size = x01.shape[-1]
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    scale, shift = 1.0 / std_t, -mean_t / std_t  # (x - mean)/std as one multiply-add
    counts = torch.zeros(p_total, dtype=torch.int64, device=device)
    autocast = (
        contextlib.nullcontext()
        if amp_dtype is None
        else torch.autocast(device_type=device.type, dtype=amp_dtype)
    )

    def wrong(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        xb = xb.clamp_(0.0, 1.0).mul_(scale).add_(shift)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return model(xb).argmax(dim=1) != yb

    with torch.inference_mode(), autocast:
        if n <= batch_size:
            # Small sets: several whole frequencies per forward pass, so a batch is never tiny.
            group = batch_size // n
            for p0 in range(0, p_total, group):
                p1 = min(p_total, p0 + group)
                g = p1 - p0
                delta = amplitudes[p0:p1].view(g, n, 1, 1, 1) * bases[p0:p1].view(g, 1, 1, size, size)
                xb = (x01.unsqueeze(0) + delta).view(g * n, 3, size, size)
                # Counts stay on the device: no host sync per batch.
                counts[p0:p1] += wrong(xb, y.repeat(g)).view(g, n).sum(dim=1)
                if progress is not None:
                    progress(p1, p_total)
        else:
            for p in range(p_total):
                for i0 in range(0, n, batch_size):
                    i1 = min(n, i0 + batch_size)
                    xb = x01[i0:i1] + amplitudes[p, i0:i1].view(-1, 1, 1, 1) * bases[p].view(1, 1, size, size)
                    counts[p] += wrong(xb, y[i0:i1]).sum()
                if progress is not None:
                    progress(p + 1, p_total)
    return counts


def fourier_heatmap(
    model: torch.nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    eps: float,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 2000,
    device: torch.device | str | None = None,
    seed: int = 0,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: Progress | None = None,
) -> np.ndarray:
    """The Fourier heat map: error (percent) under a Fourier-basis perturbation of norm ε at each bin.

    Images go to the device once; each representative frequency of
    :func:`conjugate_pairs` is evaluated on all N images (several frequencies
    share a forward pass when ``N < batch_size``), errors are counted on the
    device and read back once at the end; the conjugate partner gets the same value.

    Args:
        model: a classifier of normalised (B, 3, S, S) float input to (B, K) logits, on
            ``device`` (and already ``channels_last`` if ``channels_last``). It is run in eval
            mode; its training flag is restored afterwards.
        images: uint8 (N, S, S, 3) (numpy or torch), pixels 0..255.
        labels: (N,) integer class labels.
        eps: L2 norm of the single-channel S×S basis image in [0, 1] pixel units (added
            to each of the 3 channels); ``>= 0``. Yin et al. used 4 for CIFAR-10.
        mean: per-channel normalisation mean in [0, 1] units (default CIFAR-10's).
        std: per-channel normalisation std (default CIFAR-10's).
        batch_size: images per forward pass.
        device: where to run (default: the model's device).
        seed: seed of the per-image, per-frequency random signs; the signs do not depend
            on ``device`` or ``batch_size``.
        amp_dtype: autocast dtype (e.g. ``torch.bfloat16``) or None for full precision.
        channels_last: feed batches in channels-last memory format.
        progress: called as ``progress(done, total)`` in representative frequencies after
            each batch of frequencies is queued (on an asynchronous device it can run
            ahead of the computation by the device's queue).

    Returns:
        (S, S) float64 percent error in [0, 100], fftshift layout (DC at ``[S/2, S/2]``,
        row index = vertical frequency, column index = horizontal frequency).
    """
    eps = float(eps)
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps={eps!r} is not allowed; it must be a finite number >= 0")
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed; it must be an integer >= 1")
    mean, std, device, x01, y = _prepared(model, images, labels, mean, std, device)
    n, size = x01.shape[0], x01.shape[-1]
    pairs = conjugate_pairs(size)
    if n == 0:
        return np.full((size, size), np.nan)
    bases = torch.as_tensor(
        np.stack([basis_image(u, v, size) for (u, v), _ in pairs]),
        dtype=torch.float32,
        device=device,
    )  # (P, S, S)
    # Signs from numpy's seeded generator: identical on every device and batch size.
    signs = np.random.default_rng(seed).integers(0, 2, size=(len(pairs), n), dtype=np.int8) * 2 - 1
    amplitudes = torch.as_tensor(signs, dtype=torch.float32, device=device).mul_(eps)  # (P, N)
    with _eval_mode(model):
        counts = _error_counts(
            model,
            x01,
            y,
            bases,
            amplitudes,
            mean=mean,
            std=std,
            batch_size=int(batch_size),
            amp_dtype=amp_dtype,
            channels_last=channels_last,
            progress=progress,
        )
    errors = counts.cpu().numpy().astype(np.float64) * (100.0 / n)  # the one host sync
    raw = np.empty((size, size), dtype=np.float64)  # unshifted DFT layout
    for ((u, v), (cu, cv)), err in zip(pairs, errors):
        raw[u, v] = raw[cu, cv] = err
    return np.fft.fftshift(raw)


def clean_error(
    model: torch.nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 2000,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> float:
    """Top-1 error (percent) on the unperturbed images, with the heat map's normalisation and settings.

    The reference level of a map: ``fourier_heatmap(..., eps=0)`` equals it at every bin.
    Arguments as in :func:`fourier_heatmap`.
    """
    mean, std, device, x01, y = _prepared(model, images, labels, mean, std, device)
    n, size = x01.shape[0], x01.shape[-1]
    if n == 0:
        return float("nan")
    zero = torch.zeros((1, size, size), dtype=torch.float32, device=device)
    amplitudes = torch.zeros((1, n), dtype=torch.float32, device=device)
    with _eval_mode(model):
        how = dict(
            mean=mean, std=std, batch_size=int(batch_size), amp_dtype=amp_dtype, channels_last=channels_last
        )
        counts = _error_counts(model, x01, y, zero, amplitudes, progress=None, **how)
    return float(counts.item()) * 100.0 / n
