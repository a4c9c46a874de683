"""The first convolution of the network, with its frequency make-up controlled (docs/method.md).

``FrequencyStem`` is a bias-free ``k×k`` convolution whose free parameter ``V``
(``weight``, shape (O, C, k, k)) is turned into the effective weight in the
frequency domain, ``W = Re(IDFT(g ⊙ DFT(V)))``, with per-filter gains ``g``:

- ``free``: no gains, ``W = V`` (a plain ``nn.Conv2d``; the baseline).
- ``fixed``: ``g`` is the LOW mask for the first ``round(p·O)`` filters and the
  HIGH mask for the rest, an idempotent projection, so the measured proportion
  ``p̂`` is exactly ``round(p·O)/O``.
- ``learned``: ``α_o = sigmoid(a_o)``, ``g_o = α_o`` on LOW and ``1 - α_o`` on
  HIGH; ``proportion_loss()`` gives ``λ·(mean α - p)²`` for the trainer to add.

With ``perturbation = σ > 0`` and the module in training mode, every forward
pass also multiplies each filter's power spectrum by ``max(0, 1 + σξ)``,
``ξ ~ N(0, 1)`` per filter and bin, mirrored so that the bin ``(-u, -v)``
takes the draw of ``(u, v)`` (the result stays real); the amplitude is scaled
by the square root and the phase is untouched. Evaluation never perturbs, and
``σ = 0`` runs the very same code as no perturbation.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from models.spectral import band_masks, check_cutoff, classify_filters, dft_basis, frequency_proportion

__all__ = ["FrequencySettings", "FrequencyStem", "MODES", "SettingError", "count_low_filters"]

MODES = ("free", "fixed", "learned")


class SettingError(ValueError):
    """A frequency setting that is not allowed; ``name`` is the setting, ``problem`` what is wrong."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


def _check_setting(name: str, value: object, lo: float, hi: float, *, lo_open=False, hi_open=False) -> float:
    bad_type = isinstance(value, bool) or not isinstance(value, numbers.Real)
    if not bad_type:
        below = value <= lo if lo_open else value < lo
        above = value >= hi if hi_open else value > hi
    if bad_type or below or above or math.isnan(value) or math.isinf(value):
        lb, rb = ("(" if lo_open else "["), (")" if hi_open else "]")
        raise SettingError(
            name, f"{value!r} is out of range; allowed {lb}{float(lo)}, {float(hi)}{rb}, finite"
        )
    return float(value)


@dataclass(frozen=True)
class FrequencySettings:
    """Everything that shapes the first layer's frequency make-up, as one typed object.

    It travels whole from the trial config (``frequency.*`` keys) to the stem;
    a new setting is a new field here (and wherever it is displayed).
    """

    mode: str = "free"  # free = plain conv (the baseline), fixed = projected, learned = gated
    proportion: float = 0.5  # p: target share of low-frequency filters
    # r_c as a fraction of Nyquist. 0.75 gives both bands spatial structure at every k (docs/method.md
    # §10): k=3 DC + 4 axis bins | 4 diagonal bins; k=5 the split of 0.6; k=7 21 | 28 bins.
    cutoff: float = 0.75
    threshold: float = 0.5  # tau: a filter is low-frequency when its low-band energy share >= tau
    perturbation: float = 0.0  # sigma of the power-spectrum perturbation (train only)
    proportion_weight: float = 0.0  # lambda: pull of mean(alpha) toward p (learned mode)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SettingError("mode", f"{self.mode!r} is not a mode; allowed: {', '.join(MODES)}")
        _check_setting("proportion", self.proportion, 0.0, 1.0)
        # The kernel-dependent check (both bands non-empty) is check_cutoff, where k is known.
        _check_setting("cutoff", self.cutoff, 0.0, math.sqrt(2.0), lo_open=True, hi_open=True)
        _check_setting("threshold", self.threshold, 0.0, 1.0)
        _check_setting("perturbation", self.perturbation, 0.0, math.inf, hi_open=True)
        _check_setting("proportion_weight", self.proportion_weight, 0.0, math.inf, hi_open=True)

    def replace(self, **changes: object) -> FrequencySettings:
        """A copy with some settings changed (validated)."""
        return dataclasses.replace(self, **changes)


def count_low_filters(*, out_channels: int, proportion: float) -> int:
    """``round(p·O)``: the filters held to the LOW band in fixed mode (Python rounding, ties to even)."""
    return round(proportion * out_channels)


def _check_int(name: str, value: object, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} is not allowed; it must be an integer >= {minimum}")
    return int(value)


