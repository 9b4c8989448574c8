"""The trtexec command: the recipe (make_recipe, the one rule engine) rendered for a TARGET version, against the flag
tables of the TensorRT notes (sampleOptions.cpp at v8.6.1 / v10.3.0 / v10.9.0 / v10.16 / v11.1)."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from trt_helpers import PROFILE

from segdeploy.errors import UsageError
from segdeploy.trt.recipe import (
    CacheHeader,
    CalibrationCacheMismatch,
    EngineBuildOptions,
    UnsupportedByTensorRT,
)
from segdeploy.trt.trtexec import (
    JETPACK_TRTEXEC,
    find_trtexec,
    shape_spec,
    trtexec_command,
    trtexec_commands,
)
from segdeploy.trt.versions import resolve_target

SHAPES = ["--minShapes=input:1x3x64x64", "--optShapes=input:1x3x128x128", "--maxShapes=input:8x3x256x256"]
OPT_SHAPES = ["--minShapes=input:1x3x128x128", "--optShapes=input:1x3x128x128", "--maxShapes=input:1x3x128x128"]
REMOVED_IN_11 = ("--fp16", "--int8", "--calib", "--best", "--bf16", "--stronglyTyped", "ShapesCalib")


def cmd(precision="fp32", target="10.3", trtexec="trtexec", **kw):
    opts = {k: kw.pop(k) for k in list(kw) if k in EngineBuildOptions.__dataclass_fields__}
    return trtexec_command("out/model.onnx", "input", PROFILE, precision, target=target, trtexec=trtexec,
                           options=EngineBuildOptions(**opts), **kw)


@pytest.mark.parametrize("target,precision,flags", [
    ("8.6", "fp32", []),
    ("8.6", "fp16", ["--fp16"]),
    ("8.6", "int8", ["--int8", "--fp16"]),  # weak INT8 with FP16: float layers would run FP32 (defect 5)
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
    assert c.setup == () and c.shell() == shlex.join(c.argv)
    if target == "11.x":
        assert not any(a.startswith(REMOVED_IN_11) for a in c.argv)


def test_default_target_is_the_installed_tensorrt_else_jetpack_6_2(monkeypatch):
    from segdeploy.trt import versions

    monkeypatch.setattr(versions, "installed_version", lambda: None)
    assert resolve_target(None).version == "10.3.0" and resolve_target(None).origin == "default"
    assert cmd("fp16", None).version == "10.3.0" and "--stronglyTyped" in cmd("fp16", None).argv
    monkeypatch.setattr(versions, "installed_version", lambda: "10.13.3")
    assert resolve_target(None).version == "10.13.3" and resolve_target(None).origin == "installed"


def test_the_trtexec_program(monkeypatch):
    """$TRTEXEC, else trtexec on PATH, else JetPack's path (never on PATH there) -- build.sh's order."""
    assert find_trtexec({"TRTEXEC": "/opt/trt/bin/trtexec"}, which=lambda _: None) == "/opt/trt/bin/trtexec"
    assert find_trtexec({}, which=lambda _: "/usr/bin/trtexec") == "trtexec"
    assert find_trtexec({}, which=lambda _: None) == JETPACK_TRTEXEC == "/usr/src/tensorrt/bin/trtexec"
    monkeypatch.delenv("TRTEXEC", raising=False)
    monkeypatch.setattr("segdeploy.trt.trtexec._on_path", lambda _: None)
    c = trtexec_command("m.onnx", "input", PROFILE, target="jetpack-6.2")
    assert c.argv[0] == JETPACK_TRTEXEC and any(JETPACK_TRTEXEC in n and "$TRTEXEC" in n for n in c.notes)
    from segdeploy.bundle.stage import TEMPLATES

    assert f"command -v trtexec || echo {JETPACK_TRTEXEC}" in (TEMPLATES / "build.sh").read_text()


@pytest.mark.parametrize("target,code", [("8.6", 8602), ("10.3", 100300), ("10.13.3", 101303)])
def test_implicit_int8_with_the_cache(target, code):
    c = cmd("int8-implicit", target, calib_cache="out/model.calib.cache", calib_header=CacheHeader(code))
    i = c.argv.index("--int8")
    assert c.argv[i:i + 4] == ("--int8", "--fp16", "--calib=out/model.calib.cache", "--optShapesCalib=input:1x3x128x128")
    assert "--stronglyTyped" not in c.argv
    assert any("deprecated" in n for n in c.notes) is (target != "8.6")


@pytest.mark.parametrize("target", ["10.x", "jetpack-7.0", "10.16"])
def test_implicit_int8_on_a_range_asks_for_the_exact_version(target, write_cache):
    """Defect 3: target 10.x printed --int8 --calib= with a 10.3 header and no warning; TensorRT skips a cache
    whose header differs, and trtexec's calibrator then hands out null bindings."""
    with pytest.raises(UnsupportedByTensorRT, match="not one version; give the device's exact version"):
        cmd("int8-implicit", target, calib_cache=write_cache("10.3"))


