"""Precision -> recipe per TensorRT version (capabilities from the recorded surfaces), and the refusals."""

from __future__ import annotations

import pytest
from standin import make_trt_module
from trt_helpers import PROFILE

from segdeploy.errors import UsageError
from segdeploy.spec import ShapeProfile
from segdeploy.trt.capabilities import probe
from segdeploy.trt.recipe import EngineBuildOptions, UnsupportedByTensorRT, make_recipe


def caps(version, dla=None):
    trt = make_trt_module(version, num_dla_cores=dla or 0)
    return probe(trt, builder=trt.Builder(trt.Logger()) if dla is not None else None)


# version, precision -> (network flags, builder flags, calibrator)
TABLE = {
    ("8.6.1", "fp32"): (("EXPLICIT_BATCH",), (), False),
    ("8.6.1", "fp16"): (("EXPLICIT_BATCH",), ("FP16",), False),
    # weakly typed INT8 sets FP16 too: layers left in float would run in FP32 (trtexec 8.6 logs that hint itself)
    ("8.6.1", "int8"): (("EXPLICIT_BATCH",), ("INT8", "FP16"), False),
    ("8.6.1", "int8-implicit"): (("EXPLICIT_BATCH",), ("INT8", "FP16"), True),
    ("10.3.0", "fp32"): (("STRONGLY_TYPED",), (), False),
    ("10.3.0", "fp16"): (("STRONGLY_TYPED",), (), False),
    ("10.3.0", "int8"): (("STRONGLY_TYPED",), (), False),
    ("10.3.0", "int8-implicit"): ((), ("INT8", "FP16"), True),
    ("10.16", "fp16"): (("STRONGLY_TYPED",), (), False),
    ("10.16", "int8"): (("STRONGLY_TYPED",), (), False),
    ("10.16", "int8-implicit"): ((), ("INT8", "FP16"), True),
    # 11: strongly typed always; the deprecated STRONGLY_TYPED flag is not passed (it warns)
    ("11.1", "fp32"): ((), (), False),
    ("11.1", "fp16"): ((), (), False),
    ("11.1", "int8"): ((), (), False),
}


@pytest.mark.parametrize("version,precision", sorted(TABLE))
def test_recipe_table(version, precision):
    net, flags, calib = TABLE[(version, precision)]
    r = make_recipe(caps(version), precision, has_calib_cache=precision == "int8-implicit")
    assert r.network_flags == net and r.builder_flags == flags and r.calibrator is calib
    assert r.strongly_typed is (version != "8.6.1" and precision != "int8-implicit")
    assert r.calibration_profile is calib and r.device == "GPU" and r.tensorrt == make_trt_module(version).__version__
    if precision == "int8-implicit" and version != "8.6.1":
        assert any("deprecated" in w and "TensorRT 11" in w for w in r.warnings)
    else:
        assert r.warnings == ()
    assert not r.profile_pinned and r.profile_for(PROFILE) is PROFILE


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
    flags = (flag, "FP16") if flag == "INT8" else (flag,)  # INT8 on DLA with FP16: float layers stay on the DLA
    assert r.builder_flags == flags + ("GPU_FALLBACK",) and "STRONGLY_TYPED" not in r.network_flags
    r2 = make_recipe(caps(version, dla=2), precision, EngineBuildOptions(dla_core=0, gpu_fallback=False))
    assert r2.builder_flags == flags
    # DLA needs a static shape: the profile is pinned to the export's opt shape
    assert r.profile_pinned and r.profile_for(PROFILE) == ShapeProfile(PROFILE.opt, PROFILE.opt, PROFILE.opt, 16)
    assert any("pinned to the opt shape" in n for n in r.notes)


def test_dla_on_11_is_strongly_typed():
    r = make_recipe(caps("11.1", dla=2), "int8", EngineBuildOptions(dla_core=0))
    assert r.network_flags == () and r.strongly_typed and r.builder_flags == ("GPU_FALLBACK",) and r.device == "DLA"


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


# ------------------------------------------------------------------------------------------ targets (one engine)
def target_caps(text):
    from segdeploy.trt.capabilities import for_target
    from segdeploy.trt.versions import resolve_target

    return for_target(resolve_target(text))


@pytest.mark.parametrize("target,ok", [("10.3.0", False), ("10.8.0", False), ("10.9.0", True), ("10.13.3", True),
                                       ("11.x", True)])
def test_same_compute_capability_from_10_9_on_targets(target, ok):
    """trtexec 10.3-10.8: "Valid options: none, ampere+" (sampleOptions.cpp); 10.9 added sameComputeCapability."""
    opts = EngineBuildOptions(hardware_compatibility="same-compute-capability")
    if ok:
        assert make_recipe(target_caps(target), "fp16", opts).hardware_compatibility == "SAME_COMPUTE_CAPABILITY"
    else:
        with pytest.raises(UnsupportedByTensorRT, match="no hardware compatibility level same-compute-capability"):
            make_recipe(target_caps(target), "fp16", opts)


