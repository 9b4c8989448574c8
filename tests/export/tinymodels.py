"""Tiny models for loader/export tests (importable as factories: ``tinymodels:tiny_seg``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


class TinySeg(nn.Module):
    """conv-bn-relu, 2x2 max-pool, conv, bilinear upsample: spatial multiple 2."""

    def __init__(self, in_channels: int = 3, num_classes: int = 3):
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, num_classes, 3, padding=1)

    def forward(self, x):
        y = F.max_pool2d(F.relu(self.bn(self.c1(x))), 2)
        return F.interpolate(self.c2(y), scale_factor=2.0, mode="bilinear", align_corners=False)


def tiny_seg(num_classes: int = 3, in_channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return TinySeg(in_channels, num_classes).eval()


class DictOut(TinySeg):
    def forward(self, x):
        y = super().forward(x)
        return {"aux": y * 0.5, "out": y}


class TupleOut(TinySeg):
    def forward(self, x):
        y = super().forward(x)
        return y.mean((2, 3)), y  # classifier-like head first, score map second


@dataclass
class HFOutput:
    loss: object
    logits: torch.Tensor


class LogitsOut(TinySeg):
    def forward(self, x):
        return HFOutput(None, super().forward(x))


class Classifier(TinySeg):
    def forward(self, x):
        return super().forward(x).mean((2, 3))


class ShapeBranch(TinySeg):
    """Python control flow on the input size: a tracer bakes in one branch (verification must catch it)."""

    def forward(self, x):
        y = super().forward(x)
        if x.shape[2] > 48:
            return y
        return -y


def not_a_module():
    return 42
