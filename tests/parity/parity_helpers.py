"""Helpers shared by the parity tests (a uniquely named module: several test folders have a conftest)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

K = 4


class TinySeg(nn.Module):
    """3 -> K channels, any H/W: conv, relu, conv (random init, fixed seed)."""

    def __init__(self, k: int = K):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, k, 1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def export_onnx(model: nn.Module, path) -> str:
    dyn = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    torch.onnx.export(
        model, torch.zeros(1, 3, 32, 32), str(path), input_names=["input"], output_names=["logits"],
        dynamic_axes=dyn, dynamo=False,
    )
    return str(path)


def make_dataset(root, n=6, sizes=((32, 40), (24, 24), (32, 40)), k=K, seed=0, masks=True):
    """n random images (+ masks with some ignore pixels) of a few sizes under root/images, root/masks."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    if masks:
        (root / "masks").mkdir(exist_ok=True)
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"im{i:02d}.png")
        if masks:
            m = rng.integers(0, k, (h, w)).astype(np.uint8)
            m[:2] = 255
            Image.fromarray(m).save(root / "masks" / f"im{i:02d}.png")
    return root / "images", (root / "masks" if masks else None)
