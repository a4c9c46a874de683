"""CIFAR ResNet-18 with an injected first layer (the frequency stem).

The standard CIFAR variant of ResNet-18: a stride-1 ``k×k`` stem without
max-pool (32×32 images are too small to downsample at once), then four stages
of two ``BasicBlock``s at widths w, 2w, 4w, 8w and strides 1, 2, 2, 2, global
average pooling and a linear classifier. All convolutions are bias-free (each
is followed by BatchNorm). At width 64 with a 3×3 stem it has 11,173,962
parameters, the usual 11.17 M. The stem is any module mapping (B, 3, H, W) to
(B, w, H, W); by default a ``FrequencyStem`` in free mode, i.e. a plain conv.
"""

from __future__ import annotations

import torch
from torch import nn

from models.stem import FrequencySettings, FrequencyStem

__all__ = ["BasicBlock", "ResNet18", "build_resnet18"]


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with a residual connection; (B, in, H, W) -> (B, out, H/stride, W/stride)."""

    expansion = 1

    def __init__(self, *, in_channels: int, out_channels: int, stride: int = 1) -> None:
        """
        Args:
            in_channels: input channels.
            out_channels: output channels.
            stride: stride of the first conv and of the shortcut (2 halves H and W).
        """
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            # A 1×1 projection where the shape changes, as in the original ResNet (option B).
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.downsample = None

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act2(x + shortcut)


class ResNet18(nn.Module):
    """CIFAR ResNet-18: stem -> BN -> ReLU -> 4 stages -> avg pool -> fc.

    (B, 3, H, W) -> (B, classes) logits.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        width: int = 64,
        stem: nn.Module | None = None,
        stem_kernel: int = 3,
    ) -> None:
        """
        Args:
            num_classes: outputs of the classifier.
            width: channels of the first stage (64 = ResNet-18); stages use w, 2w, 4w, 8w.
            stem: first layer, (B, 3, H, W) -> (B, width, H, W); default a free ``FrequencyStem``.
            stem_kernel: k of the default stem (ignored when ``stem`` is given).
        """
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width={width!r} is not allowed; it must be a positive integer")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes={num_classes!r} is not allowed; it must be a positive integer")
        self.num_classes = num_classes
        self.width = width
        self.stem = stem if stem is not None else FrequencyStem(out_channels=width, kernel_size=stem_kernel)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        channels = width
        stages = []
        for i, stride in enumerate((1, 2, 2, 2)):
            out = width * 2**i
            stages.append(
                nn.Sequential(
                    BasicBlock(in_channels=channels, out_channels=out, stride=stride),
                    BasicBlock(in_channels=out, out_channels=out, stride=1),
                )
            )
            channels = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He init for the ReLU convs, as timm's ResNet; the stem keeps its own (nn.Conv2d's) init.
        for name, module in self.named_modules():
            if name.startswith("stem"):
                continue
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x):
        """(B, 3, H, W) -> (B, 8w, H/8, W/8)."""
        x = self.act1(self.bn1(self.stem(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, x):
        """(B, 8w, h, w) -> (B, num_classes), in the head's own dtype (float32 unless cast).

        The head runs outside autocast: bf16 logits are spaced 0.0625 apart near
        10, so close top-2 classes would tie and argmax would pick the lower
        index -- noise in exactly the small robustness differences studied here.
        """
        pooled = self.global_pool(x).flatten(1)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.fc(pooled.to(self.fc.weight.dtype))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def build_resnet18(
    *,
    width: int = 64,
    stem_kernel: int = 3,
    num_classes: int = 10,
    frequency: FrequencySettings | None = None,
    **overrides: object,
) -> ResNet18:
    """ResNet-18 with a ``FrequencyStem`` of ``frequency`` (single settings may be given by name)."""
    stem = FrequencyStem(
        in_channels=3, out_channels=width, kernel_size=stem_kernel, settings=frequency, **overrides
    )
    return ResNet18(num_classes=num_classes, width=width, stem=stem)
