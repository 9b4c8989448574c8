"""A strict stand-in for the ``tensorrt`` Python module, generated from the recorded API surface.

``make_trt_module("10.3.0")`` returns a module object that exposes exactly the classes, enums and members
recorded for that TensorRT tag (``tests/trt/data/trt_api_surface.json``, trimmed by
``scripts/trim_trt_surface.py``): anything else raises AttributeError, like the real bindings; enum members carry
the version's recorded header values (``int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)`` is 1 for 10.x
and 0 for 11.1); members the bindings wrap as deprecated warn with DeprecationWarning; setting an attribute a
class does not have raises AttributeError (pybind11 objects have no ``__dict__``).

It simulates the *API conversation* of a build, never its result, and records every call in
``module._standin.calls`` as ``(qualified_name, args, kwargs)``:

* ``Builder.build_serialized_network`` reads the calibrator's cache (as TensorRT does), logs
  ``"stand-in: no build ..."`` at ERROR through the builder's logger and returns None -- it NEVER produces a plan;
* ``Runtime.deserialize_cuda_engine`` logs ``"stand-in: no engine ..."`` and returns None -- never an engine;
* ``OnnxParser.parse_from_file`` reads the real ONNX file: network inputs come from the graph, ops in
  ``unsupported_ops`` fail (default: MaxUnpool, and "MaxPool:indices" = MaxPool with an Indices output, as
  TensorRT's parser documents), and custom-domain (plugin)
  nodes resolve only through creators registered by ``IPluginRegistry.load_library`` *before* parsing;
* ``cuda=False`` makes ``Builder``/``Runtime`` log TensorRT's CUDA-initialisation error;
* ``num_dla_cores`` is what ``builder.num_DLA_cores`` reports.

Members present in the recorded surface but not simulated raise :class:`StandinError` when used (so a test can
never pass by touching an unsimulated API). Severity values are not recorded in the surface: ``int()`` of them
(and of any unrecorded enum member) raises StandinError.
"""

from __future__ import annotations

import json
import os
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SURFACE_PATH = Path(__file__).parent / "data" / "trt_api_surface.json"
SURFACE = json.loads(SURFACE_PATH.read_text())
VERSIONS = tuple(SURFACE["versions"])
NO_BUILD = "stand-in: no build"
NO_ENGINE = "stand-in: no engine"
SEGDEPLOY_CREATORS = (
    ("SegdeployMaxPoolWithIndices", "1", "segdeploy"),
    ("SegdeployMaxUnpool", "1", "segdeploy"),
    ("SegdeployRoiAlign", "1", "segdeploy"),
)
_KEEP_DUNDERS = ("__init__", "__bool__", "__str__", "__repr__")


class StandinError(AssertionError):
    """Code under test used a recorded member the stand-in does not simulate, or an unrecorded enum value."""


@dataclass
class StandinState:
    version: str
    num_dla_cores: int = 0
    cuda: bool = True
    unsupported_ops: frozenset = frozenset({"MaxUnpool", "MaxPool:indices"})
    plugin_creators: tuple = SEGDEPLOY_CREATORS
    calls: list = field(default_factory=list)
    registry: Any = None

    def called(self, name: str) -> list[tuple[tuple, dict]]:
        """(args, kwargs) of every call to ``name`` (e.g. "IBuilderConfig.set_flag")."""
        return [(a, k) for n, a, k in self.calls if n == name]

    def names(self) -> list[str]:
        return [n for n, _, _ in self.calls]


# ------------------------------------------------------------------------------------------------ enums
class StandinEnumMember:
    __slots__ = ("enum", "name", "_value")

    def __init__(self, enum: str, name: str, value: int | None):
        self.enum, self.name, self._value = enum, name, value

    @property
    def value(self) -> int:
        return int(self)

    def __int__(self) -> int:
        if self._value is None:
            raise StandinError(f"stand-in: no recorded value for {self.enum}.{self.name} (compare by name)")
        return self._value

    __index__ = __int__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StandinEnumMember) and (other.enum, other.name) == (self.enum, self.name)

    def __hash__(self) -> int:
        return hash((self.enum, self.name))

    def __repr__(self) -> str:
        return f"<{self.enum}.{self.name}: {self._value}>"

    def __str__(self) -> str:
        return f"{self.enum}.{self.name}"


