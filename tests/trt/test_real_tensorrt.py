"""Real TensorRT + GPU: build the shipped example's engines and compare them with ONNX Runtime.

Skipped (with the reason) where TensorRT or a CUDA GPU is absent -- i.e. on every CPU-only CI machine. On a GPU
host with TensorRT 8.6 / 10.x / 11.x: export ``examples/shapes_unet.pt2`` (FP32 + FP16 + INT8 Q/DQ, calibrated
on the shipped shapes set), build each precision the installed TensorRT can build with
:func:`segdeploy.trt.builder.build_engine`, run the plan with :class:`TensorRTRunner` on synthetic shapes images
and compare the class maps with ONNX Runtime running the same ONNX (argmax agreement).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shapes_unet.pt2"
CALIB = ROOT / "calibration" / "shapes" / "calib"
# minimum pixel agreement of the TensorRT class map with ONNX Runtime's on the same ONNX
AGREEMENT = {"fp32": 0.999, "fp16": 0.99, "int8": 0.97, "int8-implicit": 0.95}

pytestmark = [pytest.mark.trt, pytest.mark.gpu, pytest.mark.slow]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from segdeploy.cli import main

    out = tmp_path_factory.mktemp("real_trt") / "shapes"
    rc = main(["export", str(EXAMPLE), "--out", str(out), "--shape", "1x3x128x128", "--int8", "--fp16",
               "--calib", str(CALIB), "-q"])
    assert rc == 0
    from segdeploy.exportdir import ExportDir

    return ExportDir.open(out)


@pytest.fixture(scope="module")
def batch(export_dir):
    from segdeploy.datasets.preprocess import to_batch
    from segdeploy.datasets.shapes import make_sample

    images = [make_sample(i, (128, 160), "val", 0)[0] for i in range(4)]
    x, _ = to_batch(images, export_dir.preprocess, export_dir.profile)
    return x


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "int8-implicit"])
def test_build_and_run_matches_onnxruntime(export_dir, batch, tmp_path, precision):
    import tensorrt as trt

    from segdeploy.runners.onnxruntime import OrtOptions, OrtRunner
    from segdeploy.runners.tensorrt import TensorRTRunner
    from segdeploy.trt.builder import build_engine
    from segdeploy.trt.capabilities import probe
    from segdeploy.trt.recipe import EngineBuildOptions

    caps = probe(trt)
    variants = export_dir.onnx_variants()
    if precision == "int8-implicit":
        if not caps.implicit_int8:
            pytest.skip(f"TensorRT {trt.__version__} has no implicit INT8 (removed in 11)")
        onnx_path, cache = variants["fp32"], export_dir.file("model.calib.cache")
    else:
        onnx_path, cache = variants[precision], None
    res = build_engine(onnx_path, export_dir.input_name, export_dir.profile, precision, calib_cache=cache,
                       timing_cache_dir=tmp_path / "tc",
                       # the export wrote the cache for TensorRT 10.3; accept it for the installed version
                       options=EngineBuildOptions(rewrite_calib_header=True))
    assert res.plan[:4] == b"ftrt" and res.tensorrt_version == trt.__version__
    assert list(res.plan_header[:3]) == [int(p) for p in trt.__version__.split(".")[:3]]
    engine = tmp_path / f"model.{precision}.engine"
    engine.write_bytes(res.plan)
    with TensorRTRunner(engine) as r:
        got = r.infer(batch)
        assert r.last_split is not None and r.last_split["compute_ms"] > 0
    ref_level = "disable" if precision in ("int8",) else "all"  # Q/DQ emulated in float: the faithful reference
    with OrtRunner(onnx_path, OrtOptions(graph_optimization_level=ref_level)) as o:
        ref = o.infer(batch)
    assert got.shape == ref.shape and got.dtype == np.float32
    agreement = float((got.argmax(1) == ref.argmax(1)).mean())
    assert agreement >= AGREEMENT[precision], f"{precision}: argmax agreement {agreement:.4f}"


def test_outside_the_profile_is_a_shape_error(export_dir, tmp_path):
    from segdeploy.errors import ShapeError
    from segdeploy.runners.tensorrt import TensorRTRunner
    from segdeploy.trt.builder import build_engine

    res = build_engine(export_dir.onnx_variants()["fp32"], export_dir.input_name, export_dir.profile, "fp32")
    engine = tmp_path / "model.fp32.engine"
    engine.write_bytes(res.plan)
    big = export_dir.profile.max
    with TensorRTRunner(engine) as r:
        with pytest.raises(ShapeError, match="outside the engine's optimization profile"):
            r.infer(np.zeros((big[0] + 1, *big[1:]), np.float32))
