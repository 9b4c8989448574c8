"""Build a TensorRT engine from one ONNX file: the thin, capability-detected builder.

``build_engine(onnx_path, input_name, profile, precision, options, *, plugin_library, calib_cache,
timing_cache_dir, shape_inputs, verbose, trt_module, device_index) -> BuildResult``

Steps (each failure is one line, :class:`EngineBuildError` unless stated):

1. import ``tensorrt`` (MissingDependencyError with the install hint), probe its capabilities, make the recipe
   (:mod:`segdeploy.trt.recipe`; UnsupportedByTensorRT for what this version cannot do) and, for
   ``int8-implicit``, validate the calibration cache header against the installed version *before* building
   (:mod:`segdeploy.trt.calibrator`; ``options.rewrite_calib_header`` accepts another version's cache);
2. a capturing logger, ``init_libnvinfer_plugins``, ``trt.Builder`` (an error logged here -- no GPU, no driver --
   stops the build), the recipe again with ``builder.num_DLA_cores``;
3. segdeploy's plugin library (when the ONNX holds plugin nodes) loaded into the builder's registry BEFORE parsing
   (``registry.load_library``; ``ctypes`` where the registry cannot load libraries) and its creators checked;
4. ``create_network(flags)`` from the recipe's flag names (values read from the module), ``OnnxParser`` +
   ``parse_from_file``; parser errors name the node and op and say what to do (e.g. MaxUnpool -> use
   model.trt.onnx with the plugin library);
5. the optimization profile from the :class:`~segdeploy.spec.ShapeProfile` (``set_shape`` on the image input;
   ``set_shape_input`` only for shape-tensor inputs, from ``shape_inputs``), the calibration profile and the
   cache-only calibrator where the recipe says, flags, workspace, optimization level, DLA, compatibility options;
6. the timing cache (:mod:`segdeploy.trt.timing_cache`: loaded, set, and saved after a successful build);
7. ``build_serialized_network``; None -> the logger's error.

Returns :class:`BuildResult`, a frozen dataclass with typed fields: ``plan`` = the plain serialized plan bytes (no
custom header), the precision, source ONNX + sha256, TensorRT version and plan header, :class:`GpuInfo` (name +
compute capability where torch.cuda can tell), profile, the :class:`~segdeploy.trt.recipe.Recipe` and network
flags, build options, :class:`PluginsLoaded`, the calibration cache, :class:`TimingCacheUse`,
:class:`BuildTimings`, warnings, and the full TensorRT log when ``verbose``; :meth:`BuildResult.to_dict` is the
JSON-able record. The code follows the steps: checks (:func:`_check_paths`, :func:`_prepare`), the build
(:func:`_build`: :func:`_network`, :func:`_configure`, the timing cache, :func:`_serialize`) and the record
(:func:`_result`). Nothing is written except the timing cache; the caller stores the plan.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from segdeploy.errors import ArtifactError, MissingDependencyError, SegdeployError, UsageError
from segdeploy.plugins.locate import PLUGIN_LIBRARY
from segdeploy.spec import ShapeProfile
from segdeploy.trt.capabilities import Capabilities, network_flags_value, probe
from segdeploy.trt.logger import abandon, make_logger, one_line
from segdeploy.trt.recipe import EngineBuildOptions, Recipe, make_recipe
from segdeploy.vocab import Precision

if TYPE_CHECKING:
    from segdeploy.trt.calibrator import CalibrationCache

INSTALL_HINT = (
    "install TensorRT (pip install tensorrt on an x86 CUDA machine, or JetPack's python3-libnvinfer on a Jetson)"
)
# How to get past a parser error, by ONNX op type.
PARSE_FIXES = {
    "MaxUnpool": "use model.trt.onnx with the plugin library (segdeploy export writes it for such models)",
    "MaxPool": "a MaxPool with an Indices output needs model.trt.onnx with the plugin library",
    "RoiAlign": "use model.trt.onnx with the plugin library (it maps RoiAlign to SegdeployRoiAlign)",
}


class EngineBuildError(SegdeployError):
    """TensorRT could not parse the ONNX or build the engine. ``log`` holds the full TensorRT log."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log  # this build's log; the build stage gathers them per precision in ``logs``


