from __future__ import annotations

import pytest
import torch
from parity_helpers import TinySeg, export_onnx, make_dataset


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return TinySeg().eval()


@pytest.fixture(scope="module")
def tiny_onnx(tiny_model, tmp_path_factory):
    return export_onnx(tiny_model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"), n=7)
