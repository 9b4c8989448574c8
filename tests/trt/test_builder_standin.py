"""build_engine against the strict stand-in: the calls segdeploy makes per TensorRT version, in order.

The stand-in never produces a plan: every build that gets that far ends with EngineBuildError carrying the
stand-in's "no build" marker, which the tests check -- so nothing here pretends an engine was built.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
from trt_helpers import PROFILE
from standin import NO_BUILD, make_trt_module

from segdeploy.errors import ArtifactError, UsageError
from segdeploy.trt.builder import BuildResult, EngineBuildError, GpuInfo, TimingCacheUse, build_engine
from segdeploy.trt.calibrator import CalibrationCacheMismatch
from segdeploy.trt.recipe import EngineBuildOptions, UnsupportedByTensorRT
from segdeploy.trt.timing_cache import TimingCacheFile, gpu_key


def this_gpu():
    """The GPU key the builder uses on this machine ("unknown-gpu" without CUDA)."""
    from segdeploy.trt.builder import gpu_info

    g = gpu_info()
    return gpu_key(g.name, g.compute_capability)


def run_build(trt, onnx_path, precision="fp32", **kw):
    """build_engine until the stand-in's refusal; returns the recorded calls."""
    with pytest.raises(EngineBuildError) as e:
        build_engine(onnx_path, "input", PROFILE, precision, trt_module=trt, **kw)
    assert NO_BUILD in e.value.message and "\n" not in e.value.message
    assert "[ERROR] " + NO_BUILD in e.value.log  # the full log travels with the error (for --verbose)
    return trt._standin


def names_of(state, call):
    return [[getattr(a, "name", a) for a in args] for args, _ in state.called(call)]


@pytest.mark.parametrize("version,precision,net_names,net_value,flags", [
    ("8.6.1", "fp32", ["EXPLICIT_BATCH"], 1, []),
    ("8.6.1", "fp16", ["EXPLICIT_BATCH"], 1, ["FP16"]),
    ("8.6.1", "int8", ["EXPLICIT_BATCH"], 1, ["INT8"]),
    ("10.3.0", "fp32", ["STRONGLY_TYPED"], 2, []),
    ("10.3.0", "fp16", ["STRONGLY_TYPED"], 2, []),
    ("10.3.0", "int8", ["STRONGLY_TYPED"], 2, []),
    ("10.16", "fp16", ["STRONGLY_TYPED"], 2, []),
    ("10.16", "int8", ["STRONGLY_TYPED"], 2, []),
    ("11.1", "fp32", ["STRONGLY_TYPED"], 1, []),
    ("11.1", "fp16", ["STRONGLY_TYPED"], 1, []),
    ("11.1", "int8", ["STRONGLY_TYPED"], 1, []),
])
def test_network_flags_builder_flags_and_profile(onnx_dir, version, precision, net_names, net_value, flags):
    trt = make_trt_module(version)
    st = run_build(trt, onnx_dir / "model.onnx", precision,
                   options=EngineBuildOptions(workspace_mib=512, optimization_level=4))
    (args, _), = st.called("Builder.create_network")
    assert args == (net_value,)
    # by name: the bits set are exactly the recipe's flags, decoded with this version's own enum values
    ndcf = trt.NetworkDefinitionCreationFlag
    assert sorted(n for n in ndcf.__members__ if args[0] & (1 << int(getattr(ndcf, n)))) == net_names
    assert [a[0] for a in names_of(st, "IBuilderConfig.set_flag")] == flags
    (args, _), = st.called("IOptimizationProfile.set_shape")
    assert args == ("input", PROFILE.min, PROFILE.opt, PROFILE.max)
    assert len(st.called("IBuilderConfig.add_optimization_profile")) == 1
    assert names_of(st, "IBuilderConfig.set_memory_pool_limit") == [["WORKSPACE", 512 << 20]]
    assert st.called("IBuilderConfig.builder_optimization_level=") == [((4,), {})]
    assert st.called("init_libnvinfer_plugins") and not st.called("IBuilderConfig.int8_calibrator=")
    order = st.names()
    assert order.index("init_libnvinfer_plugins") < order.index("Builder.__init__") \
        < order.index("OnnxParser.parse_from_file") < order.index("Builder.build_serialized_network")


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "10.16"])
def test_int8_implicit_serves_the_cache_through_a_calibrator(onnx_dir, write_cache, version):
    trt = make_trt_module(version)
    cache = write_cache(version)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        st = run_build(trt, onnx_dir / "model.onnx", "int8-implicit", calib_cache=cache)
    deprecated = [str(x.message) for x in w if issubclass(x.category, DeprecationWarning)]
    # 10.x wraps int8_calibrator / set_calibration_profile as deprecated; 8.6 does not
    assert bool(deprecated) is (version != "8.6.1")
    assert [a[0] for a in names_of(st, "IBuilderConfig.set_flag")] == ["INT8"]
    (args, _), = st.called("Builder.create_network")
    assert args == ((1,) if version == "8.6.1" else (0,))  # weakly typed: no STRONGLY_TYPED on 10.x
    (args, _), = st.called("IBuilderConfig.int8_calibrator=")
    assert isinstance(args[0], trt.IInt8EntropyCalibrator2)
    (args, _), = st.called("calibrator.read_calibration_cache->")
    assert args == (cache.read_bytes(),)  # TensorRT got the file's bytes
    (cp, _), = st.called("IBuilderConfig.set_calibration_profile")
    assert cp[0]._s["shapes"]["input"] == (PROFILE.opt, PROFILE.opt, PROFILE.opt)


