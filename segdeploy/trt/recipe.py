"""Precision + options -> a build recipe for one TensorRT: the ONE place the rules of what TensorRT allows live.

The TensorRT is described by :class:`~segdeploy.trt.capabilities.Capabilities`: probed from the installed module
(the Python builder) or made from a target version (:func:`~segdeploy.trt.capabilities.for_target`: the printed
trtexec commands, the Jetson bundle, the checks before an export). The builder
(:mod:`segdeploy.trt.builder`) and the trtexec command (:mod:`segdeploy.trt.trtexec`) are two renderings of the
same :class:`Recipe`; neither decides anything of its own.

Precisions and the ONNX each builds from (names from :mod:`segdeploy.vocab`):

========== ================================== ===============================================================
precision  ONNX                               recipe
========== ================================== ===============================================================
fp32       model.onnx (model.trt.onnx when     8.6: EXPLICIT_BATCH. 10.x: STRONGLY_TYPED (the ONNX's types).
           the model needs plugins)            11.x: no flag (every network is strongly typed)
fp16       model.fp16.onnx                    8.6: EXPLICIT_BATCH + FP16 flag. 10.x: STRONGLY_TYPED. 11.x: none
int8       model.int8.onnx (explicit Q/DQ)    8.6: EXPLICIT_BATCH + INT8 + FP16 flags. 10.x: STRONGLY_TYPED. 11.x: none
int8-      model.onnx + model.calib.cache     8.6/10.x: INT8 + FP16 flags + cache-only calibrator + calibration
implicit                                      profile (weakly typed; deprecated from 10.1 with a warning). 11.x: refused
========== ================================== ===============================================================

Rules beyond the table:

* Weakly typed INT8 (8.6, int8-implicit, DLA) also sets FP16: without it every layer left in float runs in FP32
  (trtexec 8.6 logs the hint itself) and, on DLA, falls back to the GPU.
* STRONGLY_TYPED is not passed where it is mandatory (11.x: the flag is a deprecated no-op that warns);
  ``Recipe.strongly_typed`` still says what the engine is.
* DLA (``dla_core``): only where the TensorRT has it (a target: 8.6-10.7 and 11.4.1+; the installed one: the API
  and ``num_DLA_cores > 0``); FP16/INT8 only, weakly typed where precision flags exist (DLA needs them),
  ``GPU_FALLBACK`` unless disabled, never with a hardware-compatibility level, and with the profile pinned to its
  opt shape (TensorRT requires min = opt = max on DLA; ``Recipe.profile_pinned``, :meth:`Recipe.profile_for`).
* int8-implicit reads ``model.calib.cache`` whose ``TRT-<code>-`` header must be the building TensorRT's
  (TensorRT skips a cache with another header and then calibrates with no data: null bindings). The header is
  checked here (:class:`CacheHeader`): another version's header is refused with :class:`CalibrationCacheMismatch`
  unless ``rewrite_calib_header`` (``Recipe.calib_header_rewrite_from``: the renderer gives TensorRT the cache
  with the right header; the file is never changed); a range target cannot say which header it reads and needs
  the exact version, unless the header is stamped where the build runs (``CacheHeader.stamped``: the bundle).
* Version-compatible, exclude-lean-runtime, hardware-compatibility level, workspace limit and builder optimization
  level map to the config only where the TensorRT has them; version- or hardware-compatible builds also set the
  parser's NATIVE_INSTANCENORM flag (off by default in 8.6). A refusal on a range target for something only some
  of its versions have says to give the exact version.

Contract: ``make_recipe(caps, precision, options, needs_plugins=..., calib_cache=CacheHeader(...) | None) ->
Recipe`` is pure (no TensorRT calls, no file access). Anything the TensorRT cannot do raises
:class:`UnsupportedByTensorRT` (a UsageError, exit 2), one line naming the version and the alternative; bad
option values raise UsageError; a calibration cache for another version raises :class:`CalibrationCacheMismatch`
(an ArtifactError, exit 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from segdeploy.errors import ArtifactError, UsageError
from segdeploy.spec import ShapeProfile
from segdeploy.trt.capabilities import Capabilities
from segdeploy.vocab import (
    CALIB_CACHE,
    FP16_ONNX,
    INT8_ONNX,
    MODEL_ONNX,
    TRT_ONNX,
    Precision,
)

SOURCE_ONNX = {
    Precision.FP32: f"{MODEL_ONNX} ({TRT_ONNX} when the model needs plugins)",
    Precision.FP16: FP16_ONNX,
    Precision.INT8: INT8_ONNX,
    Precision.INT8_IMPLICIT: f"{MODEL_ONNX} + {CALIB_CACHE}",
}
# option value -> HardwareCompatibilityLevel member name
HARDWARE_COMPATIBILITY = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}
MAX_OPTIMIZATION_LEVEL = 5
# The option a user passes to accept a cache written for another version (the CLI wires it under this name).
REWRITE_OPTION = "--rewrite-calib-header"


class UnsupportedByTensorRT(UsageError):
    """The TensorRT cannot do what was asked (message names the version and the alternative)."""


class CalibrationCacheMismatch(ArtifactError):
    """The calibration cache was written for another TensorRT version (or algorithm)."""


@dataclass(frozen=True)
class CacheHeader:
    """What is known of ``model.calib.cache``'s header when the recipe is made."""

    code: int | None = None  # the file's TRT-<code>; None: not read yet (checked when a build reads it)
    stamped: bool = False  # the header is written for the building TensorRT right before the build (bundle)


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
    profile_pinned: bool = False  # the optimization profile is min = opt = max = the opt shape (DLA)
    calib_cache_code: int | None = None  # int8-implicit: the header TensorRT reads (None: stamped where it builds)
    calib_header_rewrite_from: int | None = None  # the cache's header, when TensorRT must get another one
    warnings: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())

    def profile_for(self, profile: ShapeProfile) -> ShapeProfile:
        """The optimization profile this engine is built with (pinned to the opt shape on DLA)."""
        if not self.profile_pinned:
            return profile
        return ShapeProfile(profile.opt, profile.opt, profile.opt, profile.spatial_multiple)

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
                needs_plugins: bool = False, has_calib_cache: bool = False,
                calib_cache: CacheHeader | None = None) -> Recipe:
    """The recipe for ``precision`` on the TensorRT described by ``caps`` (see the module docstring).
    ``has_calib_cache=True`` is ``calib_cache=CacheHeader()`` (a cache whose header is not read yet)."""
    opts = options or EngineBuildOptions()
    Precision.parse(precision, "precision")
    cache = calib_cache if calib_cache is not None else (CacheHeader() if has_calib_cache else None)
    _check_can_build(caps, precision, opts, needs_plugins, cache)
    dla = opts.dla_core is not None
    # DLA needs the weak-typing precision flags where they exist (TensorRT 8.6 / 10.x on JetPack 6).
    weak = precision == Precision.INT8_IMPLICIT or not caps.strongly_typed or (dla and caps.weak_typing)
    d = _Draft()
    _typing(d, caps, precision, weak, dla)
    if dla:
        if opts.gpu_fallback:
            d.builder_flags.append("GPU_FALLBACK")
        d.notes.append(f"DLA core {opts.dla_core}" + (" with GPU fallback" if opts.gpu_fallback else " (no GPU fallback)")
                       + "; DLA needs a static shape: the profile is pinned to the opt shape (min = opt = max)")
    serialize_plugins = _version_compatibility(d, caps, opts, needs_plugins)
    hw = _hardware_compatibility(caps, opts, dla)
    if (opts.version_compatible or hw not in (None, "NONE")) and caps.parser_native_instancenorm:
        # the InstanceNormalization plugin of libnvinfer_plugin is neither version- nor hardware-compatible
        # (default on from 10.0; off in 8.6)
        d.parser_flags.append("NATIVE_INSTANCENORM")
    code, rewrite_from = _calib_header(d, caps, precision, opts, cache)
    return Recipe(
        precision=precision, tensorrt=caps.version, network_flags=tuple(d.network_flags),
        builder_flags=tuple(d.builder_flags), parser_flags=tuple(d.parser_flags), strongly_typed=not weak,
        calibrator=precision == Precision.INT8_IMPLICIT,
        calibration_profile=precision == Precision.INT8_IMPLICIT and caps.calibration_profile,
        device="DLA" if dla else "GPU", dla_core=opts.dla_core, hardware_compatibility=hw,
        workspace_bytes=_workspace_bytes(caps, opts), optimization_level=_optimization_level(caps, opts),
        plugins=needs_plugins, serialize_plugins=serialize_plugins, profile_pinned=dla, calib_cache_code=code,
        calib_header_rewrite_from=rewrite_from, warnings=tuple(d.warnings), notes=tuple(d.notes),
    )


