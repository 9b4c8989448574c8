"""Helpers shared by the precision tests: a tiny segmentation net with every op kind, ONNX export, ranges."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TinySeg(nn.Module):
    """Encoder-decoder with every op kind the placer must handle: convs (16+ channels), a residual Add,
    MaxPool, Resize, Concat and a small-channel head."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)  # 3 input channels: left in float (ModelOpt rule)
        self.c1 = nn.Conv2d(16, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.c3 = nn.Conv2d(32, 32, 3, padding=1)
        self.c4 = nn.Conv2d(48, 16, 3, padding=1)
        self.head = nn.Conv2d(16, classes, 1)  # 4 output channels: left in float

    def forward(self, x):
        s = torch.relu(self.stem(x))
        a = torch.relu(self.c1(s) + s)  # residual Add: conv output + skip branch
        p = nn.functional.max_pool2d(a, 2)
        b = torch.relu(self.c2(p))
        b = torch.relu(self.c3(b))
        u = nn.functional.interpolate(b, scale_factor=2.0, mode="bilinear", align_corners=False)
        c = torch.cat([u, a], dim=1)
        return self.head(torch.relu(self.c4(c)))


def export_onnx(module: nn.Module, path, size: int = 32, opset: int = 17) -> str:
    module.eval()
    torch.onnx.export(
        module, torch.randn(1, 3, size, size), str(path), input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}},
        dynamo=False, opset_version=opset,
    )
    return str(path)


def max_ranges(path, batches) -> dict[str, float]:
    """amax per tensor with segdeploy's own streaming collector (method max)."""
    from segdeploy.calibration import CollectOptions, Method, collect_statistics, compute_ranges

    stats = collect_statistics(path, batches, CollectOptions(num_bins=256))
    return compute_ranges(stats, Method("max"))


def ort_run(path_or_model, x, level: str = "all") -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    src = path_or_model if isinstance(path_or_model, str) else path_or_model.SerializeToString()
    s = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})[0]
