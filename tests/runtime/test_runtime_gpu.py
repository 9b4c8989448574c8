"""The C++ runtime on a GPU (skipped with a reason where there is none).

* ``gpu``: the CUDA kernels through segdeploy::gpu::Pipeline -- the exact upload/preprocess and argmax/restore
  code the Segmenter runs around the engine -- give byte-identical input tensors and class maps to the host
  reference (itself checked against Python in test_runtime_preprocess/postprocess.py), float32 and float16 logits.
* ``trt`` + ``gpu``: end to end. Builds an FP32 engine from a real export with TensorRT's Python API, builds
  segdeploy_infer with CMake against ``SEGDEPLOY_TRT_ROOT`` (a TensorRT prefix with include/NvInfer.h and
  lib/libnvinfer.so), runs it on shipped images and compares the class maps with ONNX Runtime on the same
  export + Python preprocessing; and an engine of the end-to-end variant (export --end-to-end), whose class map
  must equal ONNX Runtime's run of that variant.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import rt_util
from test_runtime_postprocess import _hard_logits
from test_runtime_preprocess import CROP_SIZES

pytestmark = pytest.mark.gpu
CPP = rt_util.CPP


@pytest.fixture(scope="module")
def gpu_harness(tmp_path_factory) -> rt_util.Harness:
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the CUDA kernels cannot be built")
    reason = rt_util.missing_dependency()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("gpu-harness")
    exe = out / "gpu_harness"
    cmd = ["nvcc", "-std=c++17", "-O2", "-arch=native", "-Xcompiler=-ffp-contract=off", *rt_util.core_flags(),
           f"-I{CPP / 'include'}", f"-I{CPP / 'src'}", *map(str, rt_util.core_sources()), str(CPP / "src" / "gpu_pipeline.cpp"),
           str(CPP / "src" / "kernels.cu"), str(rt_util.HERE / "gpu_harness.cpp"), "-o", str(exe), *rt_util.core_libs()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return rt_util.Harness(exe)


@pytest.fixture(scope="module")
def crop_paths(tmp_path_factory) -> dict:
    from PIL import Image

    from segdeploy.datasets import read_image

    tiles = [read_image(p) for p in rt_util.VAL_IMAGES[:6]]
    mosaic = np.concatenate([np.concatenate(tiles[:3], 1), np.concatenate(tiles[3:6], 1)], 0)
    out = tmp_path_factory.mktemp("gpu-crops")
    paths = {}
    for h, w in CROP_SIZES:
        p = out / f"crop_{h}x{w}.png"
        Image.fromarray(np.ascontiguousarray(mosaic[:h, :w])).save(p)
        paths[(h, w)] = str(p)
    return paths


@pytest.mark.parametrize("mode", ["pad", "resize"])
@pytest.mark.parametrize("fmt", ["rgb", "bgr"])
def test_gpu_preprocessing_equals_host(gpu_harness, harness, make_manifest, crop_paths, tmp_path, mode, fmt):
    manifest = make_manifest(name=f"{mode}.json", resize=mode, channel_order="BGR" if fmt == "rgb" else "RGB")
    batches = [[str(p) for p in rt_util.VAL_IMAGES[:8]]]
    if mode == "pad":
        batches.append([crop_paths[s] for s in [(100, 77), (33, 45), (64, 200), (5, 3), (200, 64)]])
    else:
        batches += [[crop_paths[s]] for s in CROP_SIZES]  # up, down, one axis, both pass orders
        batches.append([crop_paths[s] for s in [(250, 301), (5, 3), (200, 64)]])
    for paths in batches:
        harness.run("preprocess", manifest, tmp_path / "host.bin", fmt, *paths)
        gpu_harness.run("preprocess", manifest, tmp_path / "gpu.bin", fmt, *paths)
        assert (tmp_path / "gpu.bin").read_bytes() == (tmp_path / "host.bin").read_bytes(), paths


@pytest.mark.parametrize("mode,sizes", [("pad", [(100, 77), (33, 45), (128, 128), (5, 3)]),
                                        ("resize", [(250, 301), (33, 45), (128, 128), (1, 1)])])
@pytest.mark.parametrize("classes", [6, 300])
@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_gpu_class_maps_equal_host(gpu_harness, harness, make_manifest, tmp_path, mode, sizes, classes, dtype):
    from segdeploy.datasets.preprocess import to_batch
    from segdeploy.manifest import onnx_profile_of, preprocess_of

    manifest = make_manifest(name=f"{mode}.json", resize=mode)
    doc = json.loads(manifest.read_text())
    batch, _ = to_batch([np.zeros((h, w, 3), np.uint8) for h, w in sizes], preprocess_of(doc), onnx_profile_of(doc))
    n, _, H, W = batch.shape
    logits = _hard_logits(np.random.default_rng(classes), n, classes, H, W)
    if dtype == "f16":
        with np.errstate(over="ignore"):
            logits16 = logits.astype(np.float16)
        logits = logits16.astype(np.float32)  # the host reference sees the same (exactly widened) values
        (tmp_path / "gpu_logits.bin").write_bytes(np.asarray(logits16.shape, np.int32).tobytes() + logits16.tobytes())
    else:
        rt_util.write_logits(tmp_path / "gpu_logits.bin", logits)
    rt_util.write_logits(tmp_path / "logits.bin", logits)
    sizes_arg = [f"{h}x{w}" for h, w in sizes]
    harness.run("classmap", manifest, tmp_path / "logits.bin", tmp_path / "host.bin", *sizes_arg)
    gpu_harness.run("classmap", manifest, tmp_path / "gpu_logits.bin", tmp_path / "gpu.bin", dtype, *sizes_arg)
    assert (tmp_path / "gpu.bin").read_bytes() == (tmp_path / "host.bin").read_bytes()


# ------------------------------------------------------------------------------------------------ end to end
def _trt_root(trt_reason: str = "TensorRT (python package tensorrt) is not installed"):
    trt = pytest.importorskip("tensorrt", reason=trt_reason)
    root = os.environ.get("SEGDEPLOY_TRT_ROOT", "")
    if not root or not (Path(root) / "include" / "NvInfer.h").is_file():
        pytest.skip("SEGDEPLOY_TRT_ROOT does not name a TensorRT prefix with include/NvInfer.h and lib/libnvinfer.so")
    return trt, root


def _build_engine(trt, onnx_path: Path, input_name: str, shapes, engine: Path) -> Path:
    """An FP32 engine (TF32 off) of ``onnx_path`` with one profile ``shapes`` = (min, opt, max) for ``input_name``."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if int(trt.__version__.split(".")[0]) < 10 else 0
    network = builder.create_network(explicit)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    p = builder.create_optimization_profile()
    p.set_shape(input_name, *shapes)
    config.add_optimization_profile(p)
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None
    engine.write_bytes(bytes(plan))
    return engine