def test_int8_implicit_refused_on_11_before_any_tensorrt_object(onnx_dir, write_cache):
    trt = make_trt_module("11.1")
    with pytest.raises(UnsupportedByTensorRT, match=r"TensorRT 11\.1\.0\.0 .*model\.int8\.onnx"):
        build_engine(onnx_dir / "model.onnx", "input", PROFILE, "int8-implicit", trt_module=trt,
                     calib_cache=write_cache("10.3"))
    assert trt._standin.calls == []


def test_calibration_cache_version_checked_before_building(onnx_dir, write_cache):
    trt = make_trt_module("8.6.1")
    cache = write_cache("10.3")
    with pytest.raises(CalibrationCacheMismatch) as e:
        build_engine(onnx_dir / "model.onnx", "input", PROFILE, "int8-implicit", trt_module=trt, calib_cache=cache)
    msg = e.value.message
    assert "TensorRT 10.3.0 (TRT-100300)" in msg and "TensorRT 8.6.1.0 is installed (TRT-8601)" in msg
    assert "--rewrite-calib-header" in msg and "segdeploy calibrate --trt-version 8.6.1" in msg
    assert trt._standin.calls == []
    st = run_build(trt, onnx_dir / "model.onnx", "int8-implicit", calib_cache=cache,
                   options=EngineBuildOptions(rewrite_calib_header=True))
    (args, _), = st.called("calibrator.read_calibration_cache->")
    assert args[0].split(b"\n")[0] == b"TRT-8601-EntropyCalibration2"
    assert cache.read_text().splitlines()[0] == "TRT-100300-EntropyCalibration2"  # the file is untouched


def test_plugin_library_loaded_before_parsing(onnx_dir, plugin_lib):
    trt = make_trt_module("10.3.0")
    st = run_build(trt, onnx_dir / "model.trt.onnx", "fp16", plugin_library=plugin_lib)
    order = st.names()
    assert order.index("IPluginRegistry.load_library") < order.index("Builder.create_network") \
        < order.index("OnnxParser.parse_from_file")
    assert st.called("IPluginRegistry.load_library") == [((str(plugin_lib),), {})]
    creators = sorted(a for a, _ in st.called("IPluginRegistry.get_creator"))
    assert creators == [("SegdeployMaxPoolWithIndices", "1", "segdeploy"), ("SegdeployMaxUnpool", "1", "segdeploy")]


