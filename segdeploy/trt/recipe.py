"""Precision + options -> a build recipe for the installed TensorRT (decided from its capabilities).

Precisions and the ONNX each builds from (names from :mod:`segdeploy.exportdir`):

========== ================================== ===============================================================
precision  ONNX                               recipe
========== ================================== ===============================================================
fp32       model.onnx (model.trt.onnx when     8.6: EXPLICIT_BATCH. 10.x/11.x: STRONGLY_TYPED (the ONNX's types)
           the model needs plugins)
fp16       model.fp16.onnx                    8.6: EXPLICIT_BATCH + FP16 flag. 10.x/11.x: STRONGLY_TYPED, no flag
int8       model.int8.onnx (explicit Q/DQ)    8.6: EXPLICIT_BATCH + INT8 flag. 10.x/11.x: STRONGLY_TYPED, no flag
int8-      model.onnx + model.calib.cache     8.6/10.x: INT8 flag + cache-only calibrator + calibration profile
implicit                                      (weakly typed; deprecated from 10.1 with a warning). 11.x: refused
========== ================================== ===============================================================

On TensorRT 11 STRONGLY_TYPED is a retained no-op (every network is strongly typed); it is still passed so the
network flags say what the engine is. DLA (``dla_core``): only where the API exists and the builder reports
``num_DLA_cores > 0``; FP16/INT8 only, weakly typed where precision flags exist (DLA needs them), with
``GPU_FALLBACK`` unless disabled. Version-compatible, exclude-lean-runtime, hardware-compatibility level,
workspace limit and builder optimization level map to the config only where the installed TensorRT has them;
version- or hardware-compatible builds also set the parser's NATIVE_INSTANCENORM flag (off by default in 8.6).

Contract: ``make_recipe(caps, precision, options, needs_plugins=..., has_calib_cache=...) -> Recipe`` is pure
(no TensorRT calls). Anything the installed TensorRT cannot do raises :class:`UnsupportedByTensorRT` (a
UsageError, exit 2), one line naming the version and the alternative; bad option values raise UsageError.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from segdeploy.errors import UsageError
from segdeploy.trt.capabilities import Capabilities
from segdeploy.vocab import CALIB_CACHE, FP16_ONNX, INT8_ONNX, MODEL_ONNX, TRT_ONNX, Precision

SOURCE_ONNX = {
    Precision.FP32: f"{MODEL_ONNX} ({TRT_ONNX} when the model needs plugins)",
    Precision.FP16: FP16_ONNX,
    Precision.INT8: INT8_ONNX,
    Precision.INT8_IMPLICIT: f"{MODEL_ONNX} + {CALIB_CACHE}",
}
# option value -> HardwareCompatibilityLevel member name
HARDWARE_COMPATIBILITY = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}
MAX_OPTIMIZATION_LEVEL = 5


class UnsupportedByTensorRT(UsageError):
    """The installed TensorRT cannot do what was asked (message names the version and the alternative)."""


@dataclass(frozen=True)
class EngineBuildOptions:
    """Builder options (all optional). Validated on construction (UsageError)."""

    workspace_mib: int | None = None  # IBuilderConfig memory pool WORKSPACE limit
    optimization_level: int | None = None  # builder_optimization_level 0..5 (TensorRT default 3)
    dla_core: int | None = None  # build for this DLA core (Jetson Orin); None = GPU
    gpu_fallback: bool = True  # with DLA: layers DLA cannot run go to the GPU
    version_compatible: bool = False  # BuilderFlag.VERSION_COMPATIBLE (runs on newer TensorRT; needs trust to load)
    exclude_lean_runtime: bool = False  # with version_compatible: do not embed the lean runtime
    hardware_compatibility: str | None = None  # none | ampere+ | same-compute-capability
    rewrite_calib_header: bool = False  # int8-implicit: accept a cache written for another TensorRT version

    def __post_init__(self) -> None:
        if self.workspace_mib is not None and (not isinstance(self.workspace_mib, int) or self.workspace_mib <= 0):
            raise UsageError(f"workspace must be a positive number of MiB, got {self.workspace_mib!r}")
        lvl = self.optimization_level
        if lvl is not None and (not isinstance(lvl, int) or not 0 <= lvl <= MAX_OPTIMIZATION_LEVEL):
            raise UsageError(f"builder optimization level must be 0..{MAX_OPTIMIZATION_LEVEL}, got {lvl!r}")
        if self.dla_core is not None and (not isinstance(self.dla_core, int) or self.dla_core < 0):
            raise UsageError(f"DLA core must be an integer >= 0, got {self.dla_core!r}")
        if self.hardware_compatibility is not None and self.hardware_compatibility not in HARDWARE_COMPATIBILITY:
            raise UsageError(f"hardware compatibility must be one of {', '.join(HARDWARE_COMPATIBILITY)}, "
                             f"got {self.hardware_compatibility!r}")
        if self.exclude_lean_runtime and not self.version_compatible:
            raise UsageError("exclude-lean-runtime only applies to version-compatible engines; add version-compatible")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Recipe:
    """What the builder sets, by name (enum values are read from the module when applied)."""

    precision: str
    tensorrt: str
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag member names
    builder_flags: tuple[str, ...]  # BuilderFlag member names
    parser_flags: tuple[str, ...]  # OnnxParserFlag member names
    strongly_typed: bool
    calibrator: bool  # cache-only IInt8EntropyCalibrator2
    calibration_profile: bool  # set_calibration_profile(opt shape)
    device: str  # "GPU" | "DLA"
    dla_core: int | None
    hardware_compatibility: str | None  # HardwareCompatibilityLevel member name
    workspace_bytes: int | None
    optimization_level: int | None
    plugins: bool  # the model needs segdeploy's plugin library
    serialize_plugins: bool  # config.plugins_to_serialize = [library] (version-compatible + plugins)
    warnings: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("network_flags", "builder_flags", "parser_flags", "warnings", "notes"):
            d[k] = list(d[k])
        return d


@dataclass
class _Draft:
    """The recipe's lists while :func:`make_recipe` fills them."""

    network_flags: list[str] = field(default_factory=list)
    builder_flags: list[str] = field(default_factory=list)
    parser_flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def make_recipe(caps: Capabilities, precision: str, options: EngineBuildOptions | None = None, *,
                needs_plugins: bool = False, has_calib_cache: bool = False) -> Recipe:
    """The recipe for ``precision`` on the TensorRT described by ``caps`` (see the module docstring)."""
    opts = options or EngineBuildOptions()
    Precision.parse(precision, "precision")
    _check_can_build(caps, precision, opts, needs_plugins, has_calib_cache)
    dla = opts.dla_core is not None
    # DLA needs the weak-typing precision flags where they exist (TensorRT 8.6 / 10.x on JetPack 6).
    weak = precision == Precision.INT8_IMPLICIT or not caps.strongly_typed or (dla and caps.weak_typing)
    d = _Draft()
    _typing(d, caps, precision, weak, dla)
    if dla:
        if opts.gpu_fallback:
            d.builder_flags.append("GPU_FALLBACK")
        d.notes.append(f"DLA core {opts.dla_core}" + (" with GPU fallback" if opts.gpu_fallback else " (no GPU fallback)"))
    serialize_plugins = _version_compatibility(d, caps, opts, needs_plugins)
    hw = _hardware_compatibility(caps, opts, dla)
    if (opts.version_compatible or hw not in (None, "NONE")) and caps.parser_native_instancenorm:
        # the InstanceNormalization plugin of libnvinfer_plugin is neither version- nor hardware-compatible
        # (default on from 10.0; off in 8.6)
        d.parser_flags.append("NATIVE_INSTANCENORM")
    return Recipe(
        precision=precision, tensorrt=caps.version, network_flags=tuple(d.network_flags),
        builder_flags=tuple(d.builder_flags), parser_flags=tuple(d.parser_flags), strongly_typed=not weak,
        calibrator=precision == Precision.INT8_IMPLICIT,
        calibration_profile=precision == Precision.INT8_IMPLICIT and caps.calibration_profile,
        device="DLA" if dla else "GPU", dla_core=opts.dla_core, hardware_compatibility=hw,
        workspace_bytes=_workspace_bytes(caps, opts), optimization_level=_optimization_level(caps, opts),
        plugins=needs_plugins, serialize_plugins=serialize_plugins, warnings=tuple(d.warnings), notes=tuple(d.notes),
    )


