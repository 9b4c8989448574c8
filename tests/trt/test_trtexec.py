"""trtexec command generator per target version, against the flag tables of the TensorRT notes
(sampleOptions.cpp at v8.6.1 / v10.3.0 / v10.16 / v11.1)."""

from __future__ import annotations

import pytest
from trt_helpers import PROFILE

from segdeploy.errors import UsageError
from segdeploy.trt.recipe import UnsupportedByTensorRT
from segdeploy.trt.trtexec import shape_spec, trtexec_command, trtexec_commands
from segdeploy.trt.versions import resolve_target

SHAPES = ["--minShapes=input:1x3x64x64", "--optShapes=input:1x3x128x128", "--maxShapes=input:8x3x256x256"]
REMOVED_IN_11 = ("--fp16", "--int8", "--calib", "--best", "--bf16", "--stronglyTyped", "ShapesCalib")


def cmd(precision="fp32", target=None, **kw):
    return trtexec_command("out/model.onnx", "input", PROFILE, precision, target=target, **kw)


@pytest.mark.parametrize("target,precision,flags", [
    ("8.6", "fp32", []),
    ("8.6", "fp16", ["--fp16"]),
    ("8.6", "int8", ["--int8"]),
    ("10.3", "fp32", ["--stronglyTyped"]),
    ("10.3", "fp16", ["--stronglyTyped"]),
    ("10.3", "int8", ["--stronglyTyped"]),
    ("10.x", "fp16", ["--stronglyTyped"]),
    ("10.x", "int8", ["--stronglyTyped"]),
    ("11.x", "fp32", []),
    ("11.x", "fp16", []),
    ("11.x", "int8", []),
])
def test_precision_flags_per_target(target, precision, flags):
    c = cmd(precision, target, save_engine="out/model.engine")
    assert c.argv == ("trtexec", "--onnx=out/model.onnx", "--saveEngine=out/model.engine", *SHAPES, *flags,
                      "--skipInference")
    if target == "11.x":
        assert not any(a.startswith(REMOVED_IN_11) for a in c.argv)


def test_default_target_is_the_newest():
    assert cmd("fp16").target == "11.x" and resolve_target(None).key == "11.x"


@pytest.mark.parametrize("target", ["8.6", "10.3", "10.x"])
def test_implicit_int8_with_the_cache(target):
    c = cmd("int8-implicit", target, calib_cache="out/model.calib.cache")
    i = c.argv.index("--int8")
    assert c.argv[i:i + 3] == ("--int8", "--calib=out/model.calib.cache", "--optShapesCalib=input:1x3x128x128")
    assert "--stronglyTyped" not in c.argv
    assert any("deprecated" in n for n in c.notes) is (target != "8.6")


def test_implicit_int8_refused_on_11():
    with pytest.raises(UnsupportedByTensorRT) as e:
        cmd("int8-implicit", "11.x", calib_cache="out/model.calib.cache")
    assert "TensorRT 11.x" in e.value.message and "model.int8.onnx" in e.value.message
    with pytest.raises(UsageError, match="only used by precision int8-implicit"):
        cmd("int8", "10.3", calib_cache="c.cache")
    with pytest.raises(UsageError, match="needs the calibration cache"):
        cmd("int8-implicit", "8.6")


def test_cache_header_for_another_version_is_noted(write_cache):
    c = cmd("int8-implicit", "8.6", calib_cache=write_cache("10.3"))
    assert any("TRT-100300" in n and "expects TRT-8602" in n and "--trt-version 8.6.2" in n for n in c.notes)
    assert not any("TRT-" in n for n in cmd("int8-implicit", "10.3", calib_cache=write_cache("10.3.0")).notes)


@pytest.mark.parametrize("target", ["10.3", "10.x", "11.x"])
def test_plugins_timing_cache_workspace_level(target):
    c = cmd("fp16", target, plugin_library="build/lib/libsegdeploy_trt_plugins.so", timing_cache="tc.bin",
            workspace_mib=2048, optimization_level=5)
    for flag in ("--dynamicPlugins=build/lib/libsegdeploy_trt_plugins.so", "--timingCacheFile=tc.bin",
                 "--memPoolSize=workspace:2048", "--builderOptimizationLevel=5"):
        assert flag in c.argv
    assert not any(a.startswith("--setPluginsToSerialize") for a in c.argv)
    vc = cmd("fp16", target, plugin_library="lib.so", version_compatible=True)
    assert "--setPluginsToSerialize=lib.so" in vc.argv and "--versionCompatible" in vc.argv


def test_plugins_refused_on_86():
    with pytest.raises(UnsupportedByTensorRT, match="TensorRT 8.6 has no IPluginV3.*target 10.3"):
        cmd("fp32", "8.6", plugin_library="lib.so")


@pytest.mark.parametrize("target", ["8.6", "10.3"])
def test_dla_uses_precision_flags(target):
    c = cmd("fp16", target, dla_core=0)
    assert "--fp16" in c.argv and "--useDLACore=0" in c.argv and "--allowGPUFallback" in c.argv
    assert "--stronglyTyped" not in c.argv
    assert "--allowGPUFallback" not in cmd("int8", target, dla_core=1, gpu_fallback=False).argv
    with pytest.raises(UnsupportedByTensorRT, match="FP16 and INT8 only"):
        cmd("fp32", target, dla_core=0)


@pytest.mark.parametrize("target", ["10.x", "11.x"])
def test_dla_refused_without_dla(target):
    with pytest.raises(UnsupportedByTensorRT, match="no DLA support"):
        cmd("fp16", target, dla_core=0)


def test_hardware_compatibility():
    assert "--hardwareCompatibilityLevel=ampere+" in cmd("fp16", "8.6", hardware_compatibility="ampere+").argv
    assert "--hardwareCompatibilityLevel=sameComputeCapability" in \
        cmd("fp16", "11.x", hardware_compatibility="same-compute-capability").argv
    with pytest.raises(UnsupportedByTensorRT, match="no hardware compatibility level same-compute-capability"):
        cmd("fp16", "10.3", hardware_compatibility="same-compute-capability")
    assert not any("hardwareCompatibility" in a for a in cmd("fp16", "11.x", hardware_compatibility="none").argv)


def test_shape_spec_quotes_names_with_colons_and_shell_quoting():
    assert shape_spec("input:0", (1, 3, 8, 8)) == "'input:0':1x3x8x8"
    c = trtexec_command("my dir/model.onnx", "input", PROFILE, target="11.x", skip_inference=False)
    assert c.shell().startswith("trtexec '--onnx=my dir/model.onnx' --minShapes=input:1x3x64x64")
    assert "--skipInference" not in c.argv


def test_targets_and_bad_values():
    assert [c.target for c in trtexec_commands(["8.6.2", "10.3.0", "10.13.3", "11.4.1"], "m.onnx", "input",
                                               PROFILE)] == ["8.6", "10.3", "10.x", "11.x"]
    with pytest.raises(UsageError, match="unknown TensorRT target '9.3'"):
        cmd("fp32", "9.3")
    with pytest.raises(UsageError, match="unknown precision"):
        cmd("bf16", "10.3")
    with pytest.raises(UsageError, match="0..5"):
        cmd("fp32", "10.3", optimization_level=7)
