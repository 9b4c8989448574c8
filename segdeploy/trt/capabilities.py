"""What the imported TensorRT module can do, found by attribute and enum presence -- never by version numbers.

Enum integers were renumbered between majors (``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is 1 in 10.x and
0 in 11.x; ``BuilderFlag.VERSION_COMPATIBLE`` is 15, 13, 12 in 8.6, 10.x, 11.x), members were added and removed
(``EXPLICIT_BATCH`` gone in 11, ``BuilderFlag.FP16/INT8`` and the calibrator classes gone in 11, IPluginV3 new in
10.0), so segdeploy decides from what the module exposes and reads enum values from the module at call time.

Contract:
    ``probe(trt, builder=None) -> Capabilities`` for an imported ``tensorrt``-like module (the full
    ``tensorrt``, the lean ``tensorrt_lean_bindings`` / ``tensorrt_lean``, or a test stand-in). ``builder`` (a
    ``trt.Builder``) adds ``dla_cores`` (``builder.num_DLA_cores``); without it ``dla_cores`` is None (unknown).
    The version string is ``trt.__version__``, kept for messages, plan checks and cache headers only.
    ``network_flags_value(trt, names)`` turns flag names into the ``create_network`` bitmask using the module's
    own enum values. Pure; never raises for a missing feature (that is what the fields say).
    ``for_target(target) -> Capabilities`` is the same record for a TensorRT that is NOT imported here (a
    :class:`~segdeploy.trt.versions.Target`: the printed trtexec commands, the bundle, the static checks before an
    export): :func:`from_version` per exact version, from the per-version API tables of the project's TensorRT
    notes (the recorded Python API surface of 8.6.1 / 10.3.0 / 10.13.3 / 10.16 / 11.1, trtexec's option parser);
    for a range, a feature counts only when every version of the range has it (the endpoints: each feature
    appears or disappears once). ``tests/trt/test_capabilities.py`` holds :func:`from_version` equal to
    :func:`probe` of the recorded surfaces, so the two sources cannot drift. The one field where they differ by
    design is ``dla_api``: every binding exposes the DLA API, but TensorRT 10.8-11.4.0 cannot build for DLA
    (10.7 was the last 10.x with DLA; 11.4.1 brought it back on JetPack 7.2.2+), which a probe learns from
    ``num_DLA_cores`` and a target from its version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any


def _has(obj: Any, *names: str) -> bool:
    for n in names:
        try:
            obj = getattr(obj, n)
        except AttributeError:
            return False
    return True


def _members(enum: Any) -> tuple[str, ...]:
    """Member names of a pybind11 enum (``__members__``) or of a stand-in enum class."""
    if enum is None:
        return ()
    members = getattr(enum, "__members__", None)
    if isinstance(members, dict):
        return tuple(sorted(members))
    return tuple(sorted(n for n in dir(enum) if n.isupper() and not n.startswith("_")))


@dataclass(frozen=True)
class Capabilities:
    """Features of one imported TensorRT module (see the module docstring)."""

    version: str  # trt.__version__
    module: str  # the module's __name__
    can_build: bool  # Builder, IBuilderConfig and OnnxParser are present (not a lean/dispatch runtime)
    explicit_batch_flag: bool  # NetworkDefinitionCreationFlag.EXPLICIT_BATCH exists
    explicit_batch_required: bool  # ... and strong typing does not: 8.x, where the ONNX parser needs it
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED exists (10.x, 11.x)
    strongly_typed_mandatory: bool  # no weak-typing precision flags (11.x): every network is strongly typed
    fp16_flag: bool  # BuilderFlag.FP16
    int8_flag: bool  # BuilderFlag.INT8
    calibrator_api: bool  # IInt8EntropyCalibrator2 + IBuilderConfig.int8_calibrator (<= 10.x)
    calibration_profile: bool  # IBuilderConfig.set_calibration_profile
    plugin_v3: bool  # IPluginV3 (10.0+): segdeploy's plugin library needs it
    plugin_load_library: bool  # IPluginRegistry.load_library
    plugin_get_creator: bool  # IPluginRegistry.get_creator (10.0+: finds V3 creators)
    dla_api: bool  # IBuilderConfig.DLA_core, DeviceType.DLA, BuilderFlag.GPU_FALLBACK
    dla_cores: int | None  # builder.num_DLA_cores (None: no builder was given)
    version_compatible: bool  # BuilderFlag.VERSION_COMPATIBLE
    exclude_lean_runtime: bool  # BuilderFlag.EXCLUDE_LEAN_RUNTIME
    hardware_compatibility_levels: tuple[str, ...]  # HardwareCompatibilityLevel member names
    timing_cache: bool  # IBuilderConfig.create_timing_cache / set_timing_cache / get_timing_cache
    optimization_level: bool  # IBuilderConfig.builder_optimization_level
    memory_pool_limit: bool  # IBuilderConfig.set_memory_pool_limit + MemoryPoolType.WORKSPACE
    plugins_to_serialize: bool  # IBuilderConfig.plugins_to_serialize
    parser_error_node_info: bool  # ParserError.node_name / node_operator (10.0+)
    parser_native_instancenorm: bool  # OnnxParserFlag.NATIVE_INSTANCENORM + OnnxParser.set_flag
    engine_host_code: bool  # Runtime.engine_host_code_allowed
    load_runtime: bool  # Runtime.load_runtime (a lean runtime for version-compatible plans)
    execute_async_v3: bool  # IExecutionContext.execute_async_v3 + set_tensor_address + set_input_shape
    tensor_api: bool  # ICudaEngine.num_io_tensors / get_tensor_name / get_tensor_profile_shape
    label: str = ""  # a target's description ("TensorRT 10.x (10.4-10.16)"); "" for a probed module
    exact: bool = True  # False: a range of versions (a target such as 10.x): version-specific facts are unknown
    partial: tuple[str, ...] = ()  # a range's features only some of its versions have (field or level names)
    example_version: str = ""  # a range's exact version named in messages ("10.13.3")

    @property
    def version_tuple(self) -> tuple[int, ...]:
        out = []
        for p in self.version.split("."):
            if not p.isdigit():
                break
            out.append(int(p))
        return tuple(out)

    @property
    def weak_typing(self) -> bool:
        """Precision flags exist (8.6, 10.x): a network may be built without STRONGLY_TYPED."""
        return self.fp16_flag or self.int8_flag

    @property
    def implicit_int8(self) -> bool:
        """Cache-driven implicit INT8 is possible: calibrator API + INT8 flag."""
        return self.calibrator_api and self.int8_flag

    @property
    def calib_cache_code(self) -> int | None:
        """The ``TRT-<code>-EntropyCalibration2`` header this TensorRT reads (None: not one exact version)."""
        v = self.version_tuple
        if not self.exact or len(v) < 3:
            return None
        from segdeploy.trt.versions import trt_version_code

        return trt_version_code(".".join(map(str, v[:3])))

    def describe(self) -> str:
        if self.label:
            return self.label
        return f"TensorRT {self.version}" + ("" if self.module == "tensorrt" else f" ({self.module})")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hardware_compatibility_levels"] = list(self.hardware_compatibility_levels)
        return d


def probe(trt: Any, builder: Any = None) -> Capabilities:
    """Capabilities of ``trt`` (and ``builder.num_DLA_cores`` when a Builder is given)."""
    ndcf = getattr(trt, "NetworkDefinitionCreationFlag", None)
    bflag = getattr(trt, "BuilderFlag", None)
    cfg = getattr(trt, "IBuilderConfig", None)
    explicit_batch = _has(ndcf, "EXPLICIT_BATCH")
    strongly = _has(ndcf, "STRONGLY_TYPED")
    fp16 = _has(bflag, "FP16")
    int8 = _has(bflag, "INT8")
    dla_cores = None
    if builder is not None:
        try:
            dla_cores = int(builder.num_DLA_cores)
        except AttributeError:
            dla_cores = 0
    return Capabilities(
        version=str(getattr(trt, "__version__", "unknown")),
        module=str(getattr(trt, "__name__", "tensorrt")),
        can_build=_has(trt, "Builder") and cfg is not None and _has(trt, "OnnxParser"),
        explicit_batch_flag=explicit_batch,
        explicit_batch_required=explicit_batch and not strongly,
        strongly_typed=strongly,
        strongly_typed_mandatory=bflag is not None and not fp16 and not int8,
        fp16_flag=fp16,
        int8_flag=int8,
        calibrator_api=_has(trt, "IInt8EntropyCalibrator2") and _has(cfg, "int8_calibrator"),
        calibration_profile=_has(cfg, "set_calibration_profile"),
        plugin_v3=_has(trt, "IPluginV3"),
        plugin_load_library=_has(trt, "IPluginRegistry", "load_library"),
        plugin_get_creator=_has(trt, "IPluginRegistry", "get_creator"),
        dla_api=_has(cfg, "DLA_core") and _has(trt, "DeviceType", "DLA") and _has(bflag, "GPU_FALLBACK"),
        dla_cores=dla_cores,
        version_compatible=_has(bflag, "VERSION_COMPATIBLE"),
        exclude_lean_runtime=_has(bflag, "EXCLUDE_LEAN_RUNTIME"),
        hardware_compatibility_levels=_members(getattr(trt, "HardwareCompatibilityLevel", None))
        if _has(cfg, "hardware_compatibility_level") else (),
        timing_cache=_has(cfg, "create_timing_cache") and _has(cfg, "set_timing_cache") and _has(cfg, "get_timing_cache"),
        optimization_level=_has(cfg, "builder_optimization_level"),
        memory_pool_limit=_has(cfg, "set_memory_pool_limit") and _has(trt, "MemoryPoolType", "WORKSPACE"),
        plugins_to_serialize=_has(cfg, "plugins_to_serialize"),
        parser_error_node_info=_has(trt, "ParserError", "node_name") and _has(trt, "ParserError", "node_operator"),
        parser_native_instancenorm=_has(trt, "OnnxParserFlag", "NATIVE_INSTANCENORM") and _has(trt, "OnnxParser", "set_flag"),
        engine_host_code=_has(trt, "Runtime", "engine_host_code_allowed"),
        load_runtime=_has(trt, "Runtime", "load_runtime"),
        execute_async_v3=all(_has(trt, "IExecutionContext", m) for m in
                             ("execute_async_v3", "set_tensor_address", "set_input_shape")),
        tensor_api=all(_has(trt, "ICudaEngine", m) for m in
                       ("num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_profile_shape")),
    )


TARGET_MODULE = "target"  # Capabilities.module of a target (not an imported module)


def from_version(version: tuple[int, int, int]) -> Capabilities:
    """What TensorRT ``version`` (exact) exposes, from the per-version API tables (see the module docstring)."""
    major = version[0]

    def since(*v: int) -> bool:
        return version >= v

    return Capabilities(
        version=".".join(map(str, version)), module=TARGET_MODULE, can_build=True,
        explicit_batch_flag=major < 11,  # EXPLICIT_BATCH: removed in 11.0
        explicit_batch_required=major < 10,  # the 8.x ONNX parser asserts explicit batch; 10.x ignores the flag
        strongly_typed=major >= 10,  # STRONGLY_TYPED: 9.x on (segdeploy targets no 9.x)
        strongly_typed_mandatory=major >= 11,  # 11.0 removed the weak-typing flags
        fp16_flag=major < 11, int8_flag=major < 11, calibrator_api=major < 11, calibration_profile=major < 11,
        plugin_v3=major >= 10, plugin_load_library=True, plugin_get_creator=major >= 10,
        # DLA: 8.6-10.7, and again from 11.4.1 (JetPack 7.2.2+, strongly typed); none in 10.8-11.4.0
        dla_api=(version <= (10, 7, 99)) or since(11, 4, 1), dla_cores=None,
        version_compatible=True, exclude_lean_runtime=True,
        hardware_compatibility_levels=("AMPERE_PLUS", "NONE") + (("SAME_COMPUTE_CAPABILITY",) if since(10, 9) else ()),
        timing_cache=True, optimization_level=True, memory_pool_limit=True, plugins_to_serialize=True,
        parser_error_node_info=major >= 10, parser_native_instancenorm=True, engine_host_code=True, load_runtime=True,
        execute_async_v3=True, tensor_api=True,
    )


def for_target(target: Any) -> Capabilities:
    """Capabilities of a :class:`~segdeploy.trt.versions.Target` (a range has what all of its versions have)."""
    lo, hi = from_version(target.low), from_version(target.high)
    merged: dict[str, Any] = {}
    partial: list[str] = []
    for f in fields(Capabilities):
        a, b = getattr(lo, f.name), getattr(hi, f.name)
        if isinstance(a, bool):
            merged[f.name] = a and b
            if a != b:
                partial.append(f.name)
        elif f.name == "hardware_compatibility_levels":
            merged[f.name] = tuple(x for x in a if x in b)
            partial += sorted(set(a) ^ set(b))
        else:
            merged[f.name] = a
    merged.update(version=target.version, label=target.description,
                  exact=target.exact, partial=tuple(partial), example_version=target.example_version)
    return Capabilities(**merged)


def network_flags_value(trt: Any, names: Iterable[str]) -> int:
    """``create_network`` bitmask for flag names, from the module's own enum values (``1 << int(flag)``)."""
    value = 0
    for n in names:
        value |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, n))
    return value


def enum_member(trt: Any, enum: str, name: str) -> Any:
    """``trt.<enum>.<name>``; AttributeError (with both names) when this TensorRT lacks it."""
    try:
        return getattr(getattr(trt, enum), name)
    except AttributeError:
        raise AttributeError(f"{getattr(trt, '__name__', 'tensorrt')} has no {enum}.{name}") from None