class StandinEnum:
    __members__: dict[str, StandinEnumMember] = {}


def _make_enum(name: str, members: list[str], values: dict[str, int]) -> type:
    ns: dict[str, Any] = {}
    table = {}
    for m in members:
        clean = m.removesuffix("!D")
        member = StandinEnumMember(name, clean, values.get(clean))
        ns[clean] = member
        table[clean] = member
    ns["__members__"] = table
    return type(name, (StandinEnum,), ns)


# ------------------------------------------------------------------------------------------------ objects
class StandinObject:
    """Base of generated classes: unknown attributes raise AttributeError, unknown sets too."""

    _standin_generated = False

    def __getattr__(self, item: str) -> Any:  # only reached when normal lookup failed
        raise AttributeError(f"stand-in tensorrt {type(self)._mod._standin.version}: "
                             f"'{type(self).__name__}' object has no attribute '{item}'")

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "_s" or not type(self).__dict__.get("_standin_generated", False):
            object.__setattr__(self, key, value)  # internal state, or a Python subclass (has a __dict__)
            return
        desc = getattr(type(self), key, None)
        if isinstance(desc, property) and desc.fset is not None:
            desc.__set__(self, value)
            return
        raise AttributeError(f"stand-in tensorrt {type(self)._mod._standin.version}: cannot set "
                             f"'{type(self).__name__}.{key}'")


def _state(obj: Any) -> StandinState:
    return type(obj)._mod._standin


def _record(obj_or_mod: Any, name: str, args: tuple, kwargs: dict) -> None:
    st = obj_or_mod._standin if isinstance(obj_or_mod, types.ModuleType) else _state(obj_or_mod)
    st.calls.append((name, args, kwargs))


def _new(mod: Any, cls_name: str, **state: Any) -> Any:
    cls = getattr(mod, cls_name)
    obj = object.__new__(cls)
    object.__setattr__(obj, "_s", dict(state))
    return obj


def _log(logger: Any, mod: Any, severity: str, msg: str) -> None:
    logger.log(getattr(mod.ILogger.Severity, severity), msg)


def _expect(value: Any, enum: str) -> None:
    if not (isinstance(value, StandinEnumMember) and value.enum == enum):
        raise TypeError(f"stand-in: expected a {enum} member, got {value!r}")


class _Builder:
    def __init__(self, logger: Any) -> None:
        self._s = {"logger": logger}
        mod = type(self)._mod
        if not _state(self).cuda:
            _log(logger, mod, "ERROR", "createInferBuilder: Error Code 6: API Usage Error (CUDA initialization "
                 "failure with error: 35) [stand-in]")

    @property
    def num_DLA_cores(self) -> int:
        return _state(self).num_dla_cores

    def create_network(self, flags: int = 0) -> Any:
        return _new(type(self)._mod, "INetworkDefinition", flags=int(flags), inputs=[], builder=self)

    def create_builder_config(self) -> Any:
        return _new(type(self)._mod, "IBuilderConfig", flags=set(), pools={}, profiles=[], props={})

    def create_optimization_profile(self) -> Any:
        return _new(type(self)._mod, "IOptimizationProfile", shapes={}, shape_inputs={})

    def get_plugin_registry(self) -> Any:
        return _state(self).registry

    def build_serialized_network(self, network: Any, config: Any) -> None:
        mod = type(self)._mod
        cal = config._s["props"].get("int8_calibrator")
        if cal is not None:  # TensorRT reads the cache first; the stand-in records what it got
            cal.get_batch_size()
            data = cal.read_calibration_cache()
            _record(self, "calibrator.read_calibration_cache->", (bytes(data) if data is not None else None,), {})
        _log(self._s["logger"], mod, "ERROR", f"{NO_BUILD} (segdeploy's TensorRT stand-in records the API calls "
             "and never produces an engine)")
        return None


