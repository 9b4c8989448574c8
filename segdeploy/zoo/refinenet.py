"""RefineNet (Lin et al., "RefineNet: Multi-Path Refinement Networks", CVPR 2017), compact.

Structure as in the paper (4-cascaded RefineNet):
- a ResNet-style backbone gives features at 1/4, 1/8, 1/16, 1/32;
- RefineNet-4 takes the 1/32 feature alone; RefineNet-k (k = 3, 2, 1) takes the backbone feature at
  its resolution *and* the output of RefineNet-(k+1), so coarse context is refined with finer detail;
- each RefineNet block has
  * **adaptive convolution**: per input path, a 3x3 conv to the block width then two
    **residual conv units** (RCU: ReLU-conv3x3-ReLU-conv3x3 + identity);
  * **multi-resolution fusion**: a 3x3 conv per path, bilinear upsampling of the coarser paths to
    the finest input's size, and a sum;
  * **chained residual pooling**: ReLU, then a chain of (5x5 max-pool stride 1 -> 3x3 conv) whose
    every output is added back onto the running sum (``x = x + p_1 + p_2 + ...``);
  * an **output RCU**;
- after RefineNet-1 (1/4): two RCUs, a 1x1 classifier, bilinear upsampling to the input size.

Sizes: any H, W works (fusion upsamples to the exact finer size); the declared ``spatial_multiple`` is 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segdeploy.zoo._layers import CompactResNet


def _conv3x3(in_ch: int, out_ch: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias)


class ResidualConvUnit(nn.Module):
    """RCU: ``x + conv(relu(conv(relu(x))))`` (no BN, as in the paper)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = _conv3x3(ch, ch)
        self.conv2 = _conv3x3(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class ChainedResidualPooling(nn.Module):
    """ReLU, then ``stages`` x (5x5 max-pool stride 1 pad 2 -> 3x3 conv), each added onto the sum."""

    def __init__(self, ch: int, stages: int = 2):
        super().__init__()
        self.pool = nn.MaxPool2d(5, stride=1, padding=2)
        self.convs = nn.ModuleList(_conv3x3(ch, ch, bias=False) for _ in range(stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        path = x
        for conv in self.convs:
            path = conv(self.pool(path))
            x = x + path
        return x


class RefineNetBlock(nn.Module):
    """One RefineNet block over ``len(in_channels)`` paths, finest path first in ``forward``."""

    def __init__(self, in_channels: tuple[int, ...], width: int):
        super().__init__()
        self.adapt = nn.ModuleList(
            nn.Sequential(_conv3x3(c, width), ResidualConvUnit(width), ResidualConvUnit(width))
            for c in in_channels
        )
        self.fuse = (
            nn.ModuleList(_conv3x3(width, width) for _ in in_channels) if len(in_channels) > 1 else None
        )
        self.crp = ChainedResidualPooling(width)
        self.out = ResidualConvUnit(width)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        xs = [adapt(x) for adapt, x in zip(self.adapt, xs)]
        if self.fuse is None:
            y = xs[0]
        else:
            size = xs[0].shape[-2:]
            y = self.fuse[0](xs[0])
            for conv, x in zip(self.fuse[1:], xs[1:]):
                y = y + F.interpolate(conv(x), size=size, mode="bilinear", align_corners=False)
        return self.out(self.crp(y))


class RefineNet(nn.Module):
    """Compact 4-cascaded RefineNet. ``forward(x: [N, in_channels, H, W]) -> logits [N, num_classes, H, W]``."""

    spatial_multiple = 32

    def __init__(
        self,
        num_classes: int = 21,
        in_channels: int = 3,
        widths: tuple[int, int, int, int] = (32, 32, 32, 64),
    ):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = CompactResNet(in_channels, widths=(16, 32, 64, 128))
        c = self.backbone.out_channels
        # widths[k] is the width of RefineNet-(k+1); RefineNet-4 (1/32) is the widest, as in the paper.
        self.refine4 = RefineNetBlock((c[3],), widths[3])
        self.refine3 = RefineNetBlock((c[2], widths[3]), widths[2])
        self.refine2 = RefineNetBlock((c[1], widths[2]), widths[1])
        self.refine1 = RefineNetBlock((c[0], widths[1]), widths[0])
        self.head = nn.Sequential(
            ResidualConvUnit(widths[0]),
            ResidualConvUnit(widths[0]),
            nn.Conv2d(widths[0], num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3, c4 = self.backbone(x)
        r4 = self.refine4([c4])
        r3 = self.refine3([c3, r4])
        r2 = self.refine2([c2, r3])
        r1 = self.refine1([c1, r2])
        logits = self.head(r1)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def refinenet(num_classes: int = 21, in_channels: int = 3) -> RefineNet:
    """Factory: compact 4-cascaded RefineNet, about 1.17 M parameters."""
    return RefineNet(num_classes=num_classes, in_channels=in_channels)