def test_implicit_int8_refused_on_11():
    with pytest.raises(UnsupportedByTensorRT) as e:
        cmd("int8-implicit", "11.x", calib_cache="out/model.calib.cache")
    assert "TensorRT 11.x" in e.value.message and "model.int8.onnx" in e.value.message
    with pytest.raises(UsageError, match="only used by precision int8-implicit"):
        cmd("int8", "10.3", calib_cache="c.cache")
    with pytest.raises(UsageError, match="needs the calibration cache"):
        cmd("int8-implicit", "8.6")


def test_cache_header_for_another_version_is_refused_or_rewritten(write_cache, tmp_path):
    cache = write_cache("10.3")
    with pytest.raises(CalibrationCacheMismatch) as e:
        cmd("int8-implicit", "8.6", calib_cache=cache)
    assert "TRT-100300" in e.value.message and "reads only TRT-8602" in e.value.message
    assert "--trt-target 8.6.2" in e.value.message and "--rewrite-calib-header" in e.value.message
    assert not any("TRT-" in n for n in cmd("int8-implicit", "10.3.0", calib_cache=cache).notes)
    # --rewrite-calib-header: trtexec reads the file as it is, so the command first writes a copy with the header
    c = cmd("int8-implicit", "8.6", calib_cache=cache, rewrite_calib_header=True)
    copy = str(cache).replace(".cache", ".trt8602.cache")
    assert f"--calib={copy}" in c.argv and len(c.setup) == 1 and c.shell().startswith(c.setup[0] + " && ")
    subprocess.run(c.setup[0], shell=True, check=True)  # the printed setup line, run by a shell
    with open(copy) as f:
        lines = f.read().splitlines()
    assert lines[0] == "TRT-8602-EntropyCalibration2" and lines[1:] == cache.read_text().splitlines()[1:]
    assert cache.read_text().startswith("TRT-100300-")  # the export's file is untouched


@pytest.mark.parametrize("target", ["10.3", "10.x", "11.x"])
def test_plugins_timing_cache_workspace_level(target):
    c = cmd("fp16", target, plugin_library="build/lib/libsegdeploy_trt_plugins.so", timing_cache="tc.bin",
            workspace_mib=2048, optimization_level=5)
    for flag in ("--dynamicPlugins=build/lib/libsegdeploy_trt_plugins.so", "--timingCacheFile=tc.bin",
                 "--memPoolSize=workspace:2048", "--builderOptimizationLevel=5"):
        assert flag in c.argv
    assert not any(a.startswith("--setPluginsToSerialize") for a in c.argv)
    vc = cmd("fp16", target, plugin_library="lib.so", version_compatible=True)
    assert "--setPluginsToSerialize=./lib.so" in vc.argv and "--versionCompatible" in vc.argv


def test_a_bare_plugin_library_name_gets_a_directory():
    """Defect 7: dlopen searches LD_LIBRARY_PATH and the system, never the current directory, for a bare name."""
    c = cmd("fp32", "10.3", plugin_library="libsegdeploy_trt_plugins.so")
    assert "--dynamicPlugins=./libsegdeploy_trt_plugins.so" in c.argv
    assert "--dynamicPlugins=/abs/libx.so" in cmd("fp32", "10.3", plugin_library="/abs/libx.so").argv