def _refuse(caps: Capabilities, feature: str, message: str) -> UnsupportedByTensorRT:
    """The refusal, with the hint to give the exact version when only some versions of a range have ``feature``."""
    if feature in caps.partial:
        message += (f"; its versions differ here: give the device's exact TensorRT with --trt-target "
                    f"(e.g. {caps.example_version})")
    return UnsupportedByTensorRT(message)


def _check_can_build(caps: Capabilities, precision: str, opts: EngineBuildOptions, needs_plugins: bool,
                     cache: CacheHeader | None) -> None:
    """What this TensorRT (or device) cannot build at all: a runtime-only module, plugins, implicit INT8, DLA."""
    ver = caps.describe()
    if not caps.can_build:
        raise UnsupportedByTensorRT(
            f"{ver} is a runtime-only module (no Builder/OnnxParser) and cannot build engines; "
            "install the full TensorRT (pip install tensorrt, or JetPack's python3-libnvinfer)"
        )
    if needs_plugins:
        if not caps.plugin_v3:
            raise _refuse(caps, "plugin_v3", (
                f"{ver} has no IPluginV3, which segdeploy's TensorRT plugins (needed by this model) require; build on "
                "TensorRT 10.x or newer (target 10.3 / JetPack 6.1+ on Jetson), or deploy a model without the plugin ops"))
        if not caps.plugin_load_library:
            raise UnsupportedByTensorRT(f"{ver} cannot load plugin libraries (no IPluginRegistry.load_library); "
                                        "use TensorRT 10.x or newer")
    if cache is not None and precision != Precision.INT8_IMPLICIT:
        raise UsageError(f"a calibration cache is only used by precision int8-implicit, not {precision}; drop it")
    if precision == Precision.INT8_IMPLICIT:
        if not caps.implicit_int8:
            raise _refuse(caps, "calibrator_api", (
                f"{ver} has no implicit INT8 calibration (trtexec --int8/--calib, the calibrator API and the INT8 flag "
                "were removed in TensorRT 11); use precision int8 with the explicit Q/DQ model.int8.onnx"))
        if cache is None:
            raise UsageError("precision int8-implicit needs the calibration cache model.calib.cache; "
                             "run `segdeploy calibrate` (or export with --int8 --calib DIR) first")
    if opts.dla_core is not None:
        _check_dla(caps, precision, opts.dla_core)