@dataclass(frozen=True)
class GpuInfo:
    """The CUDA device torch sees (None values when it cannot tell)."""

    name: str | None = None
    compute_capability: str | None = None  # "8.7"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "compute_capability": self.compute_capability}


@dataclass(frozen=True)
class PluginsLoaded:
    """segdeploy's plugin library as loaded into the builder's registry."""

    library: str  # file name
    method: str  # "registry.load_library" | "ctypes"
    already_loaded: bool
    creators: tuple[str, ...]  # "namespace::op vN" of every plugin op the ONNX uses

    def to_dict(self) -> dict[str, Any]:
        return {"library": self.library, "method": self.method, "already_loaded": self.already_loaded,
                "creators": list(self.creators)}


@dataclass(frozen=True)
class TimingCacheUse:
    file: str  # the cache file (segdeploy.trt.timing_cache)
    reused: bool  # a cache from an earlier build was loaded and accepted

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "reused": self.reused}


@dataclass(frozen=True)
class BuildTimings:
    parse_s: float
    build_s: float
    total_s: float

    def to_dict(self) -> dict[str, float]:
        return {"parse_s": self.parse_s, "build_s": self.build_s, "total_s": self.total_s}


@dataclass(frozen=True)
class BuildResult:
    """One built engine: the plan bytes and the facts of its build (see the module docstring)."""

    plan: bytes  # the serialized plan exactly as TensorRT returned it
    precision: str
    source_onnx: str  # file name
    source_sha256: str
    tensorrt_version: str  # trt.__version__ of the builder
    tensorrt_module: str
    plan_header: tuple[int, ...] | None  # the version in the plan's header
    gpu: GpuInfo
    profile: ShapeProfile
    input_name: str
    recipe: Recipe
    network_flags_value: int
    options: EngineBuildOptions
    plugins: PluginsLoaded | None
    calibration_cache: CalibrationCache | None  # int8-implicit only
    timing_cache: TimingCacheUse | None
    timings: BuildTimings
    warnings: tuple[str, ...] = ()
    log: str | None = None  # the full TensorRT log (verbose builds)

    @property
    def bytes(self) -> int:
        return len(self.plan)

    @property
    def build_seconds(self) -> float:
        return self.timings.total_s

    @property
    def flags(self) -> dict[str, Any]:
        r = self.recipe
        return {"network": list(r.network_flags), "network_value": self.network_flags_value,
                "builder": list(r.builder_flags), "parser": list(r.parser_flags)}

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able build record (everything but the plan bytes)."""
        def opt(x: Any) -> dict[str, Any] | None:
            return x.to_dict() if x is not None else None

        return {
            "precision": self.precision, "source_onnx": self.source_onnx, "source_sha256": self.source_sha256,
            "tensorrt": {"version": self.tensorrt_version, "module": self.tensorrt_module,
                         "plan_header": list(self.plan_header) if self.plan_header else None},
            "gpu": self.gpu.to_dict(), "profile": self.profile.to_dict(), "input": self.input_name,
            "recipe": self.recipe.to_dict(), "flags": self.flags, "build_options": self.options.to_dict(),
            "plugins": opt(self.plugins), "calibration_cache": opt(self.calibration_cache),
            "timing_cache": opt(self.timing_cache), "timings": self.timings.to_dict(),
            "build_seconds": self.build_seconds, "bytes": self.bytes, "warnings": list(self.warnings), "log": self.log,
        }


@dataclass(frozen=True)
class _OnnxSummary:
    nodes: tuple[tuple[str, str, str, int], ...]  # (name, op_type, domain, number of outputs)
    plugin_ops: tuple[tuple[str, str, str], ...]  # (op_type, plugin_version, plugin_namespace)


@dataclass(frozen=True)
class _Job:
    """One build's checked inputs (what every step reads)."""

    onnx_path: Path
    input_name: str
    profile: ShapeProfile
    precision: str
    options: EngineBuildOptions
    plugin_path: Path | None
    summary: _OnnxSummary
    cache: CalibrationCache | None

    @property
    def needs_plugins(self) -> bool:
        return bool(self.summary.plugin_ops)