def _hermitian_mirror(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index map to the bin ``(-u, -v)`` and the mask of bins that keep their own draw.

    Returns:
        ``(mirror, own)``: mirror (k*k,) int64, flat index of ``(-u mod k, -v mod k)``;
        own (k, k) bool, true where the flat index is <= its mirror's (one of each pair, and DC).
    """
    neg = (-torch.arange(k)) % k
    flat = torch.arange(k * k).reshape(k, k)
    mirror = flat[neg][:, neg]  # (k, k): flat index of (-u, -v)
    return mirror.flatten(), flat <= mirror


class FrequencyStem(nn.Module):
    """First-layer convolution with controlled frequency make-up and power-spectrum perturbation.

    Shapes: input (B, C, H, W) -> output (B, O, H', W') with padding ``k // 2``
    (H' = H at stride 1). ``weight`` is ``V`` (O, C, k, k); in free mode it is
    the convolution weight itself, so the state dict matches ``nn.Conv2d``'s.
    In learned mode ``alpha_logits`` (O,) start at 0, i.e. ``α = 0.5`` (equal
    gains on both bands, whatever p: a logit for p = 0 or 1 would be infinite).
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 64,
        kernel_size: int = 3,
        settings: FrequencySettings | None = None,
        stride: int = 1,
        **overrides: object,
    ) -> None:
        """
        Args:
            in_channels: C, image channels.
            out_channels: O, number of filters.
            kernel_size: k, odd and positive; larger k gives a finer frequency grid.
            settings: mode, p, r_c, τ, σ and λ (``FrequencySettings``); the defaults when None.
                The cutoff must leave both bands non-empty for k.
            stride: convolution stride in pixels.
            **overrides: single fields of ``settings`` by name (``mode="fixed"``), for short calls.
        """
        super().__init__()
        settings = settings or FrequencySettings()
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(FrequencySettings)})
        if unknown:
            raise TypeError(f"FrequencyStem: unknown settings {', '.join(unknown)}")
        settings = settings.replace(**overrides) if overrides else settings
        if (
            isinstance(kernel_size, bool)
            or not isinstance(kernel_size, numbers.Integral)
            or kernel_size <= 0
            or kernel_size % 2 == 0
        ):
            raise ValueError(
                f"kernel_size={kernel_size!r} is not allowed; "
                "it must be a positive odd integer (3, 5, 7, ...)"
            )
        self.in_channels = _check_int("in_channels", in_channels)
        self.out_channels = _check_int("out_channels", out_channels)
        self.kernel_size = int(kernel_size)
        self.stride = _check_int("stride", stride)
        try:
            check_cutoff(self.kernel_size, settings.cutoff)
        except ValueError as e:
            raise SettingError("cutoff", str(e)) from None
        self.settings = settings
        mode = settings.mode

        k = self.kernel_size
        self.weight = nn.Parameter(torch.empty(self.out_channels, self.in_channels, k, k))
        # nn.Conv2d's own initialisation, so free mode is the baseline conv exactly.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

        low, high = band_masks(k, self.cutoff)  # (k, k) bool each
        # Derived from the constructor arguments: rebuilt, never saved.
        self.register_buffer("low_mask", low.float(), persistent=False)
        self.register_buffer("high_mask", high.float(), persistent=False)
        mirror, own = _hermitian_mirror(k)
        self.register_buffer("mirror_index", mirror, persistent=False)
        self.register_buffer("own_draw", own, persistent=False)
        self.register_buffer("dft_basis", dft_basis(k).float(), persistent=False)  # (k², 2k²)

        if mode == "fixed":
            n_low = count_low_filters(out_channels=self.out_channels, proportion=self.proportion)
            is_low = (torch.arange(self.out_channels) < n_low)[:, None, None]  # (O, 1, 1)
            gains = torch.where(is_low, low.float(), high.float())  # (O, k, k)
            self.register_buffer("band_gains", gains, persistent=False)
        else:
            self.band_gains = None
        if mode == "learned":
            self.alpha_logits = nn.Parameter(torch.zeros(self.out_channels))
        else:
            self.alpha_logits = None

    # The settings, read as attributes (``stem.mode``, ``stem.cutoff``, ...).
    mode = property(lambda self: self.settings.mode)
    proportion = property(lambda self: self.settings.proportion)
    cutoff = property(lambda self: self.settings.cutoff)
    threshold = property(lambda self: self.settings.threshold)
    perturbation = property(lambda self: self.settings.perturbation)
    proportion_weight = property(lambda self: self.settings.proportion_weight)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            + ", ".join(
                f"{f.name}={getattr(self.settings, f.name)}" for f in dataclasses.fields(self.settings)
            )
        )

    # -- the frequency-domain gains ---------------------------------------------------

    def alpha(self) -> torch.Tensor | None:
        """Per-filter low-band gain ``α = sigmoid(a)`` (O,) in learned mode, else None."""
        if self.alpha_logits is None:
            return None
        return torch.sigmoid(self.alpha_logits.float())

    def _gains(self) -> torch.Tensor | None:
        """Per-filter, per-bin gains (O, k, k) float32, or None in free mode."""
        if self.mode == "fixed":
            return self.band_gains.float()
        if self.mode == "learned":
            a = self.alpha()[:, None, None]  # (O,) -> (O, 1, 1)
            return a * self.low_mask.float() + (1 - a) * self.high_mask.float()  # -> (O, k, k)
        return None

    def _perturbation_gains(self) -> torch.Tensor:
        """Amplitude gains ``sqrt(max(0, 1 + σξ))`` (O, k, k), Hermitian-symmetric, no gradient."""
        k = self.kernel_size
        xi = torch.randn(self.out_channels, k * k, device=self.weight.device)  # (O, k*k)
        # Bin (-u, -v) copies the draw of (u, v): symmetric, and each bin stays N(0, 1).
        xi = torch.where(self.own_draw.flatten(), xi, xi[:, self.mirror_index]).reshape(-1, k, k)
        return torch.sqrt(torch.clamp(1 + self.perturbation * xi, min=0))

    def _apply_gains(self, gains: torch.Tensor | None, *, perturb: bool) -> torch.Tensor:
        """``Re(IDFT(g ⊙ s ⊙ DFT(V)))`` in float32 (float64 if V is), (O, C, k, k).

        V itself when nothing applies.
        """
        if perturb:
            noise = self._perturbation_gains()
            gains = noise if gains is None else gains * noise
        if gains is None:
            return self.weight
        dtype = torch.float64 if self.weight.dtype == torch.float64 else torch.float32
        o, c, k, _ = self.weight.shape
        # Real matrix products instead of fft2/ifft2 (models.spectral.dft_basis): the same
        # map, but torch.compile generates code for it (inductor has no complex kernels)
        # and a GPU runs two tiny GEMMs instead of four cuFFT launches per step.
        # In float32 even under bf16 autocast: the gains must not be rounded.
        with torch.autocast(device_type=self.weight.device.type, enabled=False):
            basis = self.dft_basis.to(dtype)  # (k², 2k²): cosines, sines
            v = self.weight.to(dtype).reshape(o, c, k * k)  # (O, C, k²) pixels
            g = gains.to(dtype).reshape(o, 1, k * k).repeat(1, 1, 2)  # (O, 1, 2k²): same gain on cos and sin
            w = ((v @ basis) * g) @ basis.T / (k * k)  # (O, C, k²) = Re(IDFT(g ⊙ DFT(V)))
            return w.reshape(o, c, k, k)

    def effective_weight(self) -> torch.Tensor:
        """The weight the layer applies, without perturbation: what analysis and figures use; (O, C, k, k)."""
        return self._apply_gains(self._gains(), perturb=False)

    def forward_weight(self) -> torch.Tensor:
        """The weight for one forward pass: the effective weight, perturbed when training with σ > 0."""
        perturb = self.training and self.perturbation > 0
        return self._apply_gains(self._gains(), perturb=perturb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, O, H', W')."""
        weight = self.forward_weight()
        if weight is not self.weight and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            # Keep cuDNN on its NHWC kernels when the network runs channels_last.
            weight = weight.contiguous(memory_format=torch.channels_last)
        return F.conv2d(x, weight, None, self.stride, self.kernel_size // 2)

    # -- what the trainer and the tracker read ----------------------------------------

    def proportion_loss(self) -> torch.Tensor:
        """``λ·(mean α - p)²``, a scalar to add to the loss; a zero tensor unless learned with λ > 0."""
        if self.mode != "learned" or self.proportion_weight == 0:
            return self.weight.new_zeros(())
        return self.proportion_weight * (self.alpha().mean() - self.proportion) ** 2

    @torch.no_grad()
    def measured_proportion(self) -> float:
        """``p̂``: share of low-frequency filters in the effective weight (NaN if none has energy)."""
        return frequency_proportion(self.effective_weight().float(), self.cutoff, self.threshold)

    @torch.no_grad()
    def n_low(self) -> int:
        """Low-frequency filters: ``round(p·O)`` in fixed mode (the constraint), else the number measured."""
        if self.mode == "fixed":
            return count_low_filters(out_channels=self.out_channels, proportion=self.proportion)
        return int(
            (classify_filters(self.effective_weight().float(), self.cutoff, self.threshold) == 1).sum()
        )