class _Network:
    @property
    def num_inputs(self) -> int:
        return len(self._s["inputs"])

    def get_input(self, index: int) -> Any:
        return self._s["inputs"][index]

    @property
    def flags(self) -> int:
        return self._s["flags"]

    def get_flag(self, flag: Any) -> bool:
        _expect(flag, "NetworkDefinitionCreationFlag")
        return bool(self._s["flags"] & (1 << int(flag)))


class _Tensor:
    @property
    def name(self) -> str:
        return self._s["name"]

    @property
    def shape(self) -> tuple[int, ...]:
        return self._s["shape"]

    @property
    def is_shape_tensor(self) -> bool:
        return self._s["is_shape_tensor"]


class _ParserError:
    def code(self) -> Any:
        return getattr(type(self)._mod.ErrorCode, self._s["code"])

    def desc(self) -> str:
        return self._s["desc"]

    def node(self) -> int:
        return self._s["node"]

    def node_name(self) -> str:
        return self._s["node_name"]

    def node_operator(self) -> str:
        return self._s["node_operator"]

    def file(self) -> str:
        return "ModelImporter.cpp"

    def line(self) -> int:
        return 0

    def func(self) -> str:
        return "parseNode"

    def __str__(self) -> str:
        return f"In node {self._s['node']} with name: {self._s['node_name']} and operator: {self._s['node_operator']} " \
               f"({self._s['code']}): {self._s['desc']}"


class _OnnxParser:
    def __init__(self, network: Any, logger: Any) -> None:
        self._s = {"network": network, "logger": logger, "errors": []}

    def parse_from_file(self, path: str) -> bool:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        mod = type(self)._mod
        net = self._s["network"]
        inits = {t.name for t in model.graph.initializer}
        for vi in model.graph.input:
            if vi.name in inits:
                continue
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim)
            net._s["inputs"].append(_new(mod, "ITensor", name=vi.name, shape=dims, is_shape_tensor=False))
        registry = _state(self).registry
        for i, node in enumerate(model.graph.node):
            problem = None
            if node.op_type in _state(self).unsupported_ops:
                problem = ("UNSUPPORTED_NODE", f"No importer registered for op: {node.op_type}. Attempting to import "
                           "as plugin. ... Plugin not found, are the plugin name, version, and namespace correct?")
            elif "MaxPool:indices" in _state(self).unsupported_ops and node.op_type == "MaxPool" \
                    and len([o for o in node.output if o]) > 1:
                problem = ("UNSUPPORTED_NODE", "MaxPool with indices output is not supported")
            elif node.domain not in ("", "ai.onnx"):
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                ver = attrs.get("plugin_version", b"1")
                ns = attrs.get("plugin_namespace", b"")
                key = (node.op_type, ver.decode() if isinstance(ver, bytes) else ver,
                       ns.decode() if isinstance(ns, bytes) else ns)
                if key not in registry._s["creators"]:
                    problem = ("UNSUPPORTED_NODE", f"Plugin not found, are the plugin name, version, and namespace "
                               f"correct? ({key[0]} v{key[1]} in namespace {key[2]!r})")
            if problem:
                self._s["errors"].append(_new(mod, "ParserError", code=problem[0], desc=problem[1], node=i,
                                              node_name=node.name, node_operator=node.op_type))
                return False
        return True

    def set_flag(self, flag: Any) -> None:
        _expect(flag, "OnnxParserFlag")
        self._s.setdefault("flags", set()).add(flag.name)

    @property
    def num_errors(self) -> int:
        return len(self._s["errors"])

    def get_error(self, index: int) -> Any:
        return self._s["errors"][index]

    def clear_errors(self) -> None:
        self._s["errors"].clear()


