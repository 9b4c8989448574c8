"""Fixtures for the build stage tests: real exports of the shipped example (made once per session).

``fp32_export``: ``segdeploy.export.export_model(examples/shapes_unet.pt2, ExportOptions(shape="1x3x128x128"))``.
``int8_export``: the CLI ``segdeploy export ... --int8 --fp16 --calib calibration/shapes/calib --calib-size 8``
(model.int8.onnx, model.fp16.onnx, ranges.json, model.calib.cache; accuracy checked on calibration/shapes/val).
Tests that change a directory work on a copy (``copy_export``). tests/trt is put on ``sys.path`` for the strict
TensorRT stand-in (``standin.py``) and the plan-header helper (``trt_helpers.py``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRT_TESTS = ROOT / "tests" / "trt"
if str(TRT_TESTS) not in sys.path:
    sys.path.insert(0, str(TRT_TESTS))

EXAMPLE = ROOT / "examples" / "shapes_unet.pt2"
CALIB = ROOT / "calibration" / "shapes" / "calib"


@pytest.fixture(scope="session")
def fp32_export(tmp_path_factory) -> Path:
    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model

    out = tmp_path_factory.mktemp("build_fp32") / "shapes"
    export_model(EXAMPLE, out, ExportOptions(shape="1x3x128x128"))
    return out


@pytest.fixture(scope="session")
def int8_export(tmp_path_factory) -> Path:
    from segdeploy.cli import main

    out = tmp_path_factory.mktemp("build_int8") / "shapes"
    assert main(["export", str(EXAMPLE), "--out", str(out), "--shape", "1x3x128x128", "--int8", "--fp16",
                 "--calib", str(CALIB), "--calib-size", "8", "-q"]) == 0
    return out


@pytest.fixture()
def copy_export(tmp_path):
    """copy_export(src) -> a private copy of an export directory (in its own parent folder)."""

    def make(src: Path) -> Path:
        dst = tmp_path / "copy" / src.name
        shutil.copytree(src, dst)
        return dst

    return make