def test_plugin_parse_fails_without_the_library_loaded_first(onnx_dir, plugin_lib):
    # the stand-in parser resolves plugin nodes only through creators registered before parsing
    trt = make_trt_module("10.16", plugin_creators=())
    with pytest.raises(EngineBuildError, match="does not provide SegdeployMaxPoolWithIndices, SegdeployMaxUnpool"):
        build_engine(onnx_dir / "model.trt.onnx", "input", PROFILE, trt_module=trt, plugin_library=plugin_lib)
    assert "OnnxParser.parse_from_file" not in trt._standin.names()


def test_plugin_model_needs_the_library_and_iplugin_v3(onnx_dir, plugin_lib):
    with pytest.raises(UsageError, match=r"plugin nodes \(SegdeployMaxPoolWithIndices, SegdeployMaxUnpool\).*"
                                         "segdeploy plugins build"):
        build_engine(onnx_dir / "model.trt.onnx", "input", PROFILE, trt_module=make_trt_module("10.3.0"))
    trt = make_trt_module("8.6.1")
    with pytest.raises(UnsupportedByTensorRT, match="no IPluginV3"):
        build_engine(onnx_dir / "model.trt.onnx", "input", PROFILE, trt_module=trt, plugin_library=plugin_lib)
    assert trt._standin.calls == []


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "11.1"])
def test_parser_error_names_node_op_and_fix(onnx_dir, version):
    trt = make_trt_module(version)  # default: MaxUnpool and MaxPool's Indices output are unsupported
    with pytest.raises(EngineBuildError) as e:
        build_engine(onnx_dir / "unpool.onnx", "input", PROFILE, trt_module=trt)
    msg = e.value.message
    # 8.6 has no ParserError.node_name(): the node comes from the error's node index
    assert f"TensorRT {trt.__version__} cannot parse unpool.onnx: node pool1 (MaxPool)" in msg
    assert "model.trt.onnx with the plugin library" in msg and "(+" not in msg
    assert "Builder.build_serialized_network" not in trt._standin.names()


def test_maxunpool_fix(onnx_dir):
    trt = make_trt_module("10.16", unsupported_ops={"MaxUnpool"})
    with pytest.raises(EngineBuildError, match=r"node unpool1 \(MaxUnpool\): .*use model\.trt\.onnx with the plugin "
                                               "library"):
        build_engine(onnx_dir / "unpool.onnx", "input", PROFILE, trt_module=trt)


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_dla_only_when_the_builder_reports_cores(onnx_dir, version):
    trt = make_trt_module(version, num_dla_cores=2)
    st = run_build(trt, onnx_dir / "model.onnx", "fp16", options=EngineBuildOptions(dla_core=1))
    assert names_of(st, "IBuilderConfig.default_device_type=") == [["DLA"]]
    assert st.called("IBuilderConfig.DLA_core=") == [((1,), {})]
    assert [a[0] for a in names_of(st, "IBuilderConfig.set_flag")] == ["FP16", "GPU_FALLBACK"]
    trt0 = make_trt_module(version, num_dla_cores=0)
    with pytest.raises(UnsupportedByTensorRT, match="num_DLA_cores = 0"):
        build_engine(onnx_dir / "model.onnx", "input", PROFILE, "fp16", EngineBuildOptions(dla_core=0), trt_module=trt0)
    assert "Builder.create_network" not in trt0._standin.names()  # refused right after asking the builder


def test_compatibility_options_reach_the_config(onnx_dir, plugin_lib):
    trt = make_trt_module("10.16")
    opts = EngineBuildOptions(version_compatible=True, hardware_compatibility="ampere+")
    st = run_build(trt, onnx_dir / "model.trt.onnx", "fp16", options=opts, plugin_library=plugin_lib)
    assert [a[0] for a in names_of(st, "IBuilderConfig.set_flag")] == ["VERSION_COMPATIBLE"]
    assert names_of(st, "IBuilderConfig.hardware_compatibility_level=") == [["AMPERE_PLUS"]]
    assert st.called("IBuilderConfig.plugins_to_serialize=") == [(([str(plugin_lib)],), {})]
    assert names_of(st, "OnnxParser.set_flag") == [["NATIVE_INSTANCENORM"]]


