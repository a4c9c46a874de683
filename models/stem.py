"""The first convolution of the network, with its frequency make-up controlled (docs/method.md).

``FrequencyStem`` is a bias-free ``k×k`` convolution whose free parameter ``V``
(``weight``, shape (O, C, k, k)) is turned into the effective weight ``W``:

- ``free``: ``W = V`` (a plain ``nn.Conv2d``; the baseline).
- ``fixed``: ``W = Re(IDFT(M ⊙ DFT(V)))`` with ``M`` the LOW mask for the first
  ``round(p·O)`` filters and the HIGH mask for the rest, an idempotent
  projection, so the measured proportion ``p̂`` is exactly ``round(p·O)/O``.
- ``learned`` (form ``LEARNED_FORM`` = "energy-share"): ``α_o = sigmoid(a_o)`` is
  filter o's low-band energy share. With ``L̂_o = LOW(V_o)/‖LOW(V_o)‖`` and
  ``Ĥ_o = HIGH(V_o)/‖HIGH(V_o)‖`` (norms over channels and bins),
  ``W_o = ‖V_o‖·(√α_o·L̂_o + √(1−α_o)·Ĥ_o)``; the bands are orthogonal, so
  ``L_o = α_o`` exactly (Parseval) and ``p̂ = #{α_o ≥ τ}/O``.
  ``proportion_loss()`` gives the soft-count pull
  ``λ·(mean_o sigmoid((α_o − τ)/T) − p)²`` for the trainer to add.

With ``perturbation = σ > 0`` and the module in training mode, every forward
pass also multiplies each filter's power spectrum (of ``W``) by ``max(0, 1 + σξ)``,
``ξ ~ N(0, 1)`` per filter and bin, mirrored so that the bin ``(-u, -v)``
takes the draw of ``(u, v)`` (the result stays real); the amplitude is scaled
by the square root and the phase is untouched. Evaluation never perturbs, and
``σ = 0`` runs the very same code as no perturbation.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import torch
from torch import nn
from torch.nn import functional as F

from models.settings import MODES, FrequencySettings, SettingError, count_low_filters
from models.spectral import band_masks, check_cutoff, classify_filters, dft_basis, frequency_proportion

__all__ = [
    "LEARNED_FORM",
    "LEGACY_LEARNED_FORM",
    "FrequencySettings",
    "FrequencyStem",
    "MODES",
    "SettingError",
    "count_low_filters",
    "initial_alpha",
]

# The learned mode's form, a code version: runs logged before it (band gains α, 1 − α on a
# free V, which V absorbs, so α neither moved nor set p̂) carry no form and read as the legacy one.
LEARNED_FORM = "energy-share"
LEGACY_LEARNED_FORM = "band-gains"


def initial_alpha(out_channels: int) -> torch.Tensor:
    """Learned mode's starting shares ``α_o = (o + ½)/O`` (O,) float32: evenly spread over (0, 1).

    Why: ``p̂`` starts at ``#{α_o ≥ τ}/O`` (½ at τ = ½) and every target is reachable by moving
    the filters nearest τ, which are the ones the soft count pulls; a common start (all ½) would
    sit on τ, where one rounding step flips the whole layer, and filters that start alike move
    alike under the pull, so they would cross τ together.
    """
    return (torch.arange(out_channels, dtype=torch.float32) + 0.5) / out_channels


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
    In learned mode ``alpha_logits`` (O,) start at ``logit(initial_alpha(O))``, the
    shares evenly spread over (0, 1).
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
            self.alpha_logits = nn.Parameter(torch.logit(initial_alpha(self.out_channels)))
        else:
            self.alpha_logits = None

    # The settings, read as attributes (``stem.mode``, ``stem.cutoff``, ...).
    mode = property(lambda self: self.settings.mode)
    proportion = property(lambda self: self.settings.proportion)
    cutoff = property(lambda self: self.settings.cutoff)
    threshold = property(lambda self: self.settings.threshold)
    perturbation = property(lambda self: self.settings.perturbation)
    proportion_weight = property(lambda self: self.settings.proportion_weight)
    temperature = property(lambda self: self.settings.temperature)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            + ", ".join(
                f"{f.name}={getattr(self.settings, f.name)}" for f in dataclasses.fields(self.settings)
            )
        )

    # -- the effective weight --------------------------------------------------------

    def alpha(self) -> torch.Tensor | None:
        """Per-filter low-band energy share ``α = sigmoid(a)`` (O,) in learned mode, else None."""
        if self.alpha_logits is None:
            return None
        return torch.sigmoid(self.alpha_logits.float())

    def _perturbation_gains(self) -> torch.Tensor:
        """Amplitude gains ``sqrt(max(0, 1 + σξ))`` (O, k, k), Hermitian-symmetric, no gradient."""
        k = self.kernel_size
        xi = torch.randn(self.out_channels, k * k, device=self.weight.device)  # (O, k*k)
        # Bin (-u, -v) copies the draw of (u, v): symmetric, and each bin stays N(0, 1).
        xi = torch.where(self.own_draw.flatten(), xi, xi[:, self.mirror_index]).reshape(-1, k, k)
        return torch.sqrt(torch.clamp(1 + self.perturbation * xi, min=0))

    def _dtype(self) -> torch.dtype:
        return torch.float64 if self.weight.dtype == torch.float64 else torch.float32

    def _filter(self, x: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
        """``Re(IDFT(g ⊙ DFT(x)))`` of kernels ``x`` (O, C, k, k) with per-filter, per-bin real
        gains ``g`` (O, k, k) or (k, k); in float32 (float64 if V is), (O, C, k, k)."""
        dtype = self._dtype()
        o, c, k, _ = x.shape
        # Real matrix products instead of fft2/ifft2 (models.spectral.dft_basis): the same
        # map, but torch.compile generates code for it (inductor has no complex kernels)
        # and a GPU runs two tiny GEMMs instead of four cuFFT launches per step.
        # In float32 even under bf16 autocast: the gains must not be rounded.
        with torch.autocast(device_type=x.device.type, enabled=False):
            basis = self.dft_basis.to(dtype)  # (k², 2k²): cosines, sines
            v = x.to(dtype).reshape(o, c, k * k)  # (O, C, k²) pixels
            g = gains.to(dtype).reshape(-1, 1, k * k).repeat(1, 1, 2)  # (O|1, 1, 2k²): same gain on cos, sin
            w = ((v @ basis) * g) @ basis.T / (k * k)  # (O, C, k²) = Re(IDFT(g ⊙ DFT(x)))
            return w.reshape(o, c, k, k)

    def _learned_weight(self) -> torch.Tensor:
        """``W_o = ‖V_o‖·(√α_o·L̂_o + √(1−α_o)·Ĥ_o)`` (O, C, k, k), so ``L_o(W) = α_o`` exactly.

        ``LOW(V)`` and ``V − LOW(V) = HIGH(V)`` are orthogonal (disjoint bins), so
        ``‖W_o‖ = ‖V_o‖`` and the low band holds ``α_o`` of it. Scaling by ``‖V_o‖``
        (no extra parameter) keeps the layer a plain conv's in scale: weight decay
        on V shrinks W as it would a free kernel, and W = V wherever α_o already
        equals V_o's own low share.
        """
        dtype = self._dtype()
        with torch.autocast(device_type=self.weight.device.type, enabled=False):
            v = self.weight.to(dtype)  # (O, C, k, k)
            low = self._filter(v, self.low_mask)  # LOW(V), (O, C, k, k)
            high = v - low  # HIGH(V): the masks are complementary
            # Band norms per filter over channels and pixels (= over bins, Parseval), (O, 1, 1, 1).
            # The floor only keeps an (impossible in practice) empty band of V from dividing by 0.
            low_norm = low.square().sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-30).sqrt()
            high_norm = high.square().sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-30).sqrt()
            scale = (low_norm.square() + high_norm.square()).sqrt()  # ‖V_o‖
            a = torch.sigmoid(self.alpha_logits.to(dtype))[:, None, None, None]  # (O, 1, 1, 1)
            return scale * (a.sqrt() * low / low_norm + (1 - a).sqrt() * high / high_norm)

    def _weight(self, *, perturb: bool) -> torch.Tensor:
        """The effective weight (O, C, k, k), perturbed when asked: V itself when nothing applies."""
        if self.mode == "learned":
            w = self._learned_weight()
            return self._filter(w, self._perturbation_gains()) if perturb else w
        gains = self.band_gains.float() if self.mode == "fixed" else None
        if perturb:
            noise = self._perturbation_gains()
            gains = noise if gains is None else gains * noise
        return self.weight if gains is None else self._filter(self.weight, gains)

    def effective_weight(self) -> torch.Tensor:
        """The weight the layer applies, without perturbation: what analysis and figures use; (O, C, k, k)."""
        return self._weight(perturb=False)

    def forward_weight(self) -> torch.Tensor:
        """The weight for one forward pass: the effective weight, perturbed when training with σ > 0."""
        return self._weight(perturb=self.training and self.perturbation > 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, O, H', W')."""
        weight = self.forward_weight()
        if weight is not self.weight and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            # Keep cuDNN on its NHWC kernels when the network runs channels_last.
            weight = weight.contiguous(memory_format=torch.channels_last)
        return F.conv2d(x, weight, None, self.stride, self.kernel_size // 2)

    # -- what the trainer and the tracker read ----------------------------------------

    def soft_proportion(self) -> torch.Tensor | None:
        """``mean_o sigmoid((α_o − τ)/T)``, the differentiable count of low filters (0-d), or None
        outside learned mode. It tends to ``p̂ = #{α_o ≥ τ}/O`` as T → 0."""
        if self.mode != "learned":
            return None
        return torch.sigmoid((self.alpha() - self.threshold) / self.temperature).mean()

    def proportion_loss(self) -> torch.Tensor:
        """``λ·(mean_o sigmoid((α_o − τ)/T) − p)²``, a scalar to add to the loss; a zero tensor
        unless learned with λ > 0."""
        if self.mode != "learned" or self.proportion_weight == 0:
            return self.weight.new_zeros(())
        return self.proportion_weight * (self.soft_proportion() - self.proportion) ** 2

    @torch.no_grad()
    def alpha_proportion(self) -> float | None:
        """``p̂`` read from the learned shares, ``#{α_o ≥ τ}/O``; None outside learned mode."""
        alpha = self.alpha()
        return None if alpha is None else int((alpha >= self.threshold).sum()) / alpha.numel()

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
