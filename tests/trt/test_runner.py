"""TensorRT runner on the CPU: missing TensorRT, plan checks before deserializing, runtime start failures.

No test here gets an inference result: the stand-in never deserializes a plan, and the refusals are checked to
happen before ``Runtime.deserialize_cuda_engine`` is ever called.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from trt_helpers import plan_bytes
from standin import make_trt_module

from segdeploy.errors import MissingDependencyError, UsageError
from segdeploy.plugins.locate import PLUGINS_ENV
from segdeploy.runners import open_runner
from segdeploy.runners.tensorrt import TensorRTOptions, TensorRTRunner, TensorRTRuntimeError
from segdeploy.trt.plan import NotAPlanError, PlanVersionError


def engine(tmp_path, version, name="model.fp16.engine"):
    p = tmp_path / name
    p.write_bytes(plan_bytes(version))
    return p


def test_tensorrt_absent_is_one_line_with_the_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(MissingDependencyError) as e:
        open_runner(str(engine(tmp_path, (10, 3, 0, 26))))
    msg = e.value.message
    assert msg.startswith("running engine model.fp16.engine needs TensorRT, which is not installed;")
    assert "pip install tensorrt" in msg and "python3-libnvinfer" in msg and "\n" not in msg


def test_lean_runtime_absent(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt_lean_bindings", None)
    monkeypatch.setitem(sys.modules, "tensorrt_lean", None)
    with pytest.raises(MissingDependencyError, match="pip install tensorrt-lean-cu12-bindings tensorrt-lean-cu12-libs"):
        TensorRTRunner(engine(tmp_path, (10, 3, 0, 26)), TensorRTOptions(runtime="lean"))


def test_options_validation():
    with pytest.raises(UsageError, match="runtime must be one of auto, full, lean"):
        TensorRTOptions(runtime="dispatch")
    with pytest.raises(UsageError, match="device index"):
        TensorRTOptions(device_index=-1)


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "11.1"])
def test_foreign_plan_refused_before_deserializing(tmp_path, version):
    trt = make_trt_module(version, version_string={"8.6.1": "8.6.1.6", "10.3.0": "10.3.0.26", "11.1": "11.1.0.7"}[version])
    p = engine(tmp_path, (10, 13, 3, 9))
    r = TensorRTRunner(p, trt_module=trt)
    with pytest.raises(PlanVersionError) as e:
        r.open()
    msg = e.value.message
    assert f"built with TensorRT 10.13.3.9 but TensorRT {trt.__version__} is installed" in msg and "\n" not in msg
    assert not any(n.startswith("Runtime.") for n in trt._standin.names())  # nothing created, nothing deserialized
    assert not r.is_open


def test_non_plan_refused(tmp_path, onnx_dir):
    trt = make_trt_module("10.3.0")
    with pytest.raises(NotAPlanError, match="it is an ONNX model"):
        TensorRTRunner(onnx_dir / "model.onnx", trt_module=trt).open()
    assert trt._standin.calls == []


def test_runtime_start_failure_is_one_line_and_nothing_is_deserialized(tmp_path):
    trt = make_trt_module("10.3.0", version_string="10.3.0.26", cuda=False)
    r = TensorRTRunner(engine(tmp_path, (10, 3, 0, 26)), trt_module=trt)
    with pytest.raises(TensorRTRuntimeError) as e:
        r.infer(torch.zeros(1, 3, 64, 64).numpy())  # infer opens lazily
    msg = e.value.message
    assert msg.startswith("TensorRT 10.3.0.26 could not start its runtime: createInferRuntime:")
    assert "CUDA initialization failure" in msg and "NVIDIA GPU" in msg
    assert "Runtime.__init__" in trt._standin.names()
    assert "Runtime.deserialize_cuda_engine" not in trt._standin.names()


def test_no_cuda_torch_stops_before_deserializing(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here; the no-CUDA path cannot be shown")
    trt = make_trt_module("11.1", version_string="11.1.0.7")
    with pytest.raises(MissingDependencyError, match=r"needs torch with CUDA .*torch.cuda.is_available\(\) is False"):
        TensorRTRunner(engine(tmp_path, (11, 1, 0, 7)), trt_module=trt).open()
    assert "Runtime.deserialize_cuda_engine" not in trt._standin.names()


def test_version_compatible_option_accepts_an_older_plan(tmp_path):
    trt = make_trt_module("10.16", version_string="10.16.1.11", cuda=False)
    p = engine(tmp_path, (10, 3, 0, 26))
    with pytest.raises(PlanVersionError):
        TensorRTRunner(p, trt_module=trt).open()
    with pytest.raises(TensorRTRuntimeError):  # past the version check, up to the (GPU-less) runtime
        TensorRTRunner(p, TensorRTOptions(version_compatible=True, trust_host_code=True), trt_module=trt).open()


def test_manifest_plugins_and_missing_library(tmp_path, monkeypatch):
    trt = make_trt_module("10.3.0", version_string="10.3.0.26")
    p = engine(tmp_path, (10, 3, 0, 26))
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"engines": [{"file": p.name, "plugins": "libsegdeploy_trt_plugins.so"}]}))
    monkeypatch.setenv(PLUGINS_ENV, str(tmp_path / "no-such-dir"))  # the locator's deciding source holds nothing
    with pytest.raises(UsageError, match=r"needs the plugin library libsegdeploy_trt_plugins.so .*none was found "
                                         r"\(not found via \$SEGDEPLOY_PLUGINS.*--plugins PATH"):
        TensorRTRunner(p, trt_module=trt).open()
    with pytest.raises(UsageError, match="plugin library /nowhere/lib.so not found"):
        TensorRTRunner(p, TensorRTOptions(plugin_library="/nowhere/lib.so"), trt_module=trt).open()
    assert not any(n.startswith("Runtime.") for n in trt._standin.names())


def test_manifest_plugins_are_located(tmp_path, monkeypatch):
    """An engine whose manifest names the plugin library, no --plugins: the locator's library is the one loaded."""
    trt = make_trt_module("10.16", version_string="10.16.1.11", cuda=False)
    p = engine(tmp_path, (10, 16, 1, 11))
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"engines": [{"file": p.name, "plugins": "libsegdeploy_trt_plugins.so"}]}))
    lib = tmp_path / "plugins" / "lib" / "libsegdeploy_trt_plugins.so"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"\x7fELF placeholder: located, never loaded (the runtime fails first)")
    monkeypatch.setenv(PLUGINS_ENV, str(tmp_path / "plugins"))
    runner = TensorRTRunner(p, trt_module=trt)
    with pytest.raises(TensorRTRuntimeError):  # past the plugin check, up to the (GPU-less) runtime
        runner.open()
    assert runner.plugin_library == str(lib) and runner.describe()["plugin_library"] == str(lib)
    # an engine the manifest lists without plugins: nothing is located
    (tmp_path / "manifest.json").write_text(json.dumps({"engines": [{"file": p.name, "plugins": None}]}))
    runner = TensorRTRunner(p, trt_module=trt)
    with pytest.raises(TensorRTRuntimeError):
        runner.open()
    assert runner.plugin_library is None