@dataclass
class _Built:
    """What the builder made, and the facts gathered on the way."""

    caps: Capabilities
    recipe: Recipe
    network_flags_value: int
    plugins: PluginsLoaded | None
    timing_cache: TimingCacheUse | None
    plan: bytes
    parse_s: float
    build_s: float
    warnings: list[str]


def import_tensorrt(purpose: str = "building an engine") -> Any:
    """``import tensorrt`` or MissingDependencyError with the install hint."""
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError(f"{purpose} needs TensorRT, which is not installed; {INSTALL_HINT}") from None
    return tensorrt


def gpu_info(device_index: int | None = None) -> GpuInfo:
    """The CUDA device torch sees (None values when it cannot tell)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return GpuInfo()
        idx = torch.cuda.current_device() if device_index is None else device_index
        major, minor = torch.cuda.get_device_capability(idx)
        return GpuInfo(torch.cuda.get_device_name(idx), f"{major}.{minor}")
    except Exception:  # a broken CUDA setup must not hide the build's own error
        return GpuInfo()


def _scan_onnx(path: Path) -> _OnnxSummary:
    import onnx

    from segdeploy.plugins.onnx_mapping import PLUGIN_DOMAIN

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError, OSError
        raise ArtifactError(f"{path} is not a readable ONNX model ({type(e).__name__}); re-run `segdeploy export`") from None
    nodes, plugins = [], []
    for n in model.graph.node:
        nodes.append((n.name, n.op_type, n.domain, len(n.output)))
        if n.domain == PLUGIN_DOMAIN or n.op_type.startswith("Segdeploy"):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            ver = attrs.get("plugin_version", b"1")
            ns = attrs.get("plugin_namespace", b"")
            plugins.append((n.op_type, ver.decode() if isinstance(ver, bytes) else str(ver),
                            ns.decode() if isinstance(ns, bytes) else str(ns)))
    return _OnnxSummary(tuple(nodes), tuple(sorted(set(plugins))))


@contextlib.contextmanager
def _cuda_device(index: int | None) -> Iterator[None]:
    """Make ``index`` the current CUDA device for the block (restored after; no process-wide change)."""
    if index is None:
        yield
        return
    import torch

    if not torch.cuda.is_available():
        yield
        return
    with torch.cuda.device(index):
        yield


def build_engine(
    onnx_path: str | os.PathLike,
    input_name: str,
    profile: ShapeProfile,
    precision: str = Precision.FP32,
    options: EngineBuildOptions | None = None,
    *,
    plugin_library: str | os.PathLike | None = None,
    calib_cache: str | os.PathLike | None = None,
    timing_cache_dir: str | os.PathLike | None = None,
    shape_inputs: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] | None = None,
    verbose: bool = False,
    trt_module: Any = None,
    device_index: int | None = None,
) -> BuildResult:
    """Build one engine (see the module docstring). ``trt_module`` replaces ``import tensorrt`` (tests)."""
    _check_paths(onnx_path, plugin_library, precision, calib_cache)
    trt = trt_module if trt_module is not None else import_tensorrt()
    t_start = time.perf_counter()
    job, caps = _prepare(trt, Path(onnx_path), input_name, profile, precision, options or EngineBuildOptions(),
                         Path(plugin_library) if plugin_library is not None else None, calib_cache)
    logger = make_logger(trt, verbose=verbose)
    gpu = gpu_info(device_index)
    with _cuda_device(device_index):
        built = _build(trt, caps, logger, job, gpu, timing_cache_dir, shape_inputs)
    return _result(job, built, gpu, logger.warnings(), logger.text() if verbose else None, t_start)


# ------------------------------------------------------------------------------------------ 1. checks


def _check_paths(onnx_path: str | os.PathLike, plugin_library: str | os.PathLike | None, precision: str,
                 calib_cache: str | os.PathLike | None) -> None:
    if not Path(onnx_path).is_file():
        raise ArtifactError(f"ONNX model {Path(onnx_path)} not found; run `segdeploy export` first or fix the path")
    if plugin_library is not None and not Path(plugin_library).is_file():
        raise ArtifactError(f"plugin library {Path(plugin_library)} not found; build it with `segdeploy plugins build`")
    if calib_cache is not None and precision != Precision.INT8_IMPLICIT:
        raise UsageError(f"a calibration cache is only used by precision int8-implicit, not {precision}; drop it")


def _prepare(trt: Any, onnx_path: Path, input_name: str, profile: ShapeProfile, precision: str,
             opts: EngineBuildOptions, plugin_path: Path | None,
             calib_cache: str | os.PathLike | None) -> tuple[_Job, Capabilities]:
    """What can be refused before a builder exists: plugin nodes without the library, what this TensorRT cannot
    build (the recipe), a calibration cache for another version."""
    summary = _scan_onnx(onnx_path)
    needs_plugins = bool(summary.plugin_ops)
    if needs_plugins and plugin_path is None:
        ops = ", ".join(sorted({op for op, _, _ in summary.plugin_ops}))
        raise UsageError(f"{onnx_path.name} has segdeploy plugin nodes ({ops}); pass the plugin library "
                         f"{PLUGIN_LIBRARY} (build it with `segdeploy plugins build`)")
    caps = probe(trt)
    make_recipe(caps, precision, opts, needs_plugins=needs_plugins, has_calib_cache=calib_cache is not None)
    cache = None
    if precision == Precision.INT8_IMPLICIT:
        from segdeploy.trt.calibrator import load_calibration_cache

        cache = load_calibration_cache(calib_cache, caps.version, rewrite_header=opts.rewrite_calib_header)  # type: ignore[arg-type]
    return _Job(onnx_path, input_name, profile, precision, opts, plugin_path, summary, cache), caps


# ------------------------------------------------------------------------------------------ 2. the build


def _build(trt: Any, caps: Capabilities, logger: Any, job: _Job, gpu: GpuInfo,
           timing_cache_dir: str | os.PathLike | None, shape_inputs: dict[str, Any] | None) -> _Built:
    """Builder, recipe, plugins, network, config, timing cache, plan (steps 2-7 of the module docstring). Every
    TensorRT object stays referenced here until the plan is serialized (the network uses the parser's weights)."""
    builder = _make_builder(trt, caps, logger)
    caps = probe(trt, builder=builder)
    recipe = make_recipe(caps, job.precision, job.options, needs_plugins=job.needs_plugins,
                         has_calib_cache=job.cache is not None)
    warnings = list(recipe.warnings)
    if job.cache is not None and job.cache.rewritten_from is not None:
        warnings.append(f"calibration cache header rewritten from TRT-{job.cache.rewritten_from} to "
                        f"TRT-{job.cache.version_code} for this build (the file is unchanged)")
    plugins = None
    if job.needs_plugins:
        plugins = _load_plugins(trt, builder, caps, job.plugin_path, job.summary, logger)  # type: ignore[arg-type]
    elif job.plugin_path is not None:
        warnings.append(f"{job.onnx_path.name} has no plugin nodes; the plugin library was not loaded")
    network, _parser, net_value, parse_s = _network(trt, builder, caps, recipe, job, logger)  # _parser: kept alive
    config, keep = _configure(trt, builder, network, recipe, job, shape_inputs, logger)
    tc_file, tc_use = None, None
    if timing_cache_dir is not None:
        tc_file, tc_use = _set_timing_cache(config, caps, timing_cache_dir, gpu, warnings)
    plan, build_s = _serialize(builder, network, config, caps, job, logger, keep.calibrator)
    if tc_file is not None:
        tc_file.save(bytes(memoryview(config.get_timing_cache().serialize())))
    return _Built(caps, recipe, net_value, plugins, tc_use, plan, parse_s, build_s, warnings)


def _network(trt: Any, builder: Any, caps: Capabilities, recipe: Recipe, job: _Job,
             logger: Any) -> tuple[Any, Any, int, float]:
    """``create_network`` with the recipe's flags and the parsed ONNX: (network, parser, flags value, parse s)."""
    net_value = network_flags_value(trt, recipe.network_flags)
    network = builder.create_network(net_value)
    parser = trt.OnnxParser(network, logger)
    for name in recipe.parser_flags:
        parser.set_flag(getattr(trt.OnnxParserFlag, name))
    t_parse = time.perf_counter()
    _parse(trt, parser, caps, job.onnx_path, job.summary, logger)
    return network, parser, net_value, time.perf_counter() - t_parse


@dataclass
class _Owned:
    """Objects the builder config points at, kept alive until the build is done."""

    profiles: list[Any]
    calibrator: Any = None


def _configure(trt: Any, builder: Any, network: Any, recipe: Recipe, job: _Job, shape_inputs: dict[str, Any] | None,
               logger: Any) -> tuple[Any, _Owned]:
    """The builder config: flags and limits, the optimization profile, the cache-only calibrator."""
    config = builder.create_builder_config()
    _apply_config(trt, config, recipe, job.plugin_path)
    opt_profile = _optimization_profile(builder, network, job.input_name, job.profile, shape_inputs, job.onnx_path,
                                        logger)
    config.add_optimization_profile(opt_profile)
    owned = _Owned([opt_profile])
    if recipe.calibrator:
        from segdeploy.trt.calibrator import make_cache_calibrator

        owned.calibrator = make_cache_calibrator(trt, job.cache.data)  # type: ignore[union-attr]
        config.int8_calibrator = owned.calibrator
        if recipe.calibration_profile:
            cp = builder.create_optimization_profile()
            opt = job.profile.opt
            cp.set_shape(job.input_name, opt, opt, opt)
            config.set_calibration_profile(cp)
            owned.profiles.append(cp)
    return config, owned


def _serialize(builder: Any, network: Any, config: Any, caps: Capabilities, job: _Job, logger: Any,
               calibrator: Any) -> tuple[bytes, float]:
    """``build_serialized_network``: (plan bytes, seconds); None -> EngineBuildError with the logger's error."""
    t_build = time.perf_counter()
    mark = logger.mark()
    serialized = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - t_build
    if serialized is None:
        detail = logger.last_error(mark) or "build_serialized_network returned None without logging an error"
        if calibrator is not None and calibrator.batches_requested:
            detail = ("TensorRT rejected the calibration cache and asked for calibration data (the cache's tensor "
                      f"names or header do not fit this network): {detail}")
        raise EngineBuildError(
            f"{caps.describe()} failed to build the {job.precision} engine from {job.onnx_path.name}: {detail}; "
            "re-run verbose for the full TensorRT log", log=logger.text())
    return bytes(memoryview(serialized)), build_s


# ------------------------------------------------------------------------------------------ 3. the record


def _result(job: _Job, built: _Built, gpu: GpuInfo, log_warnings: list[str], log: str | None,
            t_start: float) -> BuildResult:
    from segdeploy.fsutil import sha256_file
    from segdeploy.trt.plan import NotAPlanError, parse_plan_header

    try:
        header = parse_plan_header(built.plan, f"the {job.precision} engine")
    except NotAPlanError as e:
        raise EngineBuildError(f"TensorRT returned something that is not a plan: {e.message}") from None
    warnings = built.warnings + [one_line(w) for w in log_warnings][:20]
    timings = BuildTimings(built.parse_s, built.build_s, time.perf_counter() - t_start)
    return BuildResult(
        plan=built.plan, precision=job.precision, source_onnx=job.onnx_path.name,
        source_sha256=sha256_file(job.onnx_path), tensorrt_version=built.caps.version,
        tensorrt_module=built.caps.module, plan_header=tuple(header.version) if header.version else None,
        gpu=gpu, profile=job.profile, input_name=job.input_name, recipe=built.recipe,
        network_flags_value=built.network_flags_value, options=job.options, plugins=built.plugins,
        calibration_cache=job.cache, timing_cache=built.timing_cache, timings=timings, warnings=tuple(warnings),
        log=log,
    )


# ------------------------------------------------------------------------------------------ the steps' details


def _make_builder(trt: Any, caps: Capabilities, logger: Any) -> Any:
    mark = logger.mark()
    if hasattr(trt, "init_libnvinfer_plugins"):
        trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    err = logger.first_error(mark)
    if err is not None:
        abandon(builder)  # a builder TensorRT failed to create wraps a null handle: never destroy it
        raise EngineBuildError(f"{caps.describe()} could not create a builder: {err}; build on a machine with an "
                               "NVIDIA GPU and a driver that supports this TensorRT", log=logger.text())
    return builder


def _load_plugins(trt: Any, builder: Any, caps: Capabilities, path: Path, summary: _OnnxSummary,
                  logger: Any) -> PluginsLoaded:
    """Load ``path`` into the builder's plugin registry (before parsing) and check the creators the ONNX needs."""
    registry = builder.get_plugin_registry() if hasattr(builder, "get_plugin_registry") else trt.get_plugin_registry()
    mark = logger.mark()
    method = "registry.load_library"
    if caps.plugin_load_library:
        handle = registry.load_library(str(path))
        loaded = handle is not None
    else:  # libraries that register their creators statically when dlopen'ed
        method = "ctypes"
        try:
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            loaded = True
        except OSError as e:
            raise EngineBuildError(f"cannot load the plugin library {path}: {e}; rebuild it for {caps.describe()} "
                                   "(segdeploy plugins build)") from None
    missing = []
    if caps.plugin_get_creator:
        missing = [op for op, ver, ns in summary.plugin_ops if registry.get_creator(op, ver, ns) is None]
    if not loaded and (missing or not caps.plugin_get_creator):
        detail = logger.last_error(mark) or "load_library returned None"
        raise EngineBuildError(f"{caps.describe()} could not load the plugin library {path.name}: {detail}; rebuild "
                               f"it for this TensorRT (segdeploy plugins build --tensorrt-root ...)", log=logger.text())
    if missing:
        raise EngineBuildError(f"the plugin library {path.name} does not provide {', '.join(missing)} for "
                               f"{caps.describe()}; rebuild it from this segdeploy (segdeploy plugins build)")
    return PluginsLoaded(path.name, method, not loaded,
                         tuple(f"{ns}::{op} v{ver}" if ns else f"{op} v{ver}" for op, ver, ns in summary.plugin_ops))


def _parse(trt: Any, parser: Any, caps: Capabilities, path: Path, summary: _OnnxSummary, logger: Any) -> None:
    mark = logger.mark()
    ok = parser.parse_from_file(str(path))
    n = int(parser.num_errors)
    if ok and n == 0:
        return
    if n == 0:
        detail = logger.last_error(mark) or "the parser returned False without an error"
        raise EngineBuildError(f"{caps.describe()} cannot parse {path.name}: {detail}", log=logger.text())
    err = parser.get_error(0)
    name, op = "", ""
    if caps.parser_error_node_info:
        name, op = str(err.node_name() or ""), str(err.node_operator() or "")
    if not op:
        idx = int(err.node())
        if 0 <= idx < len(summary.nodes):
            name, op = summary.nodes[idx][0], summary.nodes[idx][1]
    where = f"node {name or '<unnamed>'} ({op})" if op else "the graph"
    if op.startswith("Segdeploy"):
        fix = f"the plugin library did not register {op}: rebuild it for this TensorRT (segdeploy plugins build)"
    else:
        fix = PARSE_FIXES.get(op, f"{op or 'this op'} is not supported by {caps.describe()}'s ONNX parser; re-run "
                                   "verbose for the parser log")
    more = f" (+{n - 1} more)" if n > 1 else ""
    raise EngineBuildError(f"{caps.describe()} cannot parse {path.name}: {where}: {one_line(str(err.desc()))}{more}; "
                           f"{fix}", log=logger.text())


def _apply_config(trt: Any, config: Any, recipe: Recipe, plugin_path: Path | None) -> None:
    for name in recipe.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if recipe.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, recipe.workspace_bytes)
    if recipe.optimization_level is not None:
        config.builder_optimization_level = recipe.optimization_level
    if recipe.device == "DLA":
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = recipe.dla_core
    if recipe.hardware_compatibility is not None:
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, recipe.hardware_compatibility)
    if recipe.serialize_plugins and plugin_path is not None:
        config.plugins_to_serialize = [str(plugin_path)]


