"""Capability detection against the strict stand-in generated from each version's recorded API surface."""

from __future__ import annotations

import pytest
from standin import VERSIONS, StandinError, make_trt_module

from segdeploy.trt.capabilities import (
    for_target,
    from_version,
    network_flags_value,
    probe,
)
from segdeploy.trt.versions import resolve_target

EXPECTED = {
    # version: (explicit_batch_required, strongly_typed, mandatory, fp16/int8 flags, calibrator, calib profile,
    #           IPluginV3, get_creator, parser node info, hardware compatibility levels)
    "8.6.1": (True, False, False, True, True, True, False, False, False, ("AMPERE_PLUS", "NONE")),
    "10.3.0": (False, True, False, True, True, True, True, True, True, ("AMPERE_PLUS", "NONE")),
    "10.13.3": (False, True, False, True, True, True, True, True, True,
                ("AMPERE_PLUS", "NONE", "SAME_COMPUTE_CAPABILITY")),
    "10.16": (False, True, False, True, True, True, True, True, True, ("AMPERE_PLUS", "NONE", "SAME_COMPUTE_CAPABILITY")),
    "11.1": (False, True, True, False, False, False, True, True, True, ("AMPERE_PLUS", "NONE", "SAME_COMPUTE_CAPABILITY")),
}


def test_the_recorded_versions_are_the_ones_the_tests_need():
    assert set(VERSIONS) == set(EXPECTED)


@pytest.mark.parametrize("version", sorted(EXPECTED))
def test_probe_per_version(version):
    trt = make_trt_module(version)
    caps = probe(trt)
    (eb_req, st, mandatory, weak, calib, calib_prof, v3, get_creator, node_info, hw) = EXPECTED[version]
    assert caps.version == trt.__version__ and caps.module == "tensorrt"
    assert caps.can_build
    assert caps.explicit_batch_required is eb_req
    assert caps.explicit_batch_flag is (version != "11.1")  # EXPLICIT_BATCH is gone in 11
    assert caps.strongly_typed is st and caps.strongly_typed_mandatory is mandatory
    assert caps.fp16_flag is weak and caps.int8_flag is weak and caps.weak_typing is weak
    assert caps.calibrator_api is calib and caps.implicit_int8 is calib
    assert caps.calibration_profile is calib_prof
    assert caps.plugin_v3 is v3 and caps.plugin_get_creator is get_creator and caps.plugin_load_library
    assert caps.parser_error_node_info is node_info
    assert caps.hardware_compatibility_levels == hw
    assert caps.dla_api and caps.version_compatible and caps.exclude_lean_runtime
    assert caps.timing_cache and caps.optimization_level and caps.memory_pool_limit and caps.plugins_to_serialize
    assert caps.engine_host_code and caps.load_runtime and caps.execute_async_v3 and caps.tensor_api
    assert caps.dla_cores is None  # no builder given: unknown, not 0


@pytest.mark.parametrize("version,cores", [("8.6.1", 2), ("10.3.0", 0), ("11.1", 1)])
def test_dla_cores_come_from_the_builder(version, cores):
    trt = make_trt_module(version, num_dla_cores=cores)
    caps = probe(trt, builder=trt.Builder(trt.Logger()))
    assert caps.dla_cores == cores


@pytest.mark.parametrize("version,names,value", [
    ("8.6.1", ["EXPLICIT_BATCH"], 1),
    ("10.3.0", ["STRONGLY_TYPED"], 2),  # bit 1 in 10.x
    ("10.16", ["STRONGLY_TYPED"], 2),
    ("11.1", ["STRONGLY_TYPED"], 1),  # renumbered: bit 0 in 11.x
    ("10.3.0", ["EXPLICIT_BATCH", "STRONGLY_TYPED"], 3),
    ("10.3.0", [], 0),
])
def test_network_flags_use_the_modules_own_enum_values(version, names, value):
    assert network_flags_value(make_trt_module(version), names) == value


def test_standin_is_strict():
    trt = make_trt_module("11.1")
    with pytest.raises(AttributeError):
        trt.IInt8EntropyCalibrator2  # removed in 11
    with pytest.raises(AttributeError):
        trt.BuilderFlag.FP16
    with pytest.raises(AttributeError):
        trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    cfg = trt.Builder(trt.Logger()).create_builder_config()
    with pytest.raises(AttributeError):
        cfg.int8_calibrator = object()  # not a member in 11.1: pybind11 refuses unknown attributes
    assert int(trt.BuilderFlag.VERSION_COMPATIBLE) == 12
    assert int(make_trt_module("10.3.0").BuilderFlag.VERSION_COMPATIBLE) == 13
    assert int(make_trt_module("8.6.1").BuilderFlag.VERSION_COMPATIBLE) == 15
    with pytest.raises(StandinError):  # recorded but not simulated: never silently "works"
        trt.Builder(trt.Logger()).reset()
    with pytest.raises(StandinError):  # Severity values are not in the recorded surface
        int(trt.ILogger.Severity.ERROR)
    assert trt.ILogger.ERROR is trt.ILogger.Severity.ERROR  # export_values(), as in pyCore.cpp


def test_lean_runtime_module_cannot_build():
    lean = pytest.importorskip("tensorrt_lean_bindings", reason="tensorrt-lean-cu12-bindings is not installed")
    caps = probe(lean)
    assert not caps.can_build and caps.engine_host_code and caps.execute_async_v3 and caps.tensor_api
    assert caps.version == lean.__version__ and caps.module == "tensorrt_lean_bindings"


# what a target version can do (for_target: the printed commands, the bundle) and what a probe of that version's
# module finds: the same record, except the fields that differ by design (module, version spelling, dla_api)
BY_DESIGN = {"version", "module", "dla_api"}


@pytest.mark.parametrize("version", sorted(EXPECTED))
def test_version_facts_equal_the_probe_of_the_recorded_surface(version):
    """The two capability sources cannot drift: from_version(v) == probe(stand-in of v), field by field."""
    from dataclasses import fields

    probed = probe(make_trt_module(version))
    made = from_version(tuple(int(x) for x in (version.split(".") + ["0", "0"])[:3]))
    diff = {f.name for f in fields(probed) if getattr(probed, f.name) != getattr(made, f.name)}
    assert diff <= BY_DESIGN, {n: (getattr(probed, n), getattr(made, n)) for n in diff - BY_DESIGN}
    # every binding exposes the DLA API; TensorRT 10.8-11.4.0 cannot build for DLA (the version says so)
    assert probed.dla_api and made.dla_api is (version in ("8.6.1", "10.3.0"))


def test_a_range_has_only_what_all_its_versions_have():
    caps = for_target(resolve_target("10.x"))  # 10.4-10.16
    assert not caps.exact and caps.calib_cache_code is None and caps.describe() == "TensorRT 10.x (10.4-10.16; JetPack 7.0-7.2)"
    assert caps.hardware_compatibility_levels == ("AMPERE_PLUS", "NONE")  # sameComputeCapability only from 10.9
    assert not caps.dla_api and {"dla_api", "SAME_COMPUTE_CAPABILITY"} <= set(caps.partial)
    assert caps.implicit_int8 and caps.strongly_typed and not caps.strongly_typed_mandatory
    exact = for_target(resolve_target("10.13.3"))
    assert exact.exact and exact.calib_cache_code == 101303 and exact.partial == ()
    assert probe(make_trt_module("10.3.0", version_string="10.3.0.26")).calib_cache_code == 100300