def test_describe_before_open(tmp_path):
    trt = make_trt_module("10.3.0")
    d = TensorRTRunner(engine(tmp_path, (10, 3, 0, 26)), trt_module=trt).describe()
    assert d["kind"] == "tensorrt" and d["tensorrt"] == trt.__version__ and d["plan_header"] is None
    assert TensorRTRunner(engine(tmp_path, (10, 3, 0, 26)), trt_module=trt).timing_split_summary() == {"calls": 0}


RUNTIME_OBJECTS = {"engine": "ICudaEngine", "ctx": "IExecutionContext", "runtime": "Runtime",
                   "registry": "IPluginRegistry"}


def _runner_api_uses():
    """(class, member) for every ``engine.x`` / ``ctx.x`` / ``runtime.x`` / ``registry.x`` in the runner's source."""
    import re

    import segdeploy.runners.tensorrt as mod

    src = open(mod.__file__).read()
    uses = set()
    for var, cls in RUNTIME_OBJECTS.items():
        uses |= {(cls, m) for m in re.findall(rf"\b{var}\.([A-Za-z_]\w*)", src)}
    return sorted(uses)


def test_every_runtime_member_the_runner_uses_exists_in_every_recorded_version():
    from standin import SURFACE

    uses = _runner_api_uses()
    assert ("IExecutionContext", "execute_async_v3") in uses and ("ICudaEngine", "get_tensor_profile_shape") in uses
    for version, v in SURFACE["versions"].items():
        for cls, member in uses:
            members = {m.removesuffix("!D") for m in v["classes"][cls]["members"]}
            assert member in members, f"{cls}.{member} is not in TensorRT {version}'s Python API"


def test_the_real_lean_module_has_them_too():
    lean = pytest.importorskip("tensorrt_lean_bindings", reason="tensorrt-lean-cu12-bindings is not installed")
    for cls, member in _runner_api_uses():
        assert hasattr(getattr(lean, cls), member), f"{cls}.{member} missing in {lean.__version__}"
