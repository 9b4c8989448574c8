"""Small building blocks shared by the zoo models (conv-BN-ReLU, ResNet basic block, a compact backbone).

Everything here uses only ops that both ONNX exporters handle: Conv2d, BatchNorm2d, ReLU, MaxPool2d and
elementwise adds. No Python control flow depends on tensor values.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBNReLU(nn.Sequential):
    """``Conv2d(k, stride, padding=dilation*(k//2), dilation, bias=False) -> BatchNorm2d -> ReLU`` (ReLU optional)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        relu: bool = True,
    ):
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_ch,
                out_ch,
                kernel_size,
                stride=stride,
                padding=dilation * (kernel_size // 2),
                dilation=dilation,
                bias=False,
            ),
            nn.BatchNorm2d(out_ch),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, identity (or 1x1 projection) shortcut, ReLU after the add."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = ConvBNReLU(in_ch, out_ch, 3, stride=stride, dilation=dilation)
        self.conv2 = ConvBNReLU(out_ch, out_ch, 3, dilation=dilation, relu=False)
        self.shortcut: nn.Module
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )
        else:
            self.shortcut = nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class CompactResNet(nn.Module):
    """A ResNet-18-shaped backbone with narrow widths and one basic block per stage.

    ``forward(x)`` returns the four stage outputs ``[c1, c2, c3, c4]`` at strides
    ``4, 8, 16, 32`` (or less where ``dilations`` replaces a stride by dilation, as in dilated
    ResNets for output stride 8). Spatial sizes round up at every stride-2 step.
    """

    def __init__(
        self,
        in_channels: int = 3,
        widths: tuple[int, int, int, int] = (16, 32, 64, 128),
        dilations: tuple[int, int, int, int] = (1, 1, 1, 1),
    ):
        super().__init__()
        self.stem = nn.Sequential(
            ConvBNReLU(in_channels, widths[0], 3, stride=2),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages = []
        prev = widths[0]
        for i, (w, d) in enumerate(zip(widths, dilations)):
            stride = 1 if i == 0 or d > 1 else 2
            stages.append(BasicBlock(prev, w, stride=stride, dilation=d))
            prev = w
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convs (fan_in, ReLU: variance-preserving forward), unit BN, zero biases.

    Used by the plain-chain and shallow models. HRNet and RefineNet keep PyTorch's default init: their
    sums of residual and multi-branch paths grow with depth when BN still has its initial running
    statistics (eval mode), and a random-init model should give logits of moderate size so that
    export verification compares meaningful numbers.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
