"""The trtexec command equivalent to a segdeploy build, for a TARGET TensorRT version (run it on the device).

``trtexec_command(onnx_path, input_name, profile, precision, target=..., ...) -> TrtexecCommand`` with
``.argv`` (a tuple, the first element ``trtexec``), ``.shell()`` (shell-quoted), ``.notes``. Targets and what
they can do come from :mod:`segdeploy.trt.versions` (``8.6 | 10.3 | 10.x | 11.x``, default the newest).

Flags per target (from ``samples/common/sampleOptions.cpp`` at v8.6.1, v10.3.0, v10.16, v11.1):

* always ``--onnx``, ``--minShapes/--optShapes/--maxShapes=<input>:NxCxHxW``, ``--skipInference`` (build only,
  unless ``skip_inference=False``), ``--saveEngine`` / ``--timingCacheFile`` when given,
  ``--memPoolSize=workspace:<MiB>``, ``--builderOptimizationLevel=N``;
* precision: 8.6 ``--fp16`` / ``--int8`` (Q/DQ needs it); 10.x ``--stronglyTyped`` for fp32/fp16/int8 ONNX (the
  same strongly typed network the Python builder makes), weak ``--fp16``/``--int8`` only for DLA; 11.x nothing
  (precision lives in the ONNX; the precision flags and ``--calib`` were removed);
* ``int8-implicit`` (8.6, 10.x only): ``--int8 --calib=<cache> --optShapesCalib=<input>:<opt>``;
* plugins: ``--dynamicPlugins=<lib>`` (10.x, 11.x; refused on 8.6, which has no IPluginV3), plus
  ``--setPluginsToSerialize`` for version-compatible builds; ``--versionCompatible``;
  ``--hardwareCompatibilityLevel=ampere+|sameComputeCapability``; DLA ``--useDLACore=N --allowGPUFallback``
  (8.6 / 10.3, FP16/INT8 only).

Combinations the target cannot build raise :class:`~segdeploy.trt.recipe.UnsupportedByTensorRT` (one line naming
the target and the alternative); malformed values raise UsageError.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from typing import Any, Iterable

from segdeploy.errors import UsageError
from segdeploy.spec import ShapeProfile
from segdeploy.trt.recipe import HARDWARE_COMPATIBILITY, MAX_OPTIMIZATION_LEVEL, UnsupportedByTensorRT
from segdeploy.trt.versions import Target, resolve_target
from segdeploy.vocab import Precision

_HW_FLAG = {"none": "none", "ampere+": "ampere+", "same-compute-capability": "sameComputeCapability"}


@dataclass(frozen=True)
class TrtexecCommand:
    target: str
    label: str
    argv: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def shell(self) -> str:
        return shlex.join(self.argv)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "label": self.label, "argv": list(self.argv), "command": self.shell(),
                "notes": list(self.notes)}


def shape_spec(name: str, shape: Iterable[int]) -> str:
    """``input:1x3x512x512`` (the name in single quotes when it holds ':' or ',', as trtexec requires)."""
    quoted = f"'{name}'" if (":" in name or "," in name) else name
    return f"{quoted}:{'x'.join(str(int(d)) for d in shape)}"


def trtexec_command(
    onnx_path: str | os.PathLike,
    input_name: str,
    profile: ShapeProfile,
    precision: str = Precision.FP32,
    *,
    target: str | None = None,
    plugin_library: str | os.PathLike | None = None,
    calib_cache: str | os.PathLike | None = None,
    timing_cache: str | os.PathLike | None = None,
    save_engine: str | os.PathLike | None = None,
    workspace_mib: int | None = None,
    optimization_level: int | None = None,
    dla_core: int | None = None,
    gpu_fallback: bool = True,
    version_compatible: bool = False,
    hardware_compatibility: str | None = None,
    skip_inference: bool = True,
    trtexec: str = "trtexec",
) -> TrtexecCommand:
    """The trtexec command for ``target`` (see the module docstring)."""
    t = resolve_target(target)
    _check_values(precision, workspace_mib, optimization_level, hardware_compatibility)
    notes: list[str] = []
    argv = [trtexec, f"--onnx={os.fspath(onnx_path)}"]
    if save_engine is not None:
        argv.append(f"--saveEngine={os.fspath(save_engine)}")
    argv += [f"--minShapes={shape_spec(input_name, profile.min)}",
             f"--optShapes={shape_spec(input_name, profile.opt)}",
             f"--maxShapes={shape_spec(input_name, profile.max)}"]
    argv += _precision_flags(t, precision, calib_cache, dla_core, input_name, profile, notes)
    argv += _plugin_flags(t, plugin_library, version_compatible)
    if workspace_mib is not None:
        argv.append(f"--memPoolSize=workspace:{workspace_mib}")
    if optimization_level is not None:
        argv.append(f"--builderOptimizationLevel={optimization_level}")
    argv += _compatibility_flags(t, hardware_compatibility, version_compatible, dla_core, notes)
    if dla_core is not None:
        argv.append(f"--useDLACore={dla_core}")
        if gpu_fallback:
            argv.append("--allowGPUFallback")
    if timing_cache is not None:
        argv.append(f"--timingCacheFile={os.fspath(timing_cache)}")
    if skip_inference:
        argv.append("--skipInference")
    if t.jetpack:
        notes.append(f"{t.label} ships with {t.jetpack}; run this on the device itself (engines are not portable)")
    return TrtexecCommand(target=t.key, label=t.label, argv=tuple(argv), notes=tuple(notes))


def _check_values(precision: str, workspace_mib: int | None, optimization_level: int | None,
                  hardware_compatibility: str | None) -> None:
    """Malformed values (UsageError), before anything target-specific."""
    Precision.parse(precision, "precision")
    if workspace_mib is not None and (not isinstance(workspace_mib, int) or workspace_mib <= 0):
        raise UsageError(f"workspace must be a positive number of MiB, got {workspace_mib!r}")
    if optimization_level is not None and not (isinstance(optimization_level, int)
                                               and 0 <= optimization_level <= MAX_OPTIMIZATION_LEVEL):
        raise UsageError(f"builder optimization level must be 0..{MAX_OPTIMIZATION_LEVEL}, got {optimization_level!r}")
    if hardware_compatibility is not None and hardware_compatibility not in HARDWARE_COMPATIBILITY:
        raise UsageError(f"hardware compatibility must be one of {', '.join(HARDWARE_COMPATIBILITY)}, "
                         f"got {hardware_compatibility!r}")


def _plugin_flags(t: Target, plugin_library: str | os.PathLike | None, version_compatible: bool) -> list[str]:
    """``--dynamicPlugins`` (+ ``--setPluginsToSerialize`` for version-compatible builds); refused on 8.6."""
    if plugin_library is None:
        return []
    if not t.plugin_v3:
        raise UnsupportedByTensorRT(
            f"{t.label} has no IPluginV3, which segdeploy's plugins need; use target 10.3 or newer "
            "(JetPack 6.1+), or a model without plugin nodes"
        )
    lib = os.fspath(plugin_library)
    return [f"--dynamicPlugins={lib}"] + ([f"--setPluginsToSerialize={lib}"] if version_compatible else [])


def _compatibility_flags(t: Target, hardware_compatibility: str | None, version_compatible: bool,
                         dla_core: int | None, notes: list[str]) -> list[str]:
    """``--hardwareCompatibilityLevel`` (what the target has; never with DLA) and ``--versionCompatible``."""
    argv = []
    if hardware_compatibility not in (None, "none"):
        flag = _HW_FLAG[hardware_compatibility]  # type: ignore[index]
        if flag not in t.hardware_compatibility:
            raise UnsupportedByTensorRT(f"{t.label} has no hardware compatibility level {hardware_compatibility}; "
                                        f"use one of {', '.join(k for k, v in _HW_FLAG.items() if v in t.hardware_compatibility)}")
        if dla_core is not None:
            raise UnsupportedByTensorRT("hardware-compatible engines cannot use DLA; drop one of the two options")
        argv.append(f"--hardwareCompatibilityLevel={flag}")
    if version_compatible:
        argv.append("--versionCompatible")
        notes.append("version-compatible: load it with the runner's trust-host-code option")
    return argv


def _precision_flags(t: Target, precision: str, calib_cache: Any, dla_core: int | None, input_name: str,
                     profile: ShapeProfile, notes: list[str]) -> list[str]:
    if calib_cache is not None and precision != Precision.INT8_IMPLICIT:
        raise UsageError(f"a calibration cache is only used by precision int8-implicit, not {precision}; drop it")
    if dla_core is not None:
        if not t.dla:
            raise UnsupportedByTensorRT(f"{t.label} has no DLA support (JetPack 7 / Thor has no DLA); build for the GPU "
                                        "(no DLA core) or use target 8.6 / 10.3 on an Orin")
        if precision == Precision.FP32:
            raise UnsupportedByTensorRT("DLA runs FP16 and INT8 only; use precision fp16 or int8 for a DLA engine")
        if not isinstance(dla_core, int) or dla_core < 0:
            raise UsageError(f"DLA core must be an integer >= 0, got {dla_core!r}")
    if precision == Precision.INT8_IMPLICIT:
        if not t.implicit_int8:
            raise UnsupportedByTensorRT(
                f"{t.label} has no implicit INT8 (trtexec --int8/--calib and the calibrator API were removed in "
                "TensorRT 11); use precision int8 with the explicit Q/DQ model.int8.onnx"
            )
        if calib_cache is None:
            raise UsageError("precision int8-implicit needs the calibration cache (model.calib.cache)")
        note_cache_version(t, calib_cache, notes)
        if t.strongly_typed == "flag":
            notes.append(f"implicit INT8 calibration is deprecated in {t.label}; precision int8 (Q/DQ) is the "
                         "supported path")
        return ["--int8", f"--calib={os.fspath(calib_cache)}", f"--optShapesCalib={shape_spec(input_name, profile.opt)}"]
    weak = {Precision.FP16: ["--fp16"], Precision.INT8: ["--int8"]}.get(precision, [])
    if t.strongly_typed == "absent":
        return weak
    if t.strongly_typed == "always":
        notes.append(f"{t.label} builds every network strongly typed: precision comes from the ONNX")
        return []
    if dla_core is not None:
        notes.append("DLA needs the precision flags (weak typing), so --stronglyTyped is not used")
        return weak
    return ["--stronglyTyped"]


def note_cache_version(t: Target, calib_cache: Any, notes: list[str]) -> None:
    """Note a calibration cache written for another version than the target expects (when the file is here)."""
    from segdeploy.trt.calib_cache import read_trt_cache
    from segdeploy.errors import ArtifactError
    from segdeploy.trt.versions import version_from_code

    path = os.fspath(calib_cache)
    if t.calib_cache_version is None or not os.path.isfile(path):
        return
    try:
        code = read_trt_cache(path).version_code
    except ArtifactError:
        return
    if code != t.calib_cache_version:
        notes.append(
            f"{os.path.basename(path)} has header TRT-{code} (TensorRT {version_from_code(code)}) but "
            f"{t.label} expects TRT-{t.calib_cache_version}; re-run `segdeploy calibrate --trt-version "
            f"{t.example_version}` first, or TensorRT will reject it"
        )


def trtexec_commands(targets: Iterable[str], onnx_path: str | os.PathLike, input_name: str, profile: ShapeProfile,
                     precision: str = Precision.FP32, **kwargs: Any) -> list[TrtexecCommand]:
    """One command per target (same arguments); refusals propagate (UnsupportedByTensorRT)."""
    return [trtexec_command(onnx_path, input_name, profile, precision, target=t, **kwargs) for t in targets]
