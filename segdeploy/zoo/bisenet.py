"""BiSeNet v1 (Yu et al., "BiSeNet: Bilateral Segmentation Network", ECCV 2018), compact.

Structure as in the paper:
- **Spatial path**: three stride-2 conv-BN-ReLU layers -> 1/8 resolution, wide channels, rich detail
  (a final 1x1 conv-BN-ReLU sets the width, as in the reference implementations).
- **Context path**: a small ResNet-style backbone down to 1/32, with a *global average pooling tail*
  (``nn.AdaptiveAvgPool2d(1)`` + 1x1 conv) giving the global context.
- **Attention refinement modules (ARM)** on the 1/16 and 1/32 features: 3x3 conv, then channel attention
  from global average pooling -> 1x1 conv -> BN -> sigmoid, multiplied back.
- The 1/32 ARM output plus the global context is upsampled to 1/16 and added to the 1/16 ARM output, then
  upsampled to 1/8 (each followed by a 3x3 conv-BN-ReLU, as in the reference implementations).
- **Feature fusion module (FFM)**: concatenate spatial and context features, conv-BN-ReLU, then
  squeeze-excitation style attention (GAP -> 1x1 -> ReLU -> 1x1 -> sigmoid); output ``f + f * a``.
- Head: 3x3 conv-BN-ReLU, 1x1 classifier, bilinear upsampling (8x) to the input size.
  The paper's two auxiliary heads only matter for training losses and are not part of inference.

Uses ``nn.AdaptiveAvgPool2d(1)`` for every global pooling, as the original code does (exporters that
cannot handle dynamic adaptive pooling need a rewrite; output size 1 is a global average).
Sizes: any H, W works (upsampling targets exact sizes); the declared ``spatial_multiple`` is 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segdeploy.zoo._layers import CompactResNet, ConvBNReLU, init_weights


class SpatialPath(nn.Module):
    """Three stride-2 conv-BN-ReLU layers (7x7, 3x3, 3x3) + 1x1 conv-BN-ReLU: 1/8 resolution."""

    def __init__(self, in_channels: int, width: int = 32, out_channels: int = 64):
        super().__init__()
        self.layers = nn.Sequential(
            ConvBNReLU(in_channels, width, 7, stride=2),
            ConvBNReLU(width, width, 3, stride=2),
            ConvBNReLU(width, width, 3, stride=2),
            ConvBNReLU(width, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class AttentionRefinementModule(nn.Module):
    """3x3 conv-BN-ReLU, then ``x * sigmoid(BN(conv1x1(GAP(x))))``."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 3)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(out_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x * self.attention(x)


class ContextPath(nn.Module):
    """Backbone to 1/32, global context tail, two ARMs; returns the 1/8-resolution context feature."""

    def __init__(self, in_channels: int, out_channels: int = 64):
        super().__init__()
        self.backbone = CompactResNet(in_channels, widths=(16, 32, 64, 128))
        c16, c32 = self.backbone.out_channels[2], self.backbone.out_channels[3]
        self.global_context = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNReLU(c32, out_channels, 1))
        self.arm16 = AttentionRefinementModule(c16, out_channels)
        self.arm32 = AttentionRefinementModule(c32, out_channels)
        self.refine32 = ConvBNReLU(out_channels, out_channels, 3)
        self.refine16 = ConvBNReLU(out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor, size8: torch.Size) -> torch.Tensor:
        _, c8, c16, c32 = self.backbone(x)
        tail = self.global_context(c32)  # [N, C, 1, 1], broadcast over the 1/32 map
        f32 = self.arm32(c32) + tail
        f32 = F.interpolate(f32, size=c16.shape[-2:], mode="bilinear", align_corners=False)
        f32 = self.refine32(f32)
        f16 = self.arm16(c16) + f32
        f16 = F.interpolate(f16, size=size8, mode="bilinear", align_corners=False)
        return self.refine16(f16)


class FeatureFusionModule(nn.Module):
    """concat -> conv-BN-ReLU -> ``f + f * sigmoid(conv1x1(relu(conv1x1(GAP(f)))))``."""

    def __init__(self, in_ch: int, out_ch: int, reduction: int = 4):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 1)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(out_ch, out_ch // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch // reduction, out_ch, 1),
            nn.Sigmoid(),
        )

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        f = self.conv(torch.cat([spatial, context], dim=1))
        return f + f * self.attention(f)


class BiSeNet(nn.Module):
    """Compact BiSeNet v1. ``forward(x: [N, in_channels, H, W]) -> logits [N, num_classes, H, W]``."""

    spatial_multiple = 32

    def __init__(self, num_classes: int = 21, in_channels: int = 3, width: int = 64):
        super().__init__()
        self.num_classes = num_classes
        self.spatial_path = SpatialPath(in_channels, 32, width)
        self.context_path = ContextPath(in_channels, width)
        self.ffm = FeatureFusionModule(2 * width, 2 * width)
        self.head = nn.Sequential(ConvBNReLU(2 * width, width, 3), nn.Conv2d(width, num_classes, 1))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sp = self.spatial_path(x)
        cp = self.context_path(x, sp.shape[-2:])
        logits = self.head(self.ffm(sp, cp))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def bisenet(num_classes: int = 21, in_channels: int = 3) -> BiSeNet:
    """Factory: compact BiSeNet v1, about 0.6 M parameters."""
    return BiSeNet(num_classes=num_classes, in_channels=in_channels)
