"""The trtexec command equivalent to a segdeploy build: a rendering of the build's :class:`~segdeploy.trt.recipe.Recipe`.

``trtexec_command(onnx_path, input_name, profile, precision, target=..., ...) -> TrtexecCommand``: the recipe for
the target TensorRT (:func:`segdeploy.trt.versions.resolve_target` -> :func:`segdeploy.trt.capabilities.for_target`
-> :func:`segdeploy.trt.recipe.make_recipe`, where every rule and refusal lives), then :func:`render` spells it as
trtexec flags. ``.argv`` (the first element the trtexec program), ``.setup`` (shell commands to run first: the
calibration cache with the target's header, when the recipe says it must be rewritten), ``.shell()`` (quoted, the
setup joined with ``&&``), ``.notes``.

Spelling (``samples/common/sampleOptions.cpp`` at v8.6.1, v10.3.0, v10.9.0, v10.16, v11.1 -- the same in every
version that has the feature; the recipe decides which are used):

* always ``--onnx``, ``--minShapes/--optShapes/--maxShapes=<input>:NxCxHxW`` (all the opt shape when the recipe
  pins the profile: DLA), ``--skipInference`` (build only, unless ``skip_inference=False``), ``--saveEngine`` /
  ``--timingCacheFile`` when given;
* network flag STRONGLY_TYPED -> ``--stronglyTyped`` (never on 11: a deprecated no-op there, and the recipe does not
  pass it); builder flags FP16 / INT8 -> ``--fp16`` / ``--int8``; the calibrator -> ``--calib=<cache>`` +
  ``--optShapesCalib=<input>:<opt>``; GPU_FALLBACK -> ``--allowGPUFallback``; DLA -> ``--useDLACore=N``;
  VERSION_COMPATIBLE -> ``--versionCompatible``; EXCLUDE_LEAN_RUNTIME -> ``--excludeLeanRuntime``;
  hardware compatibility -> ``--hardwareCompatibilityLevel=ampere+|sameComputeCapability``; workspace ->
  ``--memPoolSize=workspace:<MiB>``; optimization level -> ``--builderOptimizationLevel=N``; plugins ->
  ``--dynamicPlugins=<lib>`` (+ ``--setPluginsToSerialize=<lib>``); the parser's NATIVE_INSTANCENORM needs no
  flag (trtexec sets it itself for version- and hardware-compatible builds).
* A plugin library path without a directory is printed as ``./<name>``: ``dlopen`` does not search the current
  directory for a bare name.
* The program is :func:`find_trtexec`: ``$TRTEXEC``, else ``trtexec`` when it is on PATH here, else
  :data:`JETPACK_TRTEXEC` (where JetPack and NVIDIA's .deb packages install it, never on PATH) -- the order the
  Jetson bundle's build.sh uses.

Refusals are the recipe's (:class:`~segdeploy.trt.recipe.UnsupportedByTensorRT`, UsageError,
:class:`~segdeploy.trt.recipe.CalibrationCacheMismatch`); this module refuses only what trtexec itself cannot do
(rewriting a calibration header for a range target it cannot name).
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from segdeploy.spec import ShapeProfile
from segdeploy.trt.recipe import (
    CacheHeader,
    EngineBuildOptions,
    Recipe,
    UnsupportedByTensorRT,
    make_recipe,
)
from segdeploy.trt.versions import Target, resolve_target
from segdeploy.vocab import CALIB_CACHE, Precision

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
_HW_FLAG = {"AMPERE_PLUS": "ampere+", "SAME_COMPUTE_CAPABILITY": "sameComputeCapability"}
_BUILDER_FLAG = {"FP16": "--fp16", "INT8": "--int8", "VERSION_COMPATIBLE": "--versionCompatible",
                 "EXCLUDE_LEAN_RUNTIME": "--excludeLeanRuntime"}


@dataclass(frozen=True)
class TrtexecCommand:
    target: str  # the target's release line (8.6 | 10.3 | 10.x | 11.x)
    label: str
    argv: tuple[str, ...]
    notes: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()  # shell commands to run first (in the same directory)
    version: str = ""  # the target's version ("10.13.3", "10.x")

    def shell(self) -> str:
        return " && ".join(list(self.setup) + [shlex.join(self.argv)])

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "version": self.version, "label": self.label, "argv": list(self.argv),
                "setup": list(self.setup), "command": self.shell(), "notes": list(self.notes)}


def shape_spec(name: str, shape: Iterable[int]) -> str:
    """``input:1x3x512x512`` (the name in single quotes when it holds ':' or ',', as trtexec requires)."""
    quoted = f"'{name}'" if (":" in name or "," in name) else name
    return f"{quoted}:{'x'.join(str(int(d)) for d in shape)}"


def _on_path(name: str) -> str | None:
    return shutil.which(name)


def find_trtexec(env: Mapping[str, str] | None = None, which: Any = None) -> str:
    """The trtexec program to print (see the module docstring)."""
    env = os.environ if env is None else env
    if env.get("TRTEXEC"):
        return env["TRTEXEC"]
    return "trtexec" if (which or _on_path)("trtexec") else JETPACK_TRTEXEC


def plugin_path_for_shell(path: str | os.PathLike) -> str:
    """A plugin library path ``dlopen`` finds: a bare file name gets ``./`` (it does not search the current dir)."""
    p = os.fspath(path)
    return p if os.sep in p else f".{os.sep}{p}"


def trtexec_command(
    onnx_path: str | os.PathLike,
    input_name: str,
    profile: ShapeProfile,
    precision: str = Precision.FP32,
    *,
    target: str | Target | None = None,
    plugin_library: str | os.PathLike | None = None,
    calib_cache: str | os.PathLike | None = None,
    calib_header: CacheHeader | None = None,
    timing_cache: str | os.PathLike | None = None,
    save_engine: str | os.PathLike | None = None,
    options: EngineBuildOptions | None = None,
    skip_inference: bool = True,
    trtexec: str | None = None,
) -> TrtexecCommand:
    """The trtexec command for ``target`` (see the module docstring). ``calib_header``: what is known of the cache's
    header (default: read from ``calib_cache`` when that file exists here, else not known)."""
    from segdeploy.trt.capabilities import for_target

    t = resolve_target(target)
    if calib_cache is not None and calib_header is None:
        calib_header = _header_of(calib_cache, precision)
    recipe = make_recipe(for_target(t), precision, options, needs_plugins=plugin_library is not None,
                         calib_cache=calib_header)
    return render(recipe, t, onnx_path, input_name, profile, plugin_library=plugin_library, calib_cache=calib_cache,
                  timing_cache=timing_cache, save_engine=save_engine, skip_inference=skip_inference, trtexec=trtexec)


def _header_of(calib_cache: str | os.PathLike, precision: str) -> CacheHeader:
    """The cache's header when the file is here and int8-implicit reads it; else 'not known yet'."""
    if precision != Precision.INT8_IMPLICIT or not os.path.isfile(calib_cache):
        return CacheHeader()
    from segdeploy.trt.calibrator import read_cache_header

    return read_cache_header(calib_cache)