class _Config:
    def set_flag(self, flag: Any) -> None:
        _expect(flag, "BuilderFlag")
        self._s["flags"].add(flag.name)

    def clear_flag(self, flag: Any) -> None:
        _expect(flag, "BuilderFlag")
        self._s["flags"].discard(flag.name)

    def get_flag(self, flag: Any) -> bool:
        _expect(flag, "BuilderFlag")
        return flag.name in self._s["flags"]

    @property
    def flags(self) -> int:
        bf = type(self)._mod.BuilderFlag
        return sum(1 << int(getattr(bf, n)) for n in self._s["flags"])

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        _expect(pool, "MemoryPoolType")
        self._s["pools"][pool.name] = int(size)

    def get_memory_pool_limit(self, pool: Any) -> int:
        return self._s["pools"].get(pool.name, 0)

    def add_optimization_profile(self, profile: Any) -> int:
        self._s["profiles"].append(profile)
        return len(self._s["profiles"]) - 1

    @property
    def num_optimization_profiles(self) -> int:
        return len(self._s["profiles"])

    def set_calibration_profile(self, profile: Any) -> bool:
        self._s["props"]["calibration_profile"] = profile
        return True

    def get_calibration_profile(self) -> Any:
        return self._s["props"].get("calibration_profile")

    def create_timing_cache(self, serialized: bytes) -> Any:
        return _new(type(self)._mod, "ITimingCache", data=bytes(serialized))

    def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
        self._s["props"]["timing_cache"] = cache
        return True

    def get_timing_cache(self) -> Any:
        return self._s["props"].get("timing_cache")


def _config_property(name: str, enum: str | None = None, default: Any = None) -> property:
    def fget(self: Any) -> Any:
        return self._s["props"].get(name, default)

    def fset(self: Any, value: Any) -> None:
        if enum is not None:
            _expect(value, enum)
        self._s["props"][name] = value

    return property(fget, fset)


for _n, _e, _d in (("builder_optimization_level", None, 3), ("default_device_type", "DeviceType", None),
                   ("DLA_core", None, -1), ("hardware_compatibility_level", "HardwareCompatibilityLevel", None),
                   ("plugins_to_serialize", None, ()), ("int8_calibrator", None, None)):
    setattr(_Config, _n, _config_property(_n, _e, _d))


