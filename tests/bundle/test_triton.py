"""Triton (segdeploy.bundle.triton): the model repository's config.pbtxt parsed with Triton's own protobuf definitions
(tritonclient's model_config_pb2) and checked against the manifest and the served graph; the served ONNX runs with
the declared tensors; the TensorRT model's build script. No Triton server here."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format

from segdeploy.bundle import triton
from segdeploy.errors import UsageError
from segdeploy.exportdir import ExportDir

ROOT = Path(__file__).resolve().parents[2]


def _model_config_pb2():
    """tritonclient's generated ModelConfig module: through the package when its grpc extra is installed, else
    from the file the package ships (tritonclient.grpc's __init__ refuses to import without grpcio)."""
    try:
        from tritonclient.grpc import model_config_pb2

        return model_config_pb2
    except (ImportError, RuntimeError):
        pass
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tritonclient is not installed (it is in the test extra: pip install -e '.[test]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    mod_spec = importlib.util.spec_from_file_location("segdeploy_test_model_config_pb2", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The shipped example exported with --int8 and end-to-end variants, the class names given."""
    from segdeploy.cli import main

    d = tmp_path_factory.mktemp("triton") / "shapes"
    rc = main(["export", str(ROOT / "examples" / "shapes_unet.pt2"), "--out", str(d), "--shape", "1x3x128x128",
               "--class-names", "background,circle,square,triangle,ring,star",
               "--int8", "--calib", str(ROOT / "calibration" / "shapes" / "calib"), "--calib-size", "8", "--end-to-end",
               "-q"])
    assert rc == 0
    return ExportDir.open(d)


def _parse(path: Path):
    pb2 = _model_config_pb2()
    return text_format.Parse(path.read_text(), pb2.ModelConfig()), pb2


@pytest.mark.slow
def test_repository_configs_parse_and_match_the_manifest(example, tmp_path):
    ed = example
    r = triton.write_repository(ed, tmp_path, name="shapes", trt_precision="int8")
    cfg, pb2 = _parse(tmp_path / "shapes" / "config.pbtxt")
    e2e = ed.end_to_end
    assert cfg.name == "shapes" and cfg.backend == "onnxruntime" and cfg.max_batch_size == ed.profile.max[0] == 8
    assert cfg.HasField("dynamic_batching")
    (inp,), (out,) = cfg.input, cfg.output
    assert inp.name == e2e["input"]["name"] == "image" and pb2.DataType.Name(inp.data_type) == "TYPE_UINT8"
    assert list(inp.dims) == [-1, -1, 3]
    assert out.name == e2e["outputs"][0]["name"] == "classes" and pb2.DataType.Name(out.data_type) == "TYPE_UINT8"
    assert list(out.dims) == [-1, -1] and out.label_filename == "labels.txt"
    assert (tmp_path / "shapes" / "labels.txt").read_text().splitlines() == list(ed.class_names)
    served = tmp_path / "shapes" / "1" / "model.onnx"
    assert served.read_bytes() == ed.file("model.e2e.onnx").read_bytes()
    # the served graph takes what the config declares: a batch of 3 frames of any size
    sess = ort.InferenceSession(str(served), providers=["CPUExecutionProvider"])
    frames = np.random.default_rng(0).integers(0, 256, (3, 100, 140, 3), dtype=np.uint8)
    (classes,) = sess.run(None, {inp.name: frames})
    assert classes.dtype == np.uint8 and classes.shape == (3, 100, 140)
    # the TensorRT model: same tensors, a plan built on the server from the INT8 end-to-end graph
    trt_cfg, _ = _parse(tmp_path / "shapes_tensorrt" / "config.pbtxt")
    assert trt_cfg.platform == "tensorrt_plan" and trt_cfg.default_model_filename == "model.plan"
    assert trt_cfg.max_batch_size == 8 and list(trt_cfg.input) == list(cfg.input) and list(trt_cfg.output) == list(cfg.output)
    assert (tmp_path / "shapes_tensorrt" / "onnx" / "model.int8.e2e.onnx").read_bytes() == \
        ed.file("model.int8.e2e.onnx").read_bytes()
    script = (tmp_path / triton.BUILD_SCRIPT).read_text()
    assert "--minShapes=image:1x1x1x3 --optShapes=image:1x128x128x3 --maxShapes=image:8x256x256x3" in script
    assert "--saveEngine=shapes_tensorrt/1/model.plan" in script and r["trtexec"] in script
    assert subprocess.run(["bash", "-n", str(tmp_path / triton.BUILD_SCRIPT)], check=False).returncode == 0
    if shutil.which("shellcheck"):
        res = subprocess.run(["shellcheck", str(tmp_path / triton.BUILD_SCRIPT)], capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stdout


@pytest.mark.slow
def test_plain_model_repository(example, tmp_path):
    triton.write_repository(example, tmp_path, name="plain", end_to_end=False)
    cfg, pb2 = _parse(tmp_path / "plain" / "config.pbtxt")
    (inp,), (out,) = cfg.input, cfg.output
    assert inp.name == example.input_name and pb2.DataType.Name(inp.data_type) == "TYPE_FP32"
    assert list(inp.dims) == [3, -1, -1] and list(out.dims) == [6, -1, -1] and out.name == example.output_name
    assert (tmp_path / "plain" / "1" / "model.onnx").read_bytes() == example.file("model.onnx").read_bytes()
    with pytest.raises(UsageError, match="no end-to-end fp16"):
        triton.write_repository(example, tmp_path / "x", name="m", precision="fp16", end_to_end=True)
    with pytest.raises(UsageError, match="not int8-implicit"):
        triton.write_repository(example, tmp_path / "y", name="m", precision="int8-implicit")


def test_render_config_static_batch_parses():
    specs = [triton.TensorSpec("input", "TYPE_FP32", (1, 3, 64, 64))]
    text = triton.render_config("m", 0, specs, [triton.TensorSpec("logits", "TYPE_FP32", (1, 2, 64, 64))],
                                backend="onnxruntime", labels=None)
    pb2 = _model_config_pb2()
    cfg = text_format.Parse(text, pb2.ModelConfig())
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching") and list(cfg.input[0].dims) == [1, 3, 64, 64]
