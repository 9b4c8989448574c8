"""Compact U-Net: the example model trained on the shapes set (``examples/train_shapes.py``).

Four encoder levels (``base``, 2x, 4x, 8x channels at strides 1, 2, 4, 8) and a bottleneck at stride 16
with 8x channels, each a pair of 3x3 conv + BatchNorm + ReLU; the decoder upsamples bilinearly (no
transposed convolutions, so the graph is free of checkerboard artefacts and exports cleanly), concatenates
the skip connection and applies another conv pair. A 1x1 head gives raw per-class logits.

Input ``[N, in_channels, H, W]`` with H and W multiples of 16 (``SPATIAL_MULTIPLE``); output
``[N, num_classes, H, W]``. 838,870 parameters at ``base=16`` (3.4 MB float32).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SPATIAL_MULTIPLE = 16


class ConvPair(nn.Sequential):
    """Two 3x3 conv + BatchNorm + ReLU blocks."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Bilinear x2 upsampling of the deeper feature, concatenation with the skip, conv pair."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv = ConvPair(cin + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class CompactUNet(nn.Module):
    """U-Net with 4 levels + bottleneck; see the module docstring for shapes."""

    spatial_multiple = SPATIAL_MULTIPLE

    def __init__(self, num_classes: int = 6, in_channels: int = 3, base: int = 16):
        super().__init__()
        if num_classes < 1 or in_channels < 1 or base < 1:
            raise ValueError("num_classes, in_channels and base must be positive")
        c1, c2, c3, c4 = base, base * 2, base * 4, base * 8
        self.num_classes = num_classes
        self.enc1 = ConvPair(in_channels, c1)
        self.enc2 = ConvPair(c1, c2)
        self.enc3 = ConvPair(c2, c3)
        self.enc4 = ConvPair(c3, c4)
        self.bottleneck = ConvPair(c4, c4)
        self.up4 = Up(c4, c4, c3)
        self.up3 = Up(c3, c3, c2)
        self.up2 = Up(c2, c2, c1)
        self.up1 = Up(c1, c1, c1)
        self.head = nn.Conv2d(c1, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        e4 = self.enc4(F.max_pool2d(e3, 2))
        b = self.bottleneck(F.max_pool2d(e4, 2))
        d = self.up4(b, e4)
        d = self.up3(d, e3)
        d = self.up2(d, e2)
        d = self.up1(d, e1)
        return self.head(d)


def compact_unet(num_classes: int = 6, in_channels: int = 3, base: int = 16) -> CompactUNet:
    """Factory: a randomly initialised :class:`CompactUNet` (usable as ``--model segdeploy.zoo.unet:compact_unet``)."""
    return CompactUNet(num_classes=num_classes, in_channels=in_channels, base=base)