def _build_runner(root: str, build: Path) -> Path:
    configure = ["cmake", "-S", str(CPP), "-B", str(build), f"-DTensorRT_ROOT={root}",
                 f"-DSEGDEPLOY_JSON_INCLUDE_DIR={rt_util.json_include()}", "-DSEGDEPLOY_REQUIRE_PNG=ON"]
    for cmd in (configure, ["cmake", "--build", str(build), "-j4"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return build / "segdeploy_infer"


def _crop(tmp_path: Path) -> Path:
    from PIL import Image

    from segdeploy.datasets import read_image

    crop = tmp_path / "crop.png"
    Image.fromarray(read_image(rt_util.VAL_IMAGES[3])[:100, :77]).save(crop)  # not multiples of 16
    return crop


@pytest.mark.trt
@pytest.mark.slow
def test_segdeploy_infer_end_to_end(export_dir, tmp_path):
    trt, root = _trt_root()
    import onnxruntime as ort
    from PIL import Image

    from segdeploy.datasets import read_image
    from segdeploy.datasets.preprocess import restore_prediction, to_batch
    from segdeploy.manifest import onnx_profile_of, preprocess_of

    doc = json.loads((export_dir / "manifest.json").read_text())
    prof = onnx_profile_of(doc)
    engine = _build_engine(trt, export_dir / "model.onnx", "input", (prof.min, prof.opt, prof.max),
                           tmp_path / "model.fp32.engine")
    exe = _build_runner(root, tmp_path / "build")
    sess = ort.InferenceSession(str(export_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    for image in [rt_util.VAL_IMAGES[0], rt_util.VAL_IMAGES[1], _crop(tmp_path)]:
        out = tmp_path / "map.png"
        proc = subprocess.run([str(exe), str(engine), str(export_dir), str(image), str(out), "--iterations", "3"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "latency" in proc.stdout and "p90" in proc.stdout
        got = np.asarray(Image.open(out)).astype(np.int64)
        x, infos = to_batch([read_image(image)], preprocess_of(doc), prof)
        want = restore_prediction(sess.run(None, {"input": x})[0].argmax(1)[0], infos[0])
        assert got.shape == want.shape
        assert (got == want).mean() >= 0.999, (image, (got != want).sum())


@pytest.mark.trt
@pytest.mark.slow
@pytest.mark.parametrize("frame_order", ["RGB", "BGR"])
def test_segdeploy_infer_runs_an_end_to_end_engine(export_dir, tmp_path, frame_order):
    """An engine built from model.e2e.onnx (export --end-to-end): segdeploy_infer detects it from its I/O tensors,
    copies the frame's bytes in (BGR frame order: the decoded RGB image is swapped on the host) and reads the uint8
    class map back; it equals ONNX Runtime's class map of the same variant."""
    trt, root = _trt_root()
    import onnxruntime as ort
    from PIL import Image

    from segdeploy.datasets import read_image
    from segdeploy.export import e2e_stage
    from segdeploy.pipeline import run_stage
    from segdeploy.progress import Progress
    from segdeploy.vocab import E2E_INPUT_NAME

    d = tmp_path / "shapes"
    shutil.copytree(export_dir, d)
    run_stage(d, e2e_stage.run, e2e_stage.E2EOptions(input_order=frame_order), Progress(False),
              command="test")
    doc = json.loads((d / "manifest.json").read_text())
    e2e_prof = doc["end_to_end"]["profile"]
    engine = _build_engine(trt, d / "model.e2e.onnx", E2E_INPUT_NAME,
                           (e2e_prof["min"], e2e_prof["opt"], e2e_prof["max"]), tmp_path / "model.e2e.engine")
    exe = _build_runner(root, tmp_path / "build")
    sess = ort.InferenceSession(str(d / "model.e2e.onnx"), providers=["CPUExecutionProvider"])
    for image in [rt_util.VAL_IMAGES[0], _crop(tmp_path)]:
        out = tmp_path / "map.png"
        proc = subprocess.run([str(exe), str(engine), str(d), str(image), str(out), "--iterations", "3"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "end-to-end" in proc.stdout and f"uint8 NHWC {frame_order} frames" in proc.stdout
        frame = read_image(image)
        frame = frame[..., ::-1] if frame_order == "BGR" else frame
        want = sess.run(None, {E2E_INPUT_NAME: np.ascontiguousarray(frame)[None]})[0][0].astype(np.int64)
        got = np.asarray(Image.open(out)).astype(np.int64)
        assert got.shape == want.shape
        assert (got == want).mean() >= 0.999, (image, (got != want).sum())