def _check_dla(caps: Capabilities, precision: str, dla_core: int) -> None:
    ver = caps.describe()
    if not caps.dla_api:
        raise _refuse(caps, "dla_api", (
            f"{ver} has no DLA support (TensorRT 10.8-11.4.0 dropped it; Thor and Orin Nano have no DLA); build for "
            "the GPU (leave the DLA core unset), or target TensorRT 8.6 / 10.3 (JetPack 6) on an Orin with DLA"))
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
        if caps.strongly_typed_mandatory:  # passing the deprecated no-op flag only earns a warning
            d.notes.append(f"{ver} builds every network strongly typed; precision comes from the ONNX's types")
        else:
            d.network_flags.append("STRONGLY_TYPED")
            d.notes.append("strongly typed: the ONNX's types decide the precision; no precision flags are set")
        return
    if precision == Precision.FP16:
        _need(caps, "fp16_flag", caps.fp16_flag, f"{ver} has no FP16 flag; use a TensorRT that builds strongly typed (10.x+)")
        d.builder_flags.append("FP16")
    elif precision in (Precision.INT8, Precision.INT8_IMPLICIT):
        _need(caps, "int8_flag", caps.int8_flag,
              f"{ver} has no INT8 flag; use precision int8 with model.int8.onnx on TensorRT 10.x+")
        d.builder_flags.append("INT8")
        if caps.fp16_flag:
            d.builder_flags.append("FP16")
            d.notes.append("weakly typed INT8 with FP16: layers left in float run in FP16 (with INT8 alone they run in "
                           "FP32" + (", and on the GPU instead of the DLA)" if dla else ")"))
        if precision == Precision.INT8 and not dla:
            d.notes.append("explicit Q/DQ INT8 with weak typing: the INT8 flag lets TensorRT run the Q/DQ regions in "
                           "int8")
    if precision == Precision.INT8_IMPLICIT:
        if caps.strongly_typed:
            d.warnings.append(
                f"implicit INT8 calibration is deprecated since TensorRT 10.1 and removed in TensorRT 11 ({ver} still "
                "has it); precision int8 (the explicit Q/DQ model.int8.onnx) builds on every version"
            )
        d.notes.append("implicit INT8 from the calibration cache only (the calibrator never reads data)")


