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


def write_images(directory, n: int, size: int, seed: int = 0, masks_from=None, classes: int = 4) -> list:
    """Write ``n`` smooth random RGB PNGs (size x size). With ``masks_from`` (an nn.Module), also write
    ``directory/../masks`` holding that model's argmax predictions (so its own mIoU is 100)."""
    from pathlib import Path

    from PIL import Image

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        base = rng.uniform(0, 255, (size // 4, size // 4, 3))
        img = np.kron(base, np.ones((4, 4, 1))) + rng.normal(0, 12, (size, size, 3))
        img = np.clip(img, 0, 255).astype(np.uint8)
        p = d / f"img{i:03d}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
        if masks_from is not None:
            from segdeploy.spec import Preprocess

            pre = Preprocess()
            x = (img.astype(np.float32) * pre.scale - np.array(pre.mean, np.float32)) / np.array(pre.std, np.float32)
            with torch.no_grad():
                y = masks_from(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
            mdir = d.parent / "masks"
            mdir.mkdir(exist_ok=True)
            Image.fromarray(y.argmax(1)[0].numpy().astype(np.uint8)).save(mdir / f"img{i:03d}.png")
    return paths
