"""What a `segdeploy build` (or `export --engine`) is asked to do: :class:`BuildRequest`, validated cheaply.

Contract
--------
``BuildRequest(...)`` is a frozen dataclass whose construction checks every value that needs no file system
(precision names, ranges, the compatibility level, the TensorRT target) and raises
:class:`~segdeploy.errors.UsageError` (exit 2) naming the CLI option. :meth:`BuildRequest.from_cli` takes the raw
CLI values (``precision="fp32,int8"``, ``hardware_compat="same-cc"``...). :meth:`BuildRequest.check_static` adds
the cheap file-system checks (plugin library and timing-cache paths) and, where TensorRT is *not* importable,
what the target version cannot build whatever the model (int8-implicit on 11.x or on a range such as 10.x whose
calibration-cache header is unknown, DLA on a target without DLA, ...): the recipe
(:func:`segdeploy.trt.recipe.make_recipe`, the one rule engine) for the target's capabilities
(:func:`segdeploy.trt.capabilities.for_target`), so `export --engine` fails before the export, not after it.
:meth:`BuildRequest.target` is the resolved :class:`~segdeploy.trt.versions.Target` (``--trt-target``, else the
TensorRT installed here, else segdeploy's default). Nothing here imports TensorRT (the default target asks
whether a ``tensorrt`` module is installed).

The plugin library is found by :mod:`segdeploy.plugins.locate` (the one locator).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segdeploy.errors import UsageError
from segdeploy.plugins.locate import check_given
from segdeploy.vocab import Precision

# CLI spelling -> segdeploy.trt.recipe.HARDWARE_COMPATIBILITY key
HARDWARE_COMPAT_CLI = {"none": "none", "ampere+": "ampere+", "same-cc": "same-compute-capability",
                       "same-compute-capability": "same-compute-capability"}


def parse_precisions(text: str | None) -> tuple[Precision, ...] | None:
    """'fp32,int8' -> (FP32, INT8); None/'' -> None (the default: what the directory holds)."""
    return Precision.parse_list(text, "--precision")


def tensorrt_importable() -> bool:
    """Whether a ``tensorrt`` module can be found (without importing it)."""
    try:
        return importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class BuildRequest:
    """Options of the build stage (see the module docstring). ``precisions=None``: every variant the export
    directory holds (fp32, plus fp16 / int8 when present), plus int8-implicit when ``int8_implicit``."""

    precisions: tuple[str, ...] | None = None
    int8_implicit: bool = False  # also build int8-implicit from model.calib.cache (TensorRT <= 10.x)
    workspace_mib: int | None = None
    optimization_level: int | None = None
    dla_core: int | None = None
    gpu_fallback: bool = True
    hardware_compatibility: str | None = None  # none | ampere+ | same-compute-capability
    version_compatible: bool = False
    rewrite_calib_header: bool = False
    timing_cache_dir: str | None = None  # None: segdeploy's cache dir (usercache "timing")
    use_timing_cache: bool = True
    plugin_library: str | None = None  # None: the default `segdeploy plugins build` output when needed
    trt_target: str | None = None  # target of the printed trtexec commands (no TensorRT here); None = the default
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.precisions is not None:
            if not self.precisions:
                raise UsageError("--precision is empty; give e.g. --precision fp32,int8")
            for p in self.precisions:
                Precision.parse(p, "--precision")
        if self.hardware_compatibility is not None and self.hardware_compatibility not in HARDWARE_COMPAT_CLI.values():
            raise UsageError(f"--hardware-compat {self.hardware_compatibility!r} is not one of none, ampere+, same-cc")
        self.engine_options()  # ranges (workspace, opt level, DLA core) -> UsageError
        if self.trt_target is not None:
            self.target()  # UsageError naming the valid targets

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_cli(cls, *, precision: str | None = None, int8_implicit: bool = False, workspace: int | None = None,
                 opt_level: int | None = None, dla_core: int | None = None, no_gpu_fallback: bool = False,
                 hardware_compat: str | None = None, version_compatible: bool = False,
                 rewrite_calib_header: bool = False, timing_cache: str | None = None, no_timing_cache: bool = False,
                 plugin_library: str | None = None, trt_target: str | None = None,
                 verbose: bool = False) -> BuildRequest:
        """The request from raw CLI values (the names of `segdeploy build`'s options)."""
        hw = None
        if hardware_compat is not None:
            hw = HARDWARE_COMPAT_CLI.get(hardware_compat.strip().lower())
            if hw is None:
                raise UsageError(f"--hardware-compat {hardware_compat!r} is not one of none, ampere+, same-cc")
        if no_timing_cache and timing_cache is not None:
            raise UsageError("--timing-cache and --no-timing-cache contradict each other; give one")
        if no_gpu_fallback and dla_core is None:
            raise UsageError("--no-gpu-fallback applies only with --dla-core N")
        precs = parse_precisions(precision)
        if int8_implicit and precs is not None and Precision.INT8_IMPLICIT not in precs:
            precs = precs + (Precision.INT8_IMPLICIT,)
        return cls(precisions=precs, int8_implicit=int8_implicit, workspace_mib=workspace, optimization_level=opt_level,
                   dla_core=dla_core, gpu_fallback=not no_gpu_fallback, hardware_compatibility=hw,
                   version_compatible=version_compatible, rewrite_calib_header=rewrite_calib_header,
                   timing_cache_dir=timing_cache, use_timing_cache=not no_timing_cache, plugin_library=plugin_library,
                   trt_target=trt_target, verbose=verbose)

    def target(self) -> Any:
        """The :class:`~segdeploy.trt.versions.Target` of the printed commands (see the module docstring)."""
        from segdeploy.trt.versions import resolve_target

        return resolve_target(self.trt_target)

    def engine_options(self) -> Any:
        """The builder's :class:`~segdeploy.trt.recipe.EngineBuildOptions` (UsageError for bad values)."""
        from segdeploy.trt.recipe import EngineBuildOptions

        try:
            return EngineBuildOptions(workspace_mib=self.workspace_mib, optimization_level=self.optimization_level,
                                      dla_core=self.dla_core, gpu_fallback=self.gpu_fallback,
                                      version_compatible=self.version_compatible,
                                      hardware_compatibility=self.hardware_compatibility,
                                      rewrite_calib_header=self.rewrite_calib_header)
        except UsageError as e:  # name the CLI options
            msg = (e.message.replace("workspace must", "--workspace must")
                   .replace("builder optimization level must", "--opt-level must")
                   .replace("DLA core must", "--dla-core must"))
            raise UsageError(msg) from None

    @property
    def explicit(self) -> tuple[str, ...]:
        """The precisions asked for by name (empty: the default set)."""
        if self.precisions is not None:
            return self.precisions
        return (Precision.INT8_IMPLICIT,) if self.int8_implicit else ()

    # ------------------------------------------------------------------------------------------ checks
    def check_static(self) -> None:
        """Cheap checks before any stage runs (see the module docstring). Raises UsageError."""
        if self.plugin_library is not None:
            check_given(self.plugin_library)
        if self.timing_cache_dir is not None and Path(self.timing_cache_dir).exists() \
                and not Path(self.timing_cache_dir).is_dir():
            raise UsageError(f"--timing-cache {self.timing_cache_dir} is a file; give a directory")
        if not tensorrt_importable():
            self.check_target()

    def check_target(self) -> None:
        """What the target cannot build for any model: the recipe for each precision asked for (raises
        UnsupportedByTensorRT, a UsageError)."""
        from segdeploy.trt.capabilities import for_target
        from segdeploy.trt.recipe import CacheHeader, make_recipe

        caps = for_target(self.target())
        opts = self.engine_options()
        precisions = self.explicit or ((Precision.FP16,) if self.dla_core is not None else (Precision.FP32,))
        for p in precisions:
            make_recipe(caps, p, opts, calib_cache=CacheHeader() if p == Precision.INT8_IMPLICIT else None)

    def to_dict(self) -> dict[str, Any]:
        return {"precisions": list(self.precisions) if self.precisions is not None else None,
                "int8_implicit": self.int8_implicit, "workspace_mib": self.workspace_mib,
                "optimization_level": self.optimization_level, "dla_core": self.dla_core,
                "gpu_fallback": self.gpu_fallback, "hardware_compatibility": self.hardware_compatibility,
                "version_compatible": self.version_compatible, "rewrite_calib_header": self.rewrite_calib_header,
                "timing_cache": self.timing_cache_dir if self.use_timing_cache else None,
                "plugin_library": self.plugin_library, "trt_target": self.trt_target}