def _check_can_build(caps: Capabilities, precision: str, opts: EngineBuildOptions, needs_plugins: bool,
                     has_calib_cache: bool) -> None:
    """What this TensorRT (or device) cannot build at all: a runtime-only module, plugins, implicit INT8, DLA."""
    ver = caps.describe()
    if not caps.can_build:
        raise UnsupportedByTensorRT(
            f"{ver} is a runtime-only module (no Builder/OnnxParser) and cannot build engines; "
            "install the full TensorRT (pip install tensorrt, or JetPack's python3-libnvinfer)"
        )
    if needs_plugins:
        if not caps.plugin_v3:
            raise UnsupportedByTensorRT(
                f"{ver} has no IPluginV3, which segdeploy's TensorRT plugins (needed by this model) require; build on "
                "TensorRT 10.x or newer (JetPack 6.1+ on Jetson), or deploy a model without the plugin ops"
            )
        if not caps.plugin_load_library:
            raise UnsupportedByTensorRT(f"{ver} cannot load plugin libraries (no IPluginRegistry.load_library); "
                                        "use TensorRT 10.x or newer")
    if precision == Precision.INT8_IMPLICIT:
        if not caps.implicit_int8:
            raise UnsupportedByTensorRT(
                f"{ver} has no implicit INT8 calibration (the calibrator API and the INT8 flag were removed in "
                "TensorRT 11); use precision int8 with the explicit Q/DQ model.int8.onnx"
            )
        if not has_calib_cache:
            raise UsageError("precision int8-implicit needs the calibration cache model.calib.cache; "
                             "run `segdeploy calibrate` (or export with --int8 --calib DIR) first")
    if opts.dla_core is not None:
        _check_dla(caps, precision, opts.dla_core)