def _calib_header(d: _Draft, caps: Capabilities, precision: str, opts: EngineBuildOptions,
                  cache: CacheHeader | None) -> tuple[int | None, int | None]:
    """(header TensorRT reads, the file's header when it must be rewritten) for int8-implicit."""
    from segdeploy.trt.versions import version_from_code

    if precision != Precision.INT8_IMPLICIT or cache is None or cache.stamped:
        return None, None
    want = caps.calib_cache_code
    if want is None:
        raise UnsupportedByTensorRT(
            f"int8-implicit reads {CALIB_CACHE} only when its TRT-<version> header names the exact TensorRT that "
            f"builds, and {caps.describe()} is not one version; give the device's exact version with --trt-target "
            f"(e.g. {caps.example_version or '10.13.3'}) here and to `segdeploy calibrate`")
    if cache.code is None or cache.code == want:
        return want, None
    if opts.rewrite_calib_header:
        d.warnings.append(f"calibration cache header rewritten from TRT-{cache.code} to TRT-{want} for this build "
                          "(the file is unchanged; tensor names must match this TensorRT's parser)")
        return want, cache.code
    raise CalibrationCacheMismatch(
        f"{CALIB_CACHE} was written for TensorRT {version_from_code(cache.code)} (TRT-{cache.code}) but "
        f"{caps.describe()} reads only TRT-{want} (it would skip the cache and calibrate without data); re-run "
        f"`segdeploy calibrate EXPORT_DIR --calib DIR --trt-target {version_from_code(want)}`, or pass "
        f"{REWRITE_OPTION} to rewrite its header for this build (tensor names must match this TensorRT's parser)"
    )


def _version_compatibility(d: _Draft, caps: Capabilities, opts: EngineBuildOptions, needs_plugins: bool) -> bool:
    """VERSION_COMPATIBLE (+ EXCLUDE_LEAN_RUNTIME); returns whether the plugin library is serialized into the plan."""
    if not opts.version_compatible:
        return False
    ver = caps.describe()
    _need(caps, "version_compatible", caps.version_compatible,
          f"{ver} cannot build version-compatible engines; drop version-compatible")
    d.builder_flags.append("VERSION_COMPATIBLE")
    d.notes.append("version-compatible: loading it needs the runner's trust-host-code option (the plan carries code)")
    serialize_plugins = False
    if needs_plugins:
        _need(caps, "plugins_to_serialize", caps.plugins_to_serialize,
              f"{ver} cannot serialize plugin libraries into a version-compatible engine; drop version-compatible")
        serialize_plugins = True
    if opts.exclude_lean_runtime:
        _need(caps, "exclude_lean_runtime", caps.exclude_lean_runtime,
              f"{ver} has no EXCLUDE_LEAN_RUNTIME flag; drop exclude-lean-runtime")
        d.builder_flags.append("EXCLUDE_LEAN_RUNTIME")
    return serialize_plugins


def _hardware_compatibility(caps: Capabilities, opts: EngineBuildOptions, dla: bool) -> str | None:
    """The HardwareCompatibilityLevel member name (None: not set)."""
    if opts.hardware_compatibility is None:
        return None
    hw = HARDWARE_COMPATIBILITY[opts.hardware_compatibility]
    if hw not in caps.hardware_compatibility_levels:
        have = ", ".join(k for k, v in HARDWARE_COMPATIBILITY.items() if v in caps.hardware_compatibility_levels)
        raise _refuse(caps, hw, (
            f"{caps.describe()} has no hardware compatibility level {opts.hardware_compatibility}"
            + (f"; use one of {have}" if have else "; drop the hardware compatibility option")))
    if dla and hw != "NONE":
        raise UnsupportedByTensorRT("hardware-compatible engines cannot use DLA; drop one of the two options")
    return hw


def _workspace_bytes(caps: Capabilities, opts: EngineBuildOptions) -> int | None:
    if opts.workspace_mib is None:
        return None
    _need(caps, "memory_pool_limit", caps.memory_pool_limit,
          f"{caps.describe()} has no memory pool limits; drop the workspace option")
    return opts.workspace_mib << 20


def _optimization_level(caps: Capabilities, opts: EngineBuildOptions) -> int | None:
    if opts.optimization_level is not None:
        _need(caps, "optimization_level", caps.optimization_level,
              f"{caps.describe()} has no builder optimization level; drop that option")
    return opts.optimization_level


def _need(caps: Capabilities, feature: str, ok: bool, message: str) -> None:
    if not ok:
        raise _refuse(caps, feature, message)