def render(recipe: Recipe, target: Target, onnx_path: str | os.PathLike, input_name: str, profile: ShapeProfile, *,
           plugin_library: str | os.PathLike | None = None, calib_cache: str | os.PathLike | None = None,
           timing_cache: str | os.PathLike | None = None, save_engine: str | os.PathLike | None = None,
           skip_inference: bool = True, trtexec: str | None = None) -> TrtexecCommand:
    """``recipe`` spelled as one trtexec command (see the module docstring)."""
    prof = recipe.profile_for(profile)
    argv = [trtexec or find_trtexec(), f"--onnx={os.fspath(onnx_path)}"]
    if save_engine is not None:
        argv.append(f"--saveEngine={os.fspath(save_engine)}")
    argv += [f"--minShapes={shape_spec(input_name, prof.min)}", f"--optShapes={shape_spec(input_name, prof.opt)}",
             f"--maxShapes={shape_spec(input_name, prof.max)}"]
    if "STRONGLY_TYPED" in recipe.network_flags:
        argv.append("--stronglyTyped")
    argv += [_BUILDER_FLAG[f] for f in recipe.builder_flags if f in ("FP16", "INT8")]
    setup: list[str] = []
    if recipe.calibrator:
        cache = _calib_file(recipe, target, calib_cache, setup)
        argv += [f"--calib={cache}", f"--optShapesCalib={shape_spec(input_name, profile.opt)}"]
    if plugin_library is not None:
        lib = plugin_path_for_shell(plugin_library)
        argv.append(f"--dynamicPlugins={lib}")
        if recipe.serialize_plugins:
            argv.append(f"--setPluginsToSerialize={lib}")
    if recipe.workspace_bytes is not None:
        argv.append(f"--memPoolSize=workspace:{recipe.workspace_bytes >> 20}")
    if recipe.optimization_level is not None:
        argv.append(f"--builderOptimizationLevel={recipe.optimization_level}")
    if recipe.hardware_compatibility in _HW_FLAG:
        argv.append(f"--hardwareCompatibilityLevel={_HW_FLAG[recipe.hardware_compatibility]}")
    argv += [_BUILDER_FLAG[f] for f in recipe.builder_flags if f in ("VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME")]
    if recipe.device == "DLA":
        argv.append(f"--useDLACore={recipe.dla_core}")
        if "GPU_FALLBACK" in recipe.builder_flags:
            argv.append("--allowGPUFallback")
    if timing_cache is not None:
        argv.append(f"--timingCacheFile={os.fspath(timing_cache)}")
    if skip_inference:
        argv.append("--skipInference")
    return TrtexecCommand(target=target.line, label=target.label, argv=tuple(argv),
                          notes=tuple(_notes(recipe, target, argv[0])), setup=tuple(setup), version=target.version)