def test_version_compatible_on_86_sets_native_instancenorm(onnx_dir):
    st = run_build(make_trt_module("8.6.1"), onnx_dir / "model.onnx", options=EngineBuildOptions(version_compatible=True))
    assert names_of(st, "OnnxParser.set_flag") == [["NATIVE_INSTANCENORM"]]
    assert [a[0] for a in names_of(st, "IBuilderConfig.set_flag")] == ["VERSION_COMPATIBLE"]
    assert not run_build(make_trt_module("8.6.1"), onnx_dir / "model.onnx").called("OnnxParser.set_flag")


def test_no_gpu_stops_at_the_builder(onnx_dir):
    trt = make_trt_module("10.3.0", cuda=False)
    with pytest.raises(EngineBuildError, match=r"could not create a builder: createInferBuilder: .*CUDA initialization "
                                               r"failure.*NVIDIA GPU"):
        build_engine(onnx_dir / "model.onnx", "input", PROFILE, trt_module=trt)
    assert "Builder.create_network" not in trt._standin.names()


def test_input_checks(onnx_dir):
    trt = make_trt_module("10.3.0")
    with pytest.raises(ArtifactError, match=r"no input named 'image' \(inputs: input\)"):
        build_engine(onnx_dir / "model.onnx", "image", PROFILE, trt_module=trt)
    with pytest.raises(ArtifactError, match=r"static H of 64 but the profile asks for 64\.\.256"):
        build_engine(onnx_dir / "static.onnx", "input", PROFILE, trt_module=make_trt_module("10.3.0"))
    with pytest.raises(ArtifactError, match="not found"):
        build_engine(onnx_dir / "missing.onnx", "input", PROFILE, trt_module=trt)
    with pytest.raises(UsageError, match="only used by precision int8-implicit"):
        build_engine(onnx_dir / "model.onnx", "input", PROFILE, "int8", trt_module=trt, calib_cache="x.cache")


def test_timing_cache_is_loaded_into_the_config(onnx_dir, tmp_path):
    trt = make_trt_module("10.3.0")
    # the file for this TensorRT + this machine's GPU: a previous build's cache
    TimingCacheFile(tmp_path, trt.__version__, this_gpu()).save(b"previous-timing-blob")
    st = run_build(trt, onnx_dir / "model.onnx", timing_cache_dir=tmp_path)
    assert st.called("IBuilderConfig.create_timing_cache") == [((b"previous-timing-blob",), {})]
    (args, _), = st.called("IBuilderConfig.set_timing_cache")
    assert args[0]._s["data"] == b"previous-timing-blob" and args[1] is False
    # a cache from another TensorRT version in the same place is not handed to TensorRT
    trt2 = make_trt_module("10.16")
    TimingCacheFile(tmp_path, "10.3.0.0", this_gpu()).path.rename(
        TimingCacheFile(tmp_path, trt2.__version__, this_gpu()).path)
    st2 = run_build(trt2, onnx_dir / "model.onnx", timing_cache_dir=tmp_path)
    assert st2.called("IBuilderConfig.create_timing_cache") == [((b"",), {})]


BUILDER_OBJECTS = {"builder": "Builder", "config": "IBuilderConfig", "network": "INetworkDefinition",
                   "parser": "OnnxParser", "err": "ParserError", "registry": "IPluginRegistry", "t": "ITensor",
                   "p": "IOptimizationProfile", "cp": "IOptimizationProfile"}
# used only behind a capability check (absent where the probe says so)
GUARDED = {("IBuilderConfig", "int8_calibrator"): "calibrator_api",
           ("IBuilderConfig", "set_calibration_profile"): "calibration_profile",
           ("ParserError", "node_name"): "parser_error_node_info",
           ("ParserError", "node_operator"): "parser_error_node_info",
           ("IPluginRegistry", "get_creator"): "plugin_get_creator"}


