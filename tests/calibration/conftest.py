"""Fixtures for calibration tests."""

from __future__ import annotations

import pytest
from calib_helpers import make_model, write_images


@pytest.fixture
def tiny_model(tmp_path):
    return make_model(tmp_path / "tiny.onnx")


@pytest.fixture
def images(tmp_path):
    return write_images(tmp_path / "calib", 12)


@pytest.fixture
def spec():
    from segdeploy.spec import Preprocess, ShapeProfile

    return Preprocess(), ShapeProfile((1, 3, 16, 16), (1, 3, 32, 32), (8, 3, 64, 64))