def _dims(shape: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in shape)


def _optimization_profile(builder: Any, network: Any, input_name: str, profile: ShapeProfile,
                          shape_inputs: dict[str, Any] | None, path: Path, logger: Any) -> Any:
    inputs = [network.get_input(i) for i in range(int(network.num_inputs))]
    names = [t.name for t in inputs]
    if input_name not in names:
        raise ArtifactError(f"{path.name} has no input named {input_name!r} (inputs: {', '.join(names)}); the manifest "
                            "does not describe this ONNX: re-run `segdeploy export`")
    p = builder.create_optimization_profile()
    for t in inputs:
        if t.name == input_name:
            dims = _dims(t.shape)
            if len(dims) != 4:
                raise ArtifactError(f"{path.name} input {input_name} has rank {len(dims)}; segdeploy builds NCHW "
                                    "image inputs (rank 4)")
            for axis, label in enumerate("NCHW"):
                fixed = dims[axis]
                lo, hi = profile.min[axis], profile.max[axis]
                if fixed >= 0 and not (lo == hi == fixed):
                    raise ArtifactError(
                        f"{path.name} input {input_name} has a static {label} of {fixed} but the profile asks for "
                        f"{lo}..{hi}; build with the manifest that came with this ONNX"
                    )
            p.set_shape(t.name, profile.min, profile.opt, profile.max)
        elif t.is_shape_tensor:
            vals = (shape_inputs or {}).get(t.name)
            if vals is None:
                raise UsageError(f"{path.name} input {t.name} is a shape tensor; give its min/opt/max values "
                                 "(shape_inputs)")
            p.set_shape_input(t.name, *vals)
        else:
            raise ArtifactError(f"{path.name} has a second data input {t.name!r}; segdeploy builds models with one "
                                f"image input ({input_name})")
    return p


def _set_timing_cache(config: Any, caps: Capabilities, directory: str | os.PathLike, gpu: GpuInfo,
                      warnings: list[str]) -> tuple[Any, TimingCacheUse | None]:
    from segdeploy.trt.timing_cache import TimingCacheFile, gpu_key

    if not caps.timing_cache:
        warnings.append(f"{caps.describe()} has no timing cache API; building without one")
        return None, None
    tc = TimingCacheFile(directory, caps.version, gpu_key(gpu.name, gpu.compute_capability))
    blob = tc.load()
    warnings += tc.warnings
    reused = bool(blob)
    cache = None
    if blob:
        try:
            cache = config.create_timing_cache(blob)
        except Exception as e:  # a blob TensorRT cannot read: never fatal
            warnings.append(f"timing cache {tc.path} rejected by TensorRT ({one_line(str(e), 120)}); a new one is made")
        if cache is None or not config.set_timing_cache(cache, False):
            if cache is not None:
                warnings.append(f"timing cache {tc.path} does not match this device; a new one is made")
            cache, reused = None, False
    if cache is None:
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return tc, TimingCacheUse(str(tc.path), reused)