def _check_dla(caps: Capabilities, precision: str, dla_core: int) -> None:
    ver = caps.describe()
    if not caps.dla_api:
        raise UnsupportedByTensorRT(f"{ver} has no DLA support; build for the GPU (leave the DLA core unset)")
    if caps.dla_cores is not None and caps.dla_cores == 0:
        raise UnsupportedByTensorRT(
            f"this device has no DLA (builder.num_DLA_cores = 0 with {ver}; Orin Nano and Thor have none); "
            "build for the GPU (leave the DLA core unset)"
        )
    if caps.dla_cores is not None and dla_core >= caps.dla_cores:
        raise UsageError(f"DLA core {dla_core} does not exist: this device has {caps.dla_cores} "
                         f"(cores 0..{caps.dla_cores - 1})")
    if precision == Precision.FP32:
        raise UnsupportedByTensorRT("DLA runs FP16 and INT8 only; use precision fp16 or int8 for a DLA engine")


def _typing(d: _Draft, caps: Capabilities, precision: str, weak: bool, dla: bool) -> None:
    """Network flags and precision flags: strongly typed (the ONNX's types decide), or weak with FP16/INT8."""
    ver = caps.describe()
    if caps.explicit_batch_required:
        d.network_flags.append("EXPLICIT_BATCH")
    if not weak:
        d.network_flags.append("STRONGLY_TYPED")
        if caps.strongly_typed_mandatory:
            d.notes.append(f"{ver} builds every network strongly typed; precision comes from the ONNX's types")
        else:
            d.notes.append("strongly typed: the ONNX's types decide the precision; no precision flags are set")
    else:
        if precision == Precision.FP16:
            _need(caps.fp16_flag, f"{ver} has no FP16 flag; use a TensorRT that builds strongly typed (10.x+)")
            d.builder_flags.append("FP16")
        elif precision in (Precision.INT8, Precision.INT8_IMPLICIT):
            _need(caps.int8_flag, f"{ver} has no INT8 flag; use precision int8 with model.int8.onnx on TensorRT 10.x+")
            d.builder_flags.append("INT8")
        if precision == Precision.INT8 and not dla:
            d.notes.append("explicit Q/DQ INT8 with weak typing: the INT8 flag lets TensorRT run the Q/DQ regions in "
                           "int8")
    if precision == Precision.INT8_IMPLICIT:
        if caps.strongly_typed:
            d.warnings.append(
                f"implicit INT8 calibration is deprecated in {ver} (since 10.1) and removed in TensorRT 11; "
                "precision int8 (the explicit Q/DQ model.int8.onnx) builds on every version"
            )
        d.notes.append("implicit INT8 from the calibration cache only (the calibrator never reads data)")


