"""Precision -> recipe per TensorRT version (capabilities from the recorded surfaces), and the refusals."""

from __future__ import annotations

import pytest
from standin import make_trt_module

from segdeploy.errors import UsageError
from segdeploy.trt.capabilities import probe
from segdeploy.trt.recipe import EngineBuildOptions, UnsupportedByTensorRT, make_recipe


def caps(version, dla=None):
    trt = make_trt_module(version, num_dla_cores=dla or 0)
    return probe(trt, builder=trt.Builder(trt.Logger()) if dla is not None else None)


# version, precision -> (network flags, builder flags, calibrator)
TABLE = {
    ("8.6.1", "fp32"): (("EXPLICIT_BATCH",), (), False),
    ("8.6.1", "fp16"): (("EXPLICIT_BATCH",), ("FP16",), False),
    ("8.6.1", "int8"): (("EXPLICIT_BATCH",), ("INT8",), False),
    ("8.6.1", "int8-implicit"): (("EXPLICIT_BATCH",), ("INT8",), True),
    ("10.3.0", "fp32"): (("STRONGLY_TYPED",), (), False),
    ("10.3.0", "fp16"): (("STRONGLY_TYPED",), (), False),
    ("10.3.0", "int8"): (("STRONGLY_TYPED",), (), False),
    ("10.3.0", "int8-implicit"): ((), ("INT8",), True),
    ("10.16", "fp16"): (("STRONGLY_TYPED",), (), False),
    ("10.16", "int8"): (("STRONGLY_TYPED",), (), False),
    ("10.16", "int8-implicit"): ((), ("INT8",), True),
    ("11.1", "fp32"): (("STRONGLY_TYPED",), (), False),
    ("11.1", "fp16"): (("STRONGLY_TYPED",), (), False),
    ("11.1", "int8"): (("STRONGLY_TYPED",), (), False),
}


@pytest.mark.parametrize("version,precision", sorted(TABLE))
def test_recipe_table(version, precision):
    net, flags, calib = TABLE[(version, precision)]
    r = make_recipe(caps(version), precision, has_calib_cache=precision == "int8-implicit")
    assert r.network_flags == net and r.builder_flags == flags and r.calibrator is calib
    assert r.strongly_typed is ("STRONGLY_TYPED" in net)
    assert r.calibration_profile is calib and r.device == "GPU" and r.tensorrt == make_trt_module(version).__version__
    if precision == "int8-implicit" and version != "8.6.1":
        assert any("deprecated" in w and "TensorRT 11" in w for w in r.warnings)
    else:
        assert r.warnings == ()


def test_int8_implicit_on_11_names_the_version_and_the_qdq_model():
    with pytest.raises(UnsupportedByTensorRT) as e:
        make_recipe(caps("11.1"), "int8-implicit", has_calib_cache=True)
    msg = e.value.message
    assert "TensorRT 11.1.0.0" in msg and "model.int8.onnx" in msg and "\n" not in msg and e.value.exit_code == 2


def test_int8_implicit_needs_the_cache():
    with pytest.raises(UsageError, match="model.calib.cache"):
        make_recipe(caps("10.3.0"), "int8-implicit")


def test_plugins_need_iplugin_v3():
    with pytest.raises(UnsupportedByTensorRT, match=r"TensorRT 8\.6\.1\.0 has no IPluginV3.*10\.x or newer"):
        make_recipe(caps("8.6.1"), "fp32", needs_plugins=True)
    assert make_recipe(caps("10.3.0"), "fp32", needs_plugins=True).plugins


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
@pytest.mark.parametrize("precision,flag", [("fp16", "FP16"), ("int8", "INT8")])
def test_dla_on_orin_uses_weak_typing_and_gpu_fallback(version, precision, flag):
    r = make_recipe(caps(version, dla=2), precision, EngineBuildOptions(dla_core=1))
    assert r.device == "DLA" and r.dla_core == 1
    assert r.builder_flags == (flag, "GPU_FALLBACK") and "STRONGLY_TYPED" not in r.network_flags
    r2 = make_recipe(caps(version, dla=2), precision, EngineBuildOptions(dla_core=0, gpu_fallback=False))
    assert r2.builder_flags == (flag,)


def test_dla_on_11_is_strongly_typed():
    r = make_recipe(caps("11.1", dla=2), "int8", EngineBuildOptions(dla_core=0))
    assert r.network_flags == ("STRONGLY_TYPED",) and r.builder_flags == ("GPU_FALLBACK",) and r.device == "DLA"


def test_dla_refusals():
    with pytest.raises(UnsupportedByTensorRT, match=r"num_DLA_cores = 0"):
        make_recipe(caps("10.3.0", dla=0), "fp16", EngineBuildOptions(dla_core=0))
    with pytest.raises(UsageError, match="DLA core 2 does not exist"):
        make_recipe(caps("10.3.0", dla=2), "fp16", EngineBuildOptions(dla_core=2))
    with pytest.raises(UnsupportedByTensorRT, match="FP16 and INT8 only"):
        make_recipe(caps("10.3.0", dla=2), "fp32", EngineBuildOptions(dla_core=0))


@pytest.mark.parametrize("version,ok", [("8.6.1", False), ("10.3.0", False), ("10.16", True), ("11.1", True)])
def test_same_compute_capability_only_where_the_enum_has_it(version, ok):
    opts = EngineBuildOptions(hardware_compatibility="same-compute-capability")
    if ok:
        assert make_recipe(caps(version), "fp32", opts).hardware_compatibility == "SAME_COMPUTE_CAPABILITY"
    else:
        with pytest.raises(UnsupportedByTensorRT, match="use one of none, ampere\\+"):
            make_recipe(caps(version), "fp32", opts)
    assert make_recipe(caps(version), "fp32", EngineBuildOptions(hardware_compatibility="ampere+")) \
        .hardware_compatibility == "AMPERE_PLUS"


def test_version_compatible_with_plugins_serializes_the_library():
    r = make_recipe(caps("10.16"), "fp16", EngineBuildOptions(version_compatible=True, exclude_lean_runtime=True),
                    needs_plugins=True)
    assert r.builder_flags == ("VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME") and r.serialize_plugins
    assert r.parser_flags == ("NATIVE_INSTANCENORM",)
    assert make_recipe(caps("10.16"), "fp16").parser_flags == ()
    assert any("trust-host-code" in n for n in r.notes)


def test_workspace_and_level():
    r = make_recipe(caps("10.3.0"), "fp32", EngineBuildOptions(workspace_mib=2048, optimization_level=5))
    assert r.workspace_bytes == 2048 << 20 and r.optimization_level == 5


@pytest.mark.parametrize("kwargs,match", [
    ({"workspace_mib": 0}, "workspace"),
    ({"optimization_level": 6}, "0..5"),
    ({"dla_core": -1}, "DLA core"),
    ({"hardware_compatibility": "turing+"}, "hardware compatibility"),
    ({"exclude_lean_runtime": True}, "version-compatible"),
])
def test_option_validation(kwargs, match):
    with pytest.raises(UsageError, match=match):
        EngineBuildOptions(**kwargs)


def test_unknown_precision_and_runtime_only_module():
    with pytest.raises(UsageError, match="unknown precision 'int4'"):
        make_recipe(caps("10.3.0"), "int4")
    lean = pytest.importorskip("tensorrt_lean_bindings", reason="tensorrt-lean-cu12-bindings is not installed")
    with pytest.raises(UnsupportedByTensorRT, match="runtime-only module"):
        make_recipe(probe(lean), "fp32")
