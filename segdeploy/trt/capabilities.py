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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable


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

    def describe(self) -> str:
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