def test_a_range_target_refuses_what_only_some_versions_have_and_says_to_give_the_version():
    opts = EngineBuildOptions(hardware_compatibility="same-compute-capability")
    with pytest.raises(UnsupportedByTensorRT) as e:
        make_recipe(target_caps("10.x"), "fp16", opts)  # 10.4-10.8 reject it, 10.9+ have it
    assert "give the device's exact TensorRT with --trt-target (e.g. 10.13.3)" in e.value.message
    with pytest.raises(UnsupportedByTensorRT) as e:
        make_recipe(target_caps("11.x"), "int8-implicit", has_calib_cache=True)  # no 11 has it: no such hint
    assert "exact TensorRT" not in e.value.message and "model.int8.onnx" in e.value.message


@pytest.mark.parametrize("target", ["10.x", "10.13", "jetpack-7.0"])
def test_int8_implicit_on_a_range_needs_the_exact_version(target):
    """The cache header names one version; a range cannot say which (defect 3: 10.x skipped the check)."""
    with pytest.raises(UnsupportedByTensorRT, match=r"not one version; give the device's exact version .*10\.13\.3"):
        make_recipe(target_caps(target), "int8-implicit", has_calib_cache=True)
    # a header stamped where the build runs (the bundle's build.sh) is fine for any member of the range
    from segdeploy.trt.recipe import CacheHeader

    r = make_recipe(target_caps(target), "int8-implicit", calib_cache=CacheHeader(stamped=True))
    assert r.calibrator and r.calib_cache_code is None and r.calib_header_rewrite_from is None


@pytest.mark.parametrize("target,code", [("8.6", 8602), ("8.6.1", 8601), ("10.3", 100300), ("10.13.3", 101303),
                                         ("jetpack-6.2", 100300)])
def test_the_cache_header_follows_an_exact_target(target, code):
    from segdeploy.trt.recipe import CacheHeader, CalibrationCacheMismatch

    r = make_recipe(target_caps(target), "int8-implicit", calib_cache=CacheHeader(code))
    assert r.calib_cache_code == code and r.calib_header_rewrite_from is None
    other = 100300 if code != 100300 else 8602
    with pytest.raises(CalibrationCacheMismatch, match=f"reads only TRT-{code}.*--rewrite-calib-header"):
        make_recipe(target_caps(target), "int8-implicit", calib_cache=CacheHeader(other))


@pytest.mark.parametrize("target,ok", [("8.6", True), ("10.3", True), ("10.7.0", True), ("10.8.0", False),
                                       ("10.x", False), ("10.13.3", False), ("11.1.0", False), ("11.4.1", True)])
def test_dla_per_target_version(target, ok):
    """DLA: 8.6-10.7 and 11.4.1+ (JetPack 7.2.2+); 10.8-11.4.0 have none."""
    opts = EngineBuildOptions(dla_core=0)
    if ok:
        assert make_recipe(target_caps(target), "fp16", opts).device == "DLA"
    else:
        with pytest.raises(UnsupportedByTensorRT, match="no DLA support"):
            make_recipe(target_caps(target), "fp16", opts)


def test_calibration_cache_only_for_int8_implicit():
    with pytest.raises(UsageError, match="only used by precision int8-implicit"):
        make_recipe(target_caps("10.3"), "int8", has_calib_cache=True)


@pytest.mark.parametrize("target,code,noted", [("8.6", 8602, False), ("10.3", 100300, False),
                                               ("jetpack-6.2", 100300, False), ("10.13.3", 101303, False),
                                               ("11.4.1", 110401, False), ("11.x", 110401, True),
                                               ("10.x", 101303, True), ("jetpack-7.0", 101303, True)])
def test_the_header_calibrate_writes_follows_the_target(target, code, noted):
    """calibrate's header: an exact target's own; a range's example version, with a note that implicit INT8 needs
    the exact version (the build refuses or rewrites a cache for another version; Q/DQ never reads the header)."""
    from segdeploy.trt.versions import cache_header_code, resolve_target

    got, note = cache_header_code(resolve_target(target))
    assert got == code and (note is not None) is noted
    if noted:
        assert "give the device's exact version with --trt-target" in note


def test_the_default_is_one_fact():
    from segdeploy.trt.versions import (
        DEFAULT_CALIB_CACHE_VERSION,
        DEFAULT_TARGET,
        resolve_target,
    )

    assert resolve_target(DEFAULT_TARGET).version == DEFAULT_CALIB_CACHE_VERSION == "10.3.0"
