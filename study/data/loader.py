"""A batch loader that never leaves the accelerator.

``DeviceLoader`` keeps the images on the device as uint8 and does the seeded
shuffle, random crop, horizontal flip and normalisation there as whole-batch
tensor ops (one gather per batch, no per-sample Python, no host
synchronisation), in the manner of airbench.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

# Per-channel RGB statistics of the 50,000 training images on the 0-1 scale.
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)


def _as_uint8_nchw(images, device: torch.device) -> torch.Tensor:
    """``(N, 32, 32, 3)`` uint8 (numpy or tensor) -> ``(N, 3, 32, 32)`` uint8 on ``device``."""
    t = torch.as_tensor(images) if not isinstance(images, torch.Tensor) else images
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[3] != 3:
        raise ValueError(f"DeviceLoader images: expected uint8 (N, H, W, 3), got {t.dtype} {tuple(t.shape)}")
    # Transfer as uint8 (4x less than float), then lay out channels-first there.
    return t.to(device, non_blocking=True).permute(0, 3, 1, 2).contiguous()


def _reflect_index(size: int, pad: int, device: torch.device) -> torch.Tensor:
    """Source index of each position of a reflect-padded axis (edge not repeated, like np.pad 'reflect')."""
    i = torch.arange(-pad, size + pad, device=device).abs()
    return torch.where(i >= size, 2 * (size - 1) - i, i)


class DeviceLoader:
    """Batches of a uint8 image set that lives on the device.

    Each epoch draws a permutation, crop offsets and flips from a generator
    seeded by ``(seed, epoch)``; the batch is then one gather from the padded
    uint8 images (crop and flip folded into the row and column indices) and
    one fused scale-and-shift to normalised float. Padding is reflect
    (the edge pixel is not repeated), applied once at construction.

    Args:
        images: ``(N, 32, 32, 3)`` uint8, numpy or tensor; copied to the device once.
        labels: ``(N,)`` integer labels.
        batch_size: images per batch.
        device: where the images live and batches are made.
        train: shuffle and augment (and drop the last partial batch by default).
        augment: random crop and horizontal flip in train mode.
        seed: the order and augmentation of epoch ``e`` follow ``(seed, e)``.
        drop_last: drop the last partial batch; default ``train``.
        channels_last: return batches in channels-last memory format.
        pad: crop padding in pixels; crops are ``pad`` pixels or less from centre.
    """

    def __init__(
        self,
        images,
        labels,
        *,
        batch_size: int,
        device: str | torch.device,
        train: bool,
        augment: bool = True,
        seed: int = 0,
        drop_last: bool | None = None,
        channels_last: bool = False,
        pad: int = 4,
    ):
        if batch_size < 1:
            raise ValueError(f"DeviceLoader batch_size: {batch_size} must be >= 1")
        if pad < 0:
            raise ValueError(f"DeviceLoader pad: {pad} must be >= 0")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.train = bool(train)
        self.augment = bool(augment) and self.train
        self.seed = int(seed)
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.channels_last = bool(channels_last)
        self.pad = int(pad) if self.augment else 0
        self.epoch = 0
        x = _as_uint8_nchw(images, self.device)  # (N, 3, H, W) uint8
        self.labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
        self.labels = self.labels.to(self.device, torch.int64)
        if self.labels.shape != (x.shape[0],):
            raise ValueError(
                f"DeviceLoader labels: expected shape ({x.shape[0]},), got {tuple(self.labels.shape)}"
            )
        self.size = (x.shape[2], x.shape[3])
        if self.pad:
            rows = _reflect_index(self.size[0], self.pad, self.device)
            cols = _reflect_index(self.size[1], self.pad, self.device)
            x = x[:, :, rows][:, :, :, cols]  # (N, 3, H + 2p, W + 2p)
        self.images = x
        mean = torch.tensor(CIFAR10_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR10_STD, device=self.device).view(1, 3, 1, 1)
        # (x/255 - mean)/std as one multiply-add.
        self._scale = 1.0 / (255.0 * std)
        self._shift = -mean / std

    def __len__(self) -> int:
        n = self.labels.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _generator(self) -> torch.Generator:
        seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint64)[0] >> 1)
        g = torch.Generator(device=self.device)
        g.manual_seed(seed)
        return g

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().mul_(self._scale).add_(self._shift)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.labels.shape[0]
        h, w = self.size
        if not self.train:
            for start in range(0, len(self) * self.batch_size, self.batch_size):
                yield (
                    self._normalise(self.images[start : start + self.batch_size]),
                    self.labels[start : start + self.batch_size],
                )
            return
        g = self._generator()
        order = torch.randperm(n, generator=g, device=self.device)
        if self.augment:
            # Whole-epoch draws: offsets in [0, 2p] (a crop inside the padded image), flips 50/50.
            dy = torch.randint(0, 2 * self.pad + 1, (n,), generator=g, device=self.device)
            dx = torch.randint(0, 2 * self.pad + 1, (n,), generator=g, device=self.device)
            flip = torch.randint(0, 2, (n,), generator=g, device=self.device).bool()
            ar_h = torch.arange(h, device=self.device)
            ar_w = torch.arange(w, device=self.device)
            channels = torch.arange(3, device=self.device).view(1, 3, 1, 1)
        for b in range(len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            idx = order[sl]
            if self.augment:
                rows = dy[sl, None] + ar_h  # (B, H)
                cols = torch.where(
                    flip[sl, None], dx[sl, None] + (w - 1) - ar_w, dx[sl, None] + ar_w
                )  # (B, W)
                x = self.images[
                    idx.view(-1, 1, 1, 1), channels, rows[:, None, :, None], cols[:, None, None, :]
                ]
            else:
                x = self.images[idx]
            yield self._normalise(x), self.labels[idx]