def _calib_file(recipe: Recipe, target: Target, calib_cache: str | os.PathLike | None, setup: list[str]) -> str:
    """The cache trtexec reads: the file itself, or a copy with the header the recipe names (``setup`` makes it)."""
    path = os.fspath(calib_cache) if calib_cache is not None else CALIB_CACHE
    if recipe.calib_header_rewrite_from is None:
        return path
    code = recipe.calib_cache_code
    if code is None:  # the recipe allows it only for a header stamped elsewhere; never reached from make_recipe
        raise UnsupportedByTensorRT(f"trtexec reads the calibration cache as it is; give the exact TensorRT with "
                                    f"--trt-target (e.g. {target.example_version})")
    stem, ext = os.path.splitext(path)
    copy = f"{stem}.trt{code}{ext}"
    setup.append(f"sed '1s/^TRT-[0-9]*-/TRT-{code}-/' {shlex.quote(path)} > {shlex.quote(copy)}")
    return copy


def _notes(recipe: Recipe, target: Target, program: str) -> list[str]:
    notes = list(recipe.warnings) + list(recipe.notes)  # a rewritten header: the recipe's warning says so
    if target.jetpack:
        notes.append(f"{target.label} ships with {target.jetpack}; run this on the device itself (engines are not "
                     "portable)")
    if program == JETPACK_TRTEXEC:
        notes.append(f"trtexec: {JETPACK_TRTEXEC} is where JetPack and NVIDIA's TensorRT packages put it (not on PATH); "
                     "set $TRTEXEC to print another path")
    return notes


def trtexec_commands(targets: Iterable[str], onnx_path: str | os.PathLike, input_name: str, profile: ShapeProfile,
                     precision: str = Precision.FP32, **kwargs: Any) -> list[TrtexecCommand]:
    """One command per target (same arguments); refusals propagate (UnsupportedByTensorRT)."""
    return [trtexec_command(onnx_path, input_name, profile, precision, target=t, **kwargs) for t in targets]
