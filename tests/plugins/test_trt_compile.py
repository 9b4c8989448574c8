"""TensorRT plugin glue: compile-check against user-supplied TensorRT headers, host harness, real TensorRT run.

* ``SEGDEPLOY_TRT_INCLUDE`` = a directory holding ``NvInfer.h`` (a TensorRT install's include/, or NVIDIA's
  Apache-2.0 headers from a release tag of github.com/NVIDIA/TensorRT). Without it the compile tests skip
  and say so. Nothing is downloaded.
* The harness tests build ``libsegdeploy_trt_plugins.so`` with CMake (no libnvinfer needed: the library only
  implements TensorRT's interfaces), dlopen it like ``trtexec --dynamicPlugins`` and drive the creators and
  ``getOutputShapes`` on the CPU (tests/plugins/trt_glue_harness.cpp); no kernel runs.
* The ``trt`` test builds and runs an engine with the plugins; it needs ``import tensorrt``, a CUDA GPU and
  ``SEGDEPLOY_TRT_PLUGIN_LIB`` (path of the built plugin library).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from segdeploy.plugins import onnx_mapping as om
from segdeploy.plugins import reference as ref

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_trt_headers.sh"
HARNESS_SRC = Path(__file__).with_name("trt_glue_harness.cpp")
TRT_INCLUDE = os.environ.get("SEGDEPLOY_TRT_INCLUDE", "")

needs_headers = pytest.mark.skipif(
    not TRT_INCLUDE,
    reason="SEGDEPLOY_TRT_INCLUDE is not set: point it at a TensorRT include/ directory (NvInfer.h) "
    "to compile-check the plugin glue",
)


@needs_headers
def test_glue_compiles_against_headers():
    proc = subprocess.run(["bash", str(SCRIPT), TRT_INCLUDE], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sources = sorted((ROOT / "segdeploy/plugins/trt").glob("*.cpp"))
    oks = [line for line in proc.stdout.splitlines() if line.startswith("ok ")]
    assert sources and len(oks) == len(sources), proc.stdout


def test_script_refuses_a_directory_without_headers(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "has no NvInfer.h" in proc.stderr and proc.stderr.count("\n") == 1


# ------------------------------------------------------------------------------ built library + harness
def _cuda_include() -> str:
    """CUDA's include directory, as nvcc reports it (the same discovery as scripts/check_trt_headers.sh)."""
    home = os.environ.get("CUDA_HOME")
    if home and (Path(home) / "include/cuda_runtime_api.h").is_file():
        return str(Path(home) / "include")
    out = subprocess.run(["nvcc", "-x", "cu", "--dryrun", "-c", "/dev/null", "-o", "/dev/null"],
                         capture_output=True, text=True).stderr
    for line in out.splitlines():
        if 'INCLUDES="-I' in line:
            return line.split('INCLUDES="-I', 1)[1].split('"', 1)[0]
    pytest.skip("nvcc did not report CUDA's include directory (set CUDA_HOME)")


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    if not TRT_INCLUDE:
        pytest.skip("SEGDEPLOY_TRT_INCLUDE is not set: the plugin library cannot be built without TensorRT headers")
    for tool in ("cmake", "nvcc", "g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH: cannot build the plugin library")
    build = tmp_path_factory.mktemp("trtbuild")
    cfg = ["cmake", "-S", str(ROOT), "-B", str(build), f"-DTensorRT_INCLUDE_DIR={TRT_INCLUDE}",
           "-DSEGDEPLOY_CUDA_ARCH=80"]  # one architecture: the harness runs no kernel
    for cmd in (cfg, ["cmake", "--build", str(build), "--target", "segdeploy_trt_plugins", "-j2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    libs = list(build.rglob("libsegdeploy_trt_plugins.so"))
    assert libs, "the build produced no libsegdeploy_trt_plugins.so"
    exe = build / "trt_glue_harness"
    proc = subprocess.run(["g++", "-std=c++17", "-O1", "-isystem", TRT_INCLUDE, "-isystem", _cuda_include(), str(HARNESS_SRC),
                           "-ldl", "-o", str(exe)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    def run(*args) -> str:
        out = subprocess.run([str(exe), str(libs[0]), *map(str, args)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    return run, libs[0]


@pytest.mark.slow
def test_library_exports_only_the_entry_points(harness):
    _, lib = harness
    if shutil.which("nm") is None:
        pytest.skip("nm is not on PATH")
    out = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
    assert sorted(line.split()[-1] for line in out.splitlines() if line.strip()) == ["getCreators", "setLoggerFinder"]


@pytest.mark.slow
def test_creators_match_the_onnx_mapping(harness):
    run, _ = harness
    lines = run("creators").splitlines()
    creators = {}
    for line in lines:
        kind, rest = line.split(" ", 2)[:2], line.split(" ")[2:]
        assert " ".join(kind) == "PLUGIN CREATOR_V3ONE"
        name, version, namespace, fields = rest
        creators[name] = (version, namespace, set(fields.split(",")))
    assert set(creators) == {om.MAXPOOL_PLUGIN, om.MAXUNPOOL_PLUGIN, om.ROIALIGN_PLUGIN}
    for version, namespace, _ in creators.values():
        assert (version, namespace) == (om.PLUGIN_VERSION, om.PLUGIN_NAMESPACE)
    # every attribute the ONNX mapping writes is a field the creator asks for (the parser passes only those)
    assert creators[om.MAXPOOL_PLUGIN][2] == {"kernel_size", "stride", "padding", "dilation", "ceil_mode"}
    assert creators[om.MAXUNPOOL_PLUGIN][2] == {"kernel_size", "stride", "padding"}
    assert creators[om.ROIALIGN_PLUGIN][2] == {"output_height", "output_width", "sampling_ratio", "spatial_scale", "aligned"}


POOL_GRID = [
    (k, s, p, d, ceil, h)
    for k, s, p, d, ceil, h in itertools.product((1, 2, 3), (1, 2, 3), (0, 1), (1, 2), (0, 1), (5, 8, 17))
    if p <= ((k - 1) * d + 1) // 2
]


@pytest.mark.slow
def test_pool_output_shapes_match_pytorch(harness):
    run, _ = harness
    for k, s, p, d, ceil, h in POOL_GRID:
        w = h + 3
        want_h = ref.pool_output_size(h, k, s, p, d, bool(ceil))
        want_w = ref.pool_output_size(w, 2, 1, 1, 1, bool(ceil))
        out = run("pool", k, 2, s, 1, p, 1, d, 1, ceil, 2, 3, h, w)
        assert out == f"2 3 {want_h} {want_w} | types half int32 | formats ok | roundtrip ok | nbOutputs 2", (k, s, p, d, ceil, h)


@pytest.mark.slow
def test_unpool_and_roi_shapes_and_errors(harness):
    run, _ = harness
    oh, ow = ref.unpool_output_size(8, 3, 2, 1), ref.unpool_output_size(7, 2, 2, 0)
    assert run("unpool", 3, 2, 2, 2, 1, 0, 1, 4, 8, 7) == f"1 4 {oh} {ow} | roundtrip ok | workspace 8"
    assert run("unpool", 2, 2, 2, 2, 0, 0, 1, 4, 8, 7, 17, 15).startswith("1 4 17 15 | roundtrip ok")
    assert run("roi", 7, 5, 0, 4, 1, 2, 256, 50, 60, 1000) == "1000 256 7 5 | roundtrip ok"
    assert run("roi", 14, 14, 2, 1, 0, 1, 8, 9, 9, 0) == "0 8 14 14 | roundtrip ok"
    bad = run("badroi")
    assert bad == "null: SegdeployRoiAlignCreator::createPlugin: field sampling_ratio is required (0 = adaptive, as torchvision)"
    bad = run("pool", 2, 2, 2, 2, 2, 0, 1, 1, 0, 1, 1, 8, 8)  # padding 2 > half of kernel 2
    assert bad.startswith("null: SegdeployMaxPoolWithIndicesCreator::createPlugin: padding must be at most half")


# ---------------------------------------------------------------------------------------- real TensorRT
def _trt_run(trt, plan_onnx: bytes, lib: str, profile: dict, feeds: dict, output: str):
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    registry = trt.get_plugin_registry()
    registry.load_library(lib)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(plan_onnx):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        pytest.fail("TensorRT could not parse the plugin graph: " + " | ".join(errors))
    config = builder.create_builder_config()
    prof = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        prof.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(prof)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None, "TensorRT failed to build the engine"
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    ctx = engine.create_execution_context()
    inputs = {k: v.cuda().contiguous() for k, v in feeds.items()}
    for name, t in inputs.items():
        ctx.set_input_shape(name, tuple(t.shape))
        ctx.set_tensor_address(name, t.data_ptr())
    out = torch.empty(tuple(ctx.get_tensor_shape(output)), device="cuda", dtype=torch.float32)
    ctx.set_tensor_address(output, out.data_ptr())
    stream = torch.cuda.Stream()
    assert ctx.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return out.cpu()


@pytest.mark.trt
@pytest.mark.gpu
def test_tensorrt_engine_with_plugins_matches_torch(tmp_path):
    trt = pytest.importorskip("tensorrt", reason="TensorRT (python package tensorrt) is not installed")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: TensorRT engines cannot be built here")
    lib = os.environ.get("SEGDEPLOY_TRT_PLUGIN_LIB")
    if not lib or not Path(lib).is_file():
        pytest.skip("SEGDEPLOY_TRT_PLUGIN_LIB does not name the built libsegdeploy_trt_plugins.so")
    import onnx
    import torch.nn.functional as F
    import torchvision

    class SegNetBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.dec = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 2, 3, padding=1)

        def forward(self, x):
            a = self.enc(x)
            p, i = F.max_pool2d(a, 3, 2, padding=1, ceil_mode=True, return_indices=True)
            return self.dec(F.max_unpool2d(p, i, 3, 2, padding=1, output_size=a.shape[-2:]))

    torch.manual_seed(0)
    model = SegNetBlock().eval()
    path = tmp_path / "segnet.onnx"
    dyn = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), str(path), dynamo=True, input_names=["input"],
                          output_names=["logits"], dynamic_axes=dyn)
    plugin, _ = om.to_plugin_graph(onnx.load(str(path)))
    x = torch.randn(2, 3, 37, 45)
    got = _trt_run(trt, plugin.SerializeToString(), lib,
                   {"input": ((1, 3, 16, 16), (2, 3, 37, 45), (2, 3, 64, 64))}, {"input": x}, "logits")
    with torch.no_grad():
        want = model(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

    class Roi(torch.nn.Module):
        def forward(self, feats, boxes):
            return torchvision.ops.roi_align(feats, boxes, (7, 7), 0.25, 0, True)

    feats = torch.randn(2, 16, 20, 24)
    boxes = torch.tensor([[0, 4.0, 4.0, 60.0, 50.0], [1, 10.0, 2.0, 30.0, 70.0], [0, 3.0, 3.0, 3.0, 3.0]])
    rpath = tmp_path / "roi.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(Roi(), (feats, boxes), str(rpath), dynamo=False, input_names=["feats", "boxes"],
                          output_names=["y"], dynamic_axes={"boxes": {0: "k"}, "y": {0: "k"}})
    rplugin, _ = om.to_plugin_graph(onnx.load(str(rpath)))
    got = _trt_run(trt, rplugin.SerializeToString(), lib,
                   {"boxes": ((1, 5), (3, 5), (64, 5))}, {"feats": feats, "boxes": boxes}, "y")
    torch.testing.assert_close(got, Roi()(feats, boxes), rtol=1e-4, atol=1e-4)