def _version_compatibility(d: _Draft, caps: Capabilities, opts: EngineBuildOptions, needs_plugins: bool) -> bool:
    """VERSION_COMPATIBLE (+ EXCLUDE_LEAN_RUNTIME); returns whether the plugin library is serialized into the plan."""
    if not opts.version_compatible:
        return False
    ver = caps.describe()
    _need(caps.version_compatible, f"{ver} cannot build version-compatible engines; drop version-compatible")
    d.builder_flags.append("VERSION_COMPATIBLE")
    d.notes.append("version-compatible: loading it needs the runner's trust-host-code option (the plan carries code)")
    serialize_plugins = False
    if needs_plugins:
        _need(caps.plugins_to_serialize, f"{ver} cannot serialize plugin libraries into a version-compatible "
              "engine; drop version-compatible")
        serialize_plugins = True
    if opts.exclude_lean_runtime:
        _need(caps.exclude_lean_runtime, f"{ver} has no EXCLUDE_LEAN_RUNTIME flag; drop exclude-lean-runtime")
        d.builder_flags.append("EXCLUDE_LEAN_RUNTIME")
    return serialize_plugins


def _hardware_compatibility(caps: Capabilities, opts: EngineBuildOptions, dla: bool) -> str | None:
    """The HardwareCompatibilityLevel member name (None: not set)."""
    if opts.hardware_compatibility is None:
        return None
    hw = HARDWARE_COMPATIBILITY[opts.hardware_compatibility]
    if hw not in caps.hardware_compatibility_levels:
        have = ", ".join(k for k, v in HARDWARE_COMPATIBILITY.items() if v in caps.hardware_compatibility_levels)
        raise UnsupportedByTensorRT(
            f"{caps.describe()} has no hardware compatibility level {opts.hardware_compatibility}"
            + (f"; use one of {have}" if have else "; drop the hardware compatibility option")
        )
    if dla and hw != "NONE":
        raise UnsupportedByTensorRT("hardware-compatible engines cannot use DLA; drop one of the two options")
    return hw


def _workspace_bytes(caps: Capabilities, opts: EngineBuildOptions) -> int | None:
    if opts.workspace_mib is None:
        return None
    _need(caps.memory_pool_limit, f"{caps.describe()} has no memory pool limits; drop the workspace option")
    return opts.workspace_mib << 20


def _optimization_level(caps: Capabilities, opts: EngineBuildOptions) -> int | None:
    if opts.optimization_level is not None:
        _need(caps.optimization_level, f"{caps.describe()} has no builder optimization level; drop that option")
    return opts.optimization_level


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise UnsupportedByTensorRT(message)
