"""SegNet (Badrinarayanan et al., 2017), compact.

Structure as in the paper: a VGG-style encoder whose every stage ends in a 2x2/stride-2 max-pool that
*returns its indices*, and a mirrored decoder that upsamples with ``max_unpool2d`` using those stored
indices (each value goes back to the exact position its maximum came from, everything else is zero),
followed by trainable convolutions that densify the sparse maps. A final 1x1 conv gives per-class scores.

Sizes: the decoder passes ``output_size`` (the pre-pool size recorded by the encoder) to every unpool,
so odd sizes come back exactly; the model accepts any H, W >= 16 (4 pools), and its declared
``spatial_multiple`` is 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segdeploy.zoo._layers import ConvBNReLU, init_weights


class SegNet(nn.Module):
    """Compact SegNet. ``forward(x: [N, in_channels, H, W]) -> logits [N, num_classes, H, W]``."""

    spatial_multiple = 1
    min_size = 16

    def __init__(
        self,
        num_classes: int = 21,
        in_channels: int = 3,
        widths: tuple[int, ...] = (16, 32, 64, 96),
        convs_per_stage: tuple[int, ...] = (2, 2, 3, 3),
        pool_kernel: int = 2,
    ):
        super().__init__()
        if len(widths) != len(convs_per_stage):
            raise ValueError("widths and convs_per_stage must have the same length")
        self.num_classes = num_classes
        # 2 (the paper): non-overlapping windows. 3 (padding 1): overlapping windows, whose max-pool indices can
        # repeat -- an unpool then writes two values to one position (exporting refuses it: see docs/plugins.md)
        self.pool_kernel, self.pool_padding = pool_kernel, (pool_kernel - 1) // 2
        enc = []
        prev = in_channels
        for w, n in zip(widths, convs_per_stage):
            layers = [ConvBNReLU(prev if i == 0 else w, w) for i in range(n)]
            enc.append(nn.Sequential(*layers))
            prev = w
        self.encoders = nn.ModuleList(enc)
        # Decoder i mirrors encoder i: convs at width widths[i], the last one reducing to the width of
        # the next (shallower) stage, as in the paper's decoder.
        dec = []
        for i in reversed(range(len(widths))):
            w = widths[i]
            out = widths[i - 1] if i > 0 else widths[0]
            n = convs_per_stage[i]
            layers = [ConvBNReLU(w, w) for _ in range(n - 1)] + [ConvBNReLU(w, out)]
            dec.append(nn.Sequential(*layers))
        self.decoders = nn.ModuleList(dec)
        self.classifier = nn.Conv2d(widths[0], num_classes, 3, padding=1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        indices = []
        sizes = []
        for enc in self.encoders:
            x = enc(x)
            sizes.append(x.shape[-2:])
            x, idx = F.max_pool2d(x, kernel_size=self.pool_kernel, stride=2, padding=self.pool_padding,
                                  return_indices=True)
            indices.append(idx)
        for dec, idx, size in zip(self.decoders, reversed(indices), reversed(sizes)):
            x = F.max_unpool2d(x, idx, kernel_size=self.pool_kernel, stride=2, padding=self.pool_padding,
                               output_size=size)
            x = dec(x)
        return self.classifier(x)


def segnet(num_classes: int = 21, in_channels: int = 3, pool_kernel: int = 2) -> SegNet:
    """Factory: compact SegNet (about 0.66 M parameters); ``pool_kernel=3``: the overlapping-window variant."""
    return SegNet(num_classes=num_classes, in_channels=in_channels, pool_kernel=pool_kernel)
