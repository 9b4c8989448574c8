"""The engine-build option group: the options of `segdeploy build`, reusable by any command that builds engines.

Contract
--------
``@engine_build_options()`` adds the 14 options below to a click command and passes ONE keyword argument,
``build``: a frozen :class:`BuildArgs` holding the raw values. The command parses it inside its own error
handling (so ``--json`` still prints the result document for a bad value): :meth:`BuildArgs.request` ->
:class:`~segdeploy.engine.request.BuildRequest` (UsageError, exit 2, naming the option), or
:meth:`BuildArgs.request_if` for a command where the build is optional (`export --engine`): engine options
given without that flag are a UsageError naming them.

``engine_build_options(exclude=("--verbose",), help_prefix="With --engine: ")``: leave out options the command
already has (an excluded option keeps its default), and say in each help text when the options apply.

=========================== ================================================================================
option                      BuildRequest field
=========================== ================================================================================
``--precision LIST``        ``precisions`` (fp32, fp16, int8, int8-implicit)
``--int8-implicit``         ``int8_implicit``
``--trt-target V``          ``trt_target`` (the printed trtexec commands, without TensorRT here)
``--plugins PATH``          ``plugin_library``
``--workspace MiB``         ``workspace_mib``
``--opt-level N``           ``optimization_level``
``--dla-core N``            ``dla_core``
``--no-gpu-fallback``       ``gpu_fallback=False``
``--hardware-compat L``     ``hardware_compatibility``
``--version-compatible``    ``version_compatible``
``--rewrite-calib-header``  ``rewrite_calib_header``
``--timing-cache DIR``      ``timing_cache_dir``
``--no-timing-cache``       ``use_timing_cache=False``
``--verbose``               ``verbose``
=========================== ================================================================================
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import click

from segdeploy.errors import UsageError


@dataclass(frozen=True)
class BuildArgs:
    """The raw values of the engine-build group (names of `segdeploy build`'s parameters)."""

    precision: str | None = None
    int8_implicit: bool = False
    trt_target: str | None = None
    plugin_library: str | None = None
    workspace: int | None = None
    opt_level: int | None = None
    dla_core: int | None = None
    no_gpu_fallback: bool = False
    hardware_compat: str | None = None
    version_compatible: bool = False
    rewrite_calib_header: bool = False
    timing_cache: str | None = None
    no_timing_cache: bool = False
    verbose: bool = False

    def request(self):
        """The validated :class:`~segdeploy.engine.request.BuildRequest` (UsageError naming the option)."""
        from segdeploy.engine.request import BuildRequest

        return BuildRequest.from_cli(**{f.name: getattr(self, f.name) for f in fields(self)})

    def given(self) -> tuple[str, ...]:
        """The options given a value other than their default, by their CLI name."""
        return tuple(OPTION_NAMES[f.name] for f in fields(self) if getattr(self, f.name) != f.default)

    def request_if(self, enabled: bool, flag: str = "--engine"):
        """:meth:`request` when ``enabled``; else None, or UsageError when engine options were given anyway."""
        if enabled:
            return self.request()
        given = self.given()
        if given:
            raise UsageError(f"{'/'.join(given)} given without {flag}; add {flag}")
        return None


# parameter -> (option name, click keyword arguments); in the order --help shows them
_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "precision": (("--precision",), {"default": None, "metavar": "LIST", "help": (
        "Engines to build, comma-separated: fp32, fp16, int8, int8-implicit "
        "(default: fp32 + every fp16/int8 ONNX the directory holds).")}),
    "int8_implicit": (("--int8-implicit",), {"is_flag": True, "help": (
        "Also build int8-implicit: model.onnx + model.calib.cache (TensorRT 8.6/10.x; removed in 11).")}),
    "trt_target": (("--trt-target",), {"default": None, "metavar": "V", "help": (
        "Without TensorRT here: the TensorRT version of the printed trtexec commands "
        "(8.6, 10.3, 10.x, 11.x, or e.g. 10.13.3; default 11.x).")}),
    "plugin_library": (("--plugins",), {
        "default": None, "type": click.Path(dir_okay=False, path_type=str), "help": (
            "segdeploy's TensorRT plugin library (default, when the model needs it: $SEGDEPLOY_PLUGINS, then the "
            "`segdeploy plugins build` output).")}),
    "workspace": (("--workspace",), {"type": int, "default": None, "metavar": "MiB",
                                     "help": "Builder workspace limit in MiB."}),
    "opt_level": (("--opt-level",), {"type": int, "default": None, "metavar": "N",
                                     "help": "Builder optimization level 0-5 (TensorRT default 3)."}),
    "dla_core": (("--dla-core",), {"type": int, "default": None, "metavar": "N",
                                   "help": "Build for DLA core N (Jetson Orin; fp16/int8 only)."}),
    "no_gpu_fallback": (("--no-gpu-fallback",), {
        "is_flag": True, "help": "With --dla-core: fail instead of running DLA-incapable layers on the GPU."}),
    "hardware_compat": (("--hardware-compat",), {"default": None, "type": click.Choice(["none", "ampere+", "same-cc"]),
                                                 "help": "Hardware compatibility level of the engine."}),
    "version_compatible": (("--version-compatible",), {"is_flag": True, "help": (
        "Version-compatible engine (loads on newer TensorRT; carries code: load only trusted plans).")}),
    "rewrite_calib_header": (("--rewrite-calib-header",), {
        "is_flag": True, "help": "int8-implicit: accept a calibration cache written for another TensorRT version."}),
    "timing_cache": (("--timing-cache",), {"default": None, "type": click.Path(file_okay=False, path_type=str),
                                           "help": "Timing-cache directory (default: segdeploy's cache directory)."}),
    "no_timing_cache": (("--no-timing-cache",), {"is_flag": True, "help": "Build without a timing cache."}),
    "verbose": (("--verbose",), {"is_flag": True, "help": "Keep TensorRT's full log (printed on stderr)."}),
}
OPTION_NAMES = {name: decls[0] for name, (decls, _) in _OPTIONS.items()}  # parameter -> "--option"
# click's parameter names carry a prefix, so the group never collides with a command's own parameters (`export`'s
# precision group passes ``precision``, this group's --precision is ``engine_build_precision`` until parsed)
_DEST = "engine_build_"


def engine_build_options(exclude: tuple[str, ...] = (), help_prefix: str = "") -> Callable[[Callable], Callable]:
    """Decorator: the engine-build group (see the module docstring); ``exclude`` names options ("--verbose")."""
    unknown = set(exclude) - set(OPTION_NAMES.values())
    if unknown:
        raise ValueError(f"not engine-build options: {', '.join(sorted(unknown))}")
    kept = [name for name in _OPTIONS if OPTION_NAMES[name] not in exclude]

    def deco(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(_DEST + name) for name in kept}
            return f(*args, build=BuildArgs(**values), **kwargs)

        for name in reversed(kept):
            decls, attrs = _OPTIONS[name]
            attrs = {**attrs, "help": help_prefix + attrs["help"]} if help_prefix else attrs
            wrapper = click.option(*decls, _DEST + name, **attrs)(wrapper)
        return wrapper

    return deco


__all__ = ["OPTION_NAMES", "BuildArgs", "engine_build_options"]
