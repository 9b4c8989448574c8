"""The TensorRT layer on a real `segdeploy export` of the shipped example (ONNX + manifest), with the stand-in.

The export is real (examples/shapes_unet.pt2, verified ONNX); the TensorRT side is the strict stand-in, so the
build ends at its "no build" marker: what is checked is that segdeploy parses the exported graph's inputs,
applies the manifest's profile and emits the equivalent trtexec command.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from standin import NO_BUILD, make_trt_module

from segdeploy.trt.builder import EngineBuildError, build_engine
from segdeploy.trt.trtexec import trtexec_command

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from segdeploy.cli import main
    from segdeploy.exportdir import ExportDir

    out = tmp_path_factory.mktemp("trt_export") / "shapes"
    assert main(["export", str(ROOT / "examples" / "shapes_unet.pt2"), "--out", str(out), "--shape", "1x3x128x128",
                 "-q"]) == 0
    return ExportDir.open(out)


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "11.1"])
def test_exported_model_reaches_the_build_with_the_manifest_profile(export_dir, version):
    trt = make_trt_module(version)
    onnx_path = export_dir.onnx_variants()["fp32"]
    with pytest.raises(EngineBuildError, match=NO_BUILD):
        build_engine(onnx_path, export_dir.input_name, export_dir.profile, "fp32", trt_module=trt)
    st = trt._standin
    (args, _), = st.called("IOptimizationProfile.set_shape")
    prof = export_dir.profile
    assert args == (export_dir.input_name, prof.min, prof.opt, prof.max) == ("input", (1, 3, 64, 64),
                                                                              (1, 3, 128, 128), (8, 3, 256, 256))
    assert st.called("OnnxParser.parse_from_file") == [((str(onnx_path),), {})]


def test_trtexec_for_the_export(export_dir):
    c = trtexec_command(export_dir.file("model.onnx"), export_dir.input_name, export_dir.profile, "fp32",
                        target="10.3", save_engine=export_dir.path / "model.fp32.engine")
    assert c.argv[1:6] == (f"--onnx={export_dir.path / 'model.onnx'}",
                           f"--saveEngine={export_dir.path / 'model.fp32.engine'}",
                           "--minShapes=input:1x3x64x64", "--optShapes=input:1x3x128x128",
                           "--maxShapes=input:8x3x256x256")