def test_every_member_the_builder_uses_exists_where_it_is_used():
    """A typo or a member missing in some version fails here, even on paths the stand-in runs never reach."""
    import re

    import segdeploy.trt.builder as mod
    from standin import SURFACE

    from segdeploy.trt.capabilities import probe

    src = open(mod.__file__).read()
    uses = {("ITimingCache", "serialize")} if "get_timing_cache().serialize()" in src else set()
    for var, cls in BUILDER_OBJECTS.items():
        uses |= {(cls, m) for m in re.findall(rf"(?<![\w.]){var}\.([A-Za-z_]\w*)", src)}
    assert ("IBuilderConfig", "set_flag") in uses and ("OnnxParser", "parse_from_file") in uses
    for version, v in SURFACE["versions"].items():
        caps = probe(make_trt_module(version))
        for cls, member in sorted(uses):
            present = member in {m.removesuffix("!D") for m in v["classes"][cls]["members"]}
            guard = GUARDED.get((cls, member))
            if guard is None:
                assert present, f"{cls}.{member} is not in TensorRT {version}'s Python API"
            else:
                assert present is getattr(caps, guard), f"{cls}.{member} vs capability {guard} in {version}"


def test_post_build_bookkeeping_with_a_handcrafted_plan_header(onnx_dir, tmp_path, monkeypatch):
    """The code after build_serialized_network (info dict, timing-cache save) on a handcrafted plan *header*.

    The stand-in never builds; this test alone replaces its build call with the 28-byte header layout + zero
    padding (no engine, nothing runs it) to check segdeploy's bookkeeping: plan bytes passed through unchanged,
    the info dict is JSON-able and complete, and the timing cache TensorRT serializes is saved for the next build.
    """
    import json

    from trt_helpers import plan_bytes

    trt = make_trt_module("10.3.0", version_string="10.3.0.26")
    header = plan_bytes((10, 3, 0, 26), size=4096)
    monkeypatch.setattr(trt.Builder, "build_serialized_network", lambda self, network, config: header)
    monkeypatch.setattr(trt.ITimingCache, "serialize", lambda self: self._s["data"] + b"+new-timings")
    res = build_engine(onnx_dir / "model.onnx", "input", PROFILE, "fp16", EngineBuildOptions(workspace_mib=64),
                       trt_module=trt, timing_cache_dir=tmp_path / "tc", verbose=True)
    assert res.plan == header  # plain plan bytes: no segdeploy header in front
    # typed fields
    assert isinstance(res, BuildResult) and res.precision == "fp16" and res.bytes == 4096
    assert res.tensorrt_version == "10.3.0.26" and res.plan_header == (10, 3, 0, 26)
    assert res.recipe.precision == "fp16" and res.recipe.workspace_bytes == 64 << 20
    assert res.options == EngineBuildOptions(workspace_mib=64) and res.profile == PROFILE and res.input_name == "input"
    assert res.plugins is None and res.calibration_cache is None and isinstance(res.timing_cache, TimingCacheUse)
    assert res.timing_cache.reused is False and res.build_seconds == res.timings.total_s >= res.timings.build_s
    assert isinstance(res.gpu, GpuInfo) and isinstance(res.log, str) and all(isinstance(w, str) for w in res.warnings)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.precision = "fp32"  # type: ignore[misc]
    # the JSON-able record
    info = json.loads(json.dumps(res.to_dict()))
    assert info["tensorrt"] == {"version": "10.3.0.26", "module": "tensorrt", "plan_header": [10, 3, 0, 26]}
    assert info["flags"] == {"network": ["STRONGLY_TYPED"], "network_value": 2, "builder": [], "parser": []}
    assert info["recipe"]["precision"] == "fp16" and info["recipe"]["workspace_bytes"] == 64 << 20
    assert info["profile"]["max"] == [8, 3, 256, 256] and info["source_onnx"] == "model.onnx"
    assert len(info["source_sha256"]) == 64 and info["bytes"] == 4096 and info["gpu"].keys() == {"name", "compute_capability"}
    assert info["timing_cache"]["reused"] is False and info["plugins"] is None and isinstance(info["log"], str)
    assert set(info["timings"]) == {"parse_s", "build_s", "total_s"}
    saved = TimingCacheFile(tmp_path / "tc", "10.3.0.26", this_gpu())
    assert saved.load() == b"+new-timings" and saved.path.name == info["timing_cache"]["file"].rsplit("/", 1)[-1]
