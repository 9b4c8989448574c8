"""Fixtures for the precision tests (CPU, a few seconds in all)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from precision_helpers import TinySeg, export_onnx, max_ranges


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(module, fp32 onnx path, ranges, evaluation inputs) for TinySeg at 32x32."""
    torch.manual_seed(0)
    m = TinySeg().eval()
    d = tmp_path_factory.mktemp("tiny")
    path = export_onnx(m, d / "tiny.onnx")
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((4, 3, 32, 32)).astype(np.float32) for _ in range(4)]
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)  # disjoint from calibration
    return m, path, max_ranges(path, calib), x
