"""HRNet-style segmentation network (Wang et al., "Deep High-Resolution Representation Learning", 2019), compact.

Structure as in HRNetV2:
- a stem of two stride-2 3x3 convs (1/4 resolution);
- four stages; stage ``s`` keeps ``s`` parallel branches at 1/4, 1/8, 1/16, 1/32 with widths
  ``C, 2C, 4C, 8C``; a transition adds the new lowest-resolution branch by a stride-2 3x3 conv;
- every high-resolution module runs residual blocks on each branch and then *fuses* all branches
  into every branch: higher-resolution -> lower by chains of stride-2 3x3 conv-BN (ReLU between),
  lower -> higher by 1x1 conv-BN + bilinear upsampling to the target size, identity for the same one,
  summed and ReLU'd. Fusion is repeated after every module (stages 2-4, several modules);
- HRNetV2 head: upsample every branch to 1/4, concatenate, 1x1 conv-BN-ReLU, 1x1 classifier,
  bilinear upsampling to the input size.

Sizes: every stride-2 step rounds up and every upsample targets the exact size of the branch it feeds,
so any H, W works; the declared ``spatial_multiple`` is 32 (the total stride, where all maps divide exactly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segdeploy.zoo._layers import BasicBlock, ConvBNReLU


class HighResolutionModule(nn.Module):
    """Parallel branches (``blocks`` basic blocks each) followed by one full multi-resolution fusion."""

    def __init__(self, widths: tuple[int, ...], blocks: int = 1):
        super().__init__()
        n = len(widths)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(w, w) for _ in range(blocks)]) for w in widths
        )
        fuse = []
        for i in range(n):  # target branch
            row = []
            for j in range(n):  # source branch
                if j == i:
                    row.append(nn.Identity())
                elif j > i:  # lower resolution -> higher: 1x1 conv + BN, upsampled in forward
                    row.append(
                        nn.Sequential(nn.Conv2d(widths[j], widths[i], 1, bias=False), nn.BatchNorm2d(widths[i]))
                    )
                else:  # higher resolution -> lower: (i - j) stride-2 3x3 convs
                    steps: list[nn.Module] = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        out = widths[i] if last else widths[j]
                        steps.append(ConvBNReLU(widths[j], out, 3, stride=2, relu=not last))
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        self.fuse = nn.ModuleList(fuse)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse):
            size = xs[i].shape[-2:]
            y = xs[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                z = layer(xs[j])
                if j > i:
                    z = F.interpolate(z, size=size, mode="bilinear", align_corners=False)
                y = y + z
            out.append(self.relu(y))
        return out


class HRNet(nn.Module):
    """Compact HRNetV2. ``forward(x: [N, in_channels, H, W]) -> logits [N, num_classes, H, W]``."""

    spatial_multiple = 32

    def __init__(
        self,
        num_classes: int = 21,
        in_channels: int = 3,
        width: int = 16,
        modules_per_stage: tuple[int, int, int] = (1, 2, 1),
        blocks: int = 1,
    ):
        super().__init__()
        self.num_classes = num_classes
        widths = tuple(width * 2**i for i in range(4))
        self.stem = nn.Sequential(
            ConvBNReLU(in_channels, 32, 3, stride=2),
            ConvBNReLU(32, 32, 3, stride=2),
        )
        # Stage 1: a single high-resolution branch.
        self.stage1 = nn.Sequential(BasicBlock(32, widths[0]), BasicBlock(widths[0], widths[0]))
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        for s, n_modules in enumerate(modules_per_stage, start=2):
            # transition: add branch s-1 from the current lowest-resolution branch
            self.transitions.append(ConvBNReLU(widths[s - 2], widths[s - 1], 3, stride=2))
            self.stages.append(
                nn.Sequential(*[HighResolutionModule(widths[:s], blocks) for _ in range(n_modules)])
            )
        total = sum(widths)
        self.head = nn.Sequential(ConvBNReLU(total, total, 1), nn.Conv2d(total, num_classes, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """HRNetV2 representation: all branches upsampled to 1/4 and concatenated."""
        xs = [self.stage1(self.stem(x))]
        for transition, stage in zip(self.transitions, self.stages):
            xs = xs + [transition(xs[-1])]
            xs = stage(xs)
        size = xs[0].shape[-2:]
        ups = [xs[0]] + [F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in xs[1:]]
        return torch.cat(ups, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def hrnet(num_classes: int = 21, in_channels: int = 3) -> HRNet:
    """Factory: compact HRNetV2 with 4 branches (widths 16/32/64/128), about 1.07 M parameters."""
    return HRNet(num_classes=num_classes, in_channels=in_channels)
