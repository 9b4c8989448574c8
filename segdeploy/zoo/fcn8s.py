"""FCN-8s (Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic Segmentation", 2015), compact.

Structure as in the paper's FCN-8s:
- a VGG-16-shaped backbone (5 blocks of 2, 2, 3, 3, 3 conv3x3-ReLU, each followed by a 2x2/stride-2
  max-pool), narrowed; ``fc6`` as a 7x7 convolution and ``fc7`` as a 1x1 convolution (with dropout);
- class **score layers** (1x1 convs) on ``fc7`` (stride 32), ``pool4`` (stride 16) and ``pool3`` (stride 8);
- **skip fusion**: the stride-32 scores are upsampled 2x by a *learned* transposed convolution
  (kernel 4, stride 2, bilinear-initialised), cropped to the ``pool4`` scores and summed; the sum is
  upsampled 2x again the same way, cropped to the ``pool3`` scores and summed;
- a final learned 8x transposed convolution (kernel 16, stride 8, bilinear-initialised), cropped to
  the input size.

Alignment and sizes: instead of the original's 100-pixel input padding and offset crops (5, 9, 31),
every conv is "same"-padded, the pools use ``ceil_mode=True`` and each transposed conv is padded
(``padding = stride / 2``) so it produces exactly ``stride x`` its input. For H, W that are multiples of 32
(the declared ``spatial_multiple``) every map divides exactly and every crop is a no-op: the model is exact.
Other sizes still run (the ceil-mode pools round up and the crops take the top-left ``H x W`` window,
which is where the upsampled maps align with the input), but the fusion there is an approximation.
"""

from __future__ import annotations

import torch
from torch import nn

from segdeploy.zoo._layers import init_weights


def _bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """The classic FCN bilinear upsampling filter, one per channel (diagonal), shape [C, C, k, k]."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    for c in range(channels):
        weight[c, c] = filt
    return weight


def _vgg_block(in_ch: int, out_ch: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]
    layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
    return nn.Sequential(*layers)


class FCN8s(nn.Module):
    """Compact FCN-8s. ``forward(x: [N, in_channels, H, W]) -> logits [N, num_classes, H, W]``."""

    spatial_multiple = 32

    def __init__(
        self,
        num_classes: int = 21,
        in_channels: int = 3,
        widths: tuple[int, int, int, int, int] = (16, 32, 64, 96, 96),
        fc_width: int = 128,
    ):
        super().__init__()
        self.num_classes = num_classes
        convs = (2, 2, 3, 3, 3)
        blocks = []
        prev = in_channels
        for w, n in zip(widths, convs):
            blocks.append(_vgg_block(prev, w, n))
            prev = w
        self.block1, self.block2, self.block3, self.block4, self.block5 = blocks
        self.fc = nn.Sequential(
            nn.Conv2d(widths[4], fc_width, 7, padding=3),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.5),
            nn.Conv2d(fc_width, fc_width, 1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.5),
        )
        self.score_fr = nn.Conv2d(fc_width, num_classes, 1)
        self.score_pool4 = nn.Conv2d(widths[3], num_classes, 1)
        self.score_pool3 = nn.Conv2d(widths[2], num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, bias=False)
        self.upscore8 = nn.ConvTranspose2d(num_classes, num_classes, 16, stride=8, padding=4, bias=False)
        init_weights(self)
        # FCN initialises the score layers at zero and the upsampling layers as bilinear interpolation.
        # Zero score layers would make a fresh model output all zeros, so they keep a small random init.
        for m in (self.score_fr, self.score_pool4, self.score_pool3):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        with torch.no_grad():
            for up in (self.upscore2, self.upscore_pool4, self.upscore8):
                up.weight.copy_(_bilinear_kernel(num_classes, up.kernel_size[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pool3 = self.block3(self.block2(self.block1(x)))
        pool4 = self.block4(pool3)
        fc7 = self.fc(self.block5(pool4))
        s4 = self.score_pool4(pool4)
        up2 = self.upscore2(self.score_fr(fc7))[:, :, : s4.shape[2], : s4.shape[3]]
        s3 = self.score_pool3(pool3)
        up4 = self.upscore_pool4(up2 + s4)[:, :, : s3.shape[2], : s3.shape[3]]
        return self.upscore8(up4 + s3)[:, :, :h, :w]


def fcn8s(num_classes: int = 21, in_channels: int = 3) -> FCN8s:
    """Factory: compact FCN-8s (VGG-16-shaped, narrow), about 1.21 M parameters."""
    return FCN8s(num_classes=num_classes, in_channels=in_channels)