def test_plugins_refused_on_86():
    with pytest.raises(UnsupportedByTensorRT, match=r"TensorRT 8\.6\.2 \(JetPack 6\.0\) has no IPluginV3.*target 10\.3"):
        cmd("fp32", "8.6", plugin_library="lib.so")


@pytest.mark.parametrize("target", ["8.6", "10.3"])
def test_dla_uses_precision_flags_and_a_static_profile(target):
    c = cmd("fp16", target, dla_core=0)
    assert "--fp16" in c.argv and "--useDLACore=0" in c.argv and "--allowGPUFallback" in c.argv
    assert "--stronglyTyped" not in c.argv
    # defect 6: DLA needs min = opt = max; the export's dynamic profile is pinned to its opt shape
    assert list(c.argv[2:5]) == OPT_SHAPES and any("pinned to the opt shape" in n for n in c.notes)
    # defect 5: INT8 on DLA with FP16, so layers left in float stay on the DLA
    c8 = cmd("int8", target, dla_core=1, gpu_fallback=False)
    assert "--int8" in c8.argv and "--fp16" in c8.argv and "--allowGPUFallback" not in c8.argv
    with pytest.raises(UnsupportedByTensorRT, match="FP16 and INT8 only"):
        cmd("fp32", target, dla_core=0)


@pytest.mark.parametrize("target", ["10.x", "10.13.3", "11.x"])
def test_dla_refused_without_dla(target):
    with pytest.raises(UnsupportedByTensorRT, match="no DLA support"):
        cmd("fp16", target, dla_core=0)


@pytest.mark.parametrize("target,ok", [("8.6", False), ("10.3", False), ("10.8.0", False), ("10.x", False),
                                       ("10.9.0", True), ("10.13.3", True), ("11.x", True)])
def test_same_compute_capability_from_10_9(target, ok):
    """Defect 4: trtexec 10.3-10.8 rejects it ("Valid options: none, ampere+"); 10.9 added it."""
    if ok:
        assert "--hardwareCompatibilityLevel=sameComputeCapability" in \
            cmd("fp16", target, hardware_compatibility="same-compute-capability").argv
    else:
        with pytest.raises(UnsupportedByTensorRT, match="no hardware compatibility level same-compute-capability"):
            cmd("fp16", target, hardware_compatibility="same-compute-capability")


def test_hardware_compatibility():
    assert "--hardwareCompatibilityLevel=ampere+" in cmd("fp16", "8.6", hardware_compatibility="ampere+").argv
    assert not any("hardwareCompatibility" in a for a in cmd("fp16", "11.x", hardware_compatibility="none").argv)
    with pytest.raises(UnsupportedByTensorRT, match="cannot use DLA"):
        cmd("fp16", "10.3", hardware_compatibility="ampere+", dla_core=0)


def test_shape_spec_quotes_names_with_colons_and_shell_quoting():
    assert shape_spec("input:0", (1, 3, 8, 8)) == "'input:0':1x3x8x8"
    c = trtexec_command("my dir/model.onnx", "input", PROFILE, target="11.x", skip_inference=False, trtexec="trtexec")
    assert c.shell().startswith("trtexec '--onnx=my dir/model.onnx' --minShapes=input:1x3x64x64")
    assert "--skipInference" not in c.argv


def test_targets_and_bad_values():
    assert [c.target for c in trtexec_commands(["8.6.2", "10.3.0", "10.13.3", "11.4.1", "jetpack-6.2"], "m.onnx",
                                               "input", PROFILE)] == ["8.6", "10.3", "10.x", "11.x", "10.3"]
    with pytest.raises(UsageError, match="unknown TensorRT target '9.3'"):
        cmd("fp32", "9.3")
    with pytest.raises(UsageError, match="unknown JetPack release '9.9'"):
        cmd("fp32", "jetpack-9.9")
    with pytest.raises(UsageError, match="unknown precision"):
        cmd("bf16", "10.3")
    with pytest.raises(UsageError, match="0..5"):
        cmd("fp32", "10.3", optimization_level=7)