class _Profile:
    def set_shape(self, name: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - TensorRT's names
        lo, mid, hi = tuple(min), tuple(opt), tuple(max)
        if not (len(lo) == len(mid) == len(hi)) or any(not a <= b <= c for a, b, c in zip(lo, mid, hi)):
            raise ValueError(f"stand-in: invalid profile for {name}: {lo} {mid} {hi}")
        self._s["shapes"][name] = (lo, mid, hi)

    def get_shape(self, name: str) -> Any:
        return list(self._s["shapes"][name])

    def set_shape_input(self, name: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002
        self._s["shape_inputs"][name] = (tuple(min), tuple(opt), tuple(max))

    def __bool__(self) -> bool:
        return True


class _Registry:
    def load_library(self, path: str) -> Any:
        st = _state(self)
        if not os.path.isfile(path):
            if st.registry._s.get("logger") is not None:
                _log(st.registry._s["logger"], type(self)._mod, "ERROR", f"Cannot load library: {path}")
            return None
        if path in self._s["libraries"]:
            return None  # "None if any of the plugins are already registered"
        self._s["libraries"].append(path)
        self._s["creators"].update(st.plugin_creators)
        return ("stand-in library handle", path)

    def deregister_library(self, handle: Any) -> None:
        self._s["libraries"].remove(handle[1])

    def get_creator(self, name: str, version: str, namespace: str = "") -> Any:
        return ("stand-in creator", name, version, namespace) if (name, version, namespace) in self._s["creators"] else None

    def get_plugin_creator(self, type: str, version: str, plugin_namespace: str = "") -> None:  # noqa: A002
        return None  # V2 lookup: segdeploy's plugins are IPluginV3 creators


class _Runtime:
    def __init__(self, logger: Any) -> None:
        self._s = {"logger": logger, "props": {}}
        if not _state(self).cuda:
            _log(logger, type(self)._mod, "ERROR", "createInferRuntime: Error Code 6: API Usage Error (CUDA "
                 "initialization failure with error: 35) [stand-in]")

    def deserialize_cuda_engine(self, serialized_engine: Any) -> None:
        _log(self._s["logger"], type(self)._mod, "ERROR", f"{NO_ENGINE} (segdeploy's TensorRT stand-in never "
             "deserializes a plan)")
        return None

    def get_plugin_registry(self) -> Any:
        return _state(self).registry

    @property
    def engine_host_code_allowed(self) -> bool:
        return self._s["props"].get("engine_host_code_allowed", False)

    @engine_host_code_allowed.setter
    def engine_host_code_allowed(self, value: bool) -> None:
        self._s["props"]["engine_host_code_allowed"] = bool(value)


class _Logger:
    def __init__(self, min_severity: Any = None) -> None:
        self._s = {"messages": []}

    def log(self, severity: Any, msg: str) -> None:
        self._s["messages"].append((severity.name, msg))


class _ILogger:
    def __init__(self) -> None:
        pass


class _Calibrator:
    def __init__(self) -> None:
        pass


class _EntropyCalibrator2(_Calibrator):
    def get_algorithm(self) -> Any:
        return type(self)._mod.CalibrationAlgoType.ENTROPY_CALIBRATION_2


IMPLS: dict[str, type] = {
    "Builder": _Builder, "INetworkDefinition": _Network, "ITensor": _Tensor, "ParserError": _ParserError,
    "OnnxParser": _OnnxParser, "IBuilderConfig": _Config, "IOptimizationProfile": _Profile,
    "IPluginRegistry": _Registry, "Runtime": _Runtime, "Logger": _Logger, "ILogger": _ILogger,
    "IInt8Calibrator": _Calibrator, "IInt8EntropyCalibrator2": _EntropyCalibrator2,
}
BASES = {"Logger": "ILogger", "IInt8EntropyCalibrator2": "IInt8Calibrator"}


def _lookup(impl: type, name: str) -> Any:
    for klass in impl.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


def _not_simulated(cls_name: str, member: str, version: str) -> Any:
    class NotSimulated:
        def __get__(self, obj: Any, owner: Any = None) -> Any:
            if obj is None:
                return self
            raise StandinError(f"stand-in: {cls_name}.{member} exists in TensorRT {version} but is not simulated")

        def __set__(self, obj: Any, value: Any) -> None:
            raise StandinError(f"stand-in: {cls_name}.{member} exists in TensorRT {version} but is not simulated")

    return NotSimulated()


def _wrap_function(qual: str, fn: Any, deprecated: bool) -> Any:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if deprecated:
            warnings.warn(f"{qual} is deprecated (stand-in)", DeprecationWarning, stacklevel=2)
        _record(self, qual, args, kwargs)
        return fn(self, *args, **kwargs)

    wrapper.__name__ = fn.__name__
    return wrapper


def _wrap_property(qual: str, prop: property, deprecated: bool) -> property:
    def fget(self: Any) -> Any:
        if deprecated:
            warnings.warn(f"{qual} is deprecated (stand-in)", DeprecationWarning, stacklevel=2)
        return prop.fget(self)  # type: ignore[misc]

    def fset(self: Any, value: Any) -> None:
        if deprecated:
            warnings.warn(f"{qual} is deprecated (stand-in)", DeprecationWarning, stacklevel=2)
        _record(self, f"{qual}=", (value,), {})
        prop.fset(self, value)  # type: ignore[misc]

    return property(fget, fset if prop.fset is not None else None)


class StandinModule(types.ModuleType):
    _standin: StandinState

    def __getattr__(self, item: str) -> Any:
        raise AttributeError(f"stand-in tensorrt {self._standin.version} has no attribute '{item}'")


def make_trt_module(version: str, *, version_string: str | None = None, num_dla_cores: int = 0, cuda: bool = True,
                    unsupported_ops: frozenset | set | None = None,
                    plugin_creators: tuple = SEGDEPLOY_CREATORS) -> StandinModule:
    """The stand-in for TensorRT ``version`` (one of :data:`VERSIONS`); see the module docstring."""
    surface = SURFACE["versions"][version]
    mod = StandinModule("tensorrt", f"segdeploy test stand-in for TensorRT {version} (never builds or runs)")
    parts = version.split(".")
    mod.__version__ = version_string or ".".join((parts + ["0", "0", "0"])[:4])
    state = StandinState(version=version, num_dla_cores=num_dla_cores, cuda=cuda,
                         unsupported_ops=frozenset(unsupported_ops) if unsupported_ops is not None
                         else frozenset({"MaxUnpool", "MaxPool:indices"}), plugin_creators=plugin_creators)
    mod._standin = state
    classes = surface["classes"]
    values = surface["enum_values"]
    nested = {enum: owners for enum, owners in SURFACE["nested"].items()}
    enums = {n: _make_enum(n, c["members"], values.get(n, {})) for n, c in classes.items() if c["kind"] == "enum"}
    for name, enum_cls in enums.items():
        if name not in nested:
            setattr(mod, name, enum_cls)
    order = sorted((n for n, c in classes.items() if c["kind"] == "class"), key=lambda n: n in BASES)
    for name in order:
        impl = IMPLS.get(name, object)
        base_name = BASES.get(name)
        base = getattr(mod, base_name) if base_name and base_name in classes else StandinObject
        ns: dict[str, Any] = {"_standin_generated": True, "_mod": mod, "__module__": "tensorrt"}
        for raw in classes[name]["members"]:
            member = raw.removesuffix("!D")
            deprecated = raw.endswith("!D")
            if member.startswith("__") and member not in _KEEP_DUNDERS:
                continue
            attr = _lookup(impl, member) if impl is not object else None
            qual = f"{name}.{member}"
            if attr is None:
                if member == "__init__":
                    def attr(self: Any, *a: Any, **k: Any) -> None:  # noqa: E306 - a plain, recorded init
                        pass
                elif member.startswith("__"):
                    continue
                else:
                    ns[member] = _not_simulated(name, member, version)
                    continue
            ns[member] = _wrap_property(qual, attr, deprecated) if isinstance(attr, property) \
                else _wrap_function(qual, attr, deprecated)
        for enum, owners in nested.items():
            if name in owners and enum in enums:
                ns[enum] = enums[enum]
                for m, member_obj in enums[enum].__members__.items():  # py::enum_(...).export_values()
                    ns[m] = member_obj
        setattr(mod, name, type(name, (base,), ns))
    registry = _new(mod, "IPluginRegistry", libraries=[], creators=set(), logger=None)
    state.registry = registry
    for fn in surface["module_functions"]:
        if fn == "init_libnvinfer_plugins":
            def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
                state.calls.append(("init_libnvinfer_plugins", (logger, namespace), {}))
                return True
            mod.init_libnvinfer_plugins = init_libnvinfer_plugins
        elif fn == "get_plugin_registry":
            def get_plugin_registry() -> Any:
                state.calls.append(("get_plugin_registry", (), {}))
                return registry
            mod.get_plugin_registry = get_plugin_registry
        else:
            def unsimulated(*a: Any, _fn: str = fn, **k: Any) -> Any:
                raise StandinError(f"stand-in: tensorrt.{_fn} exists in TensorRT {version} but is not simulated")
            setattr(mod, fn, unsimulated)
    return mod
