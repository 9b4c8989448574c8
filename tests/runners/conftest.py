from __future__ import annotations

import pytest
import torch
from torch import nn


class TinySeg(nn.Module):
    """3 -> K channels, keeps H/W (any size): conv, relu, conv."""

    def __init__(self, k: int = 4):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, k, 1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return TinySeg().eval()


@pytest.fixture(scope="module")
def tiny_onnx(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    x = torch.randn(1, 3, 32, 32)
    dyn = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    torch.onnx.export(
        tiny_model, x, str(path), input_names=["input"], output_names=["logits"], dynamic_axes=dyn, dynamo=False
    )
    return path
