"""Loading an untrusted ``.pt2`` with every place that turns file content into running code restricted.

Contract
--------
:func:`restricted_pt2_load` is the block inside which segdeploy calls ``torch.export.load`` and
``ExportedProgram.module()`` on an untrusted file. For its duration (in the calling thread; the replacements act
as the originals in other threads and after the block) every place where that code turns file content into
running code is restricted **at the call PyTorch makes** (blocks of different threads, and the patch windows of
:func:`~segdeploy.safety.factories.no_downloads`, run one at a time):

- ``torch.load`` (sample inputs; weights and constants marked ``use_pickle``) always runs PyTorch's
  weights-only unpickler, which resolves only tensor/storage/container globals; when the caller asked
  for ``weights_only=False`` and that unpickler refuses, the load is refused;
- ``pickle.load``/``loads``/``Unpickler`` (opaque objects) and ``torch._C._pickle_load_obj`` (TorchScript
  custom objects) are refused; so is AOTInductor's ``AOTIModelPackageLoader`` (it loads native code);
- the ``eval`` in SymPy's parser (PyTorch parses the program's shape expressions with ``sympy.sympify``)
  accepts only SymPy arithmetic on symbols and numbers (:func:`~segdeploy.safety.codecheck.check_sympy_code`);
- the ``exec`` of FX's generated ``forward`` code and of the input-guard function accepts only calls of
  PyTorch operators, shape methods and submodules
  (:func:`~segdeploy.safety.codecheck.check_generated_python`);
- ``PT2ArchiveReader.read_bytes`` refuses absolute, ``..`` and ``//`` record names, and remembers which
  entry each payload came from, so a refusal names the entry; the JSON records PyTorch parses with plain
  ``json.loads`` (the program under ``models/``, the weights and constants configs) are first parsed with
  :func:`segdeploy.jsonio.parse` (size and nesting depth bounded), so a config nested 100 000 deep is an
  :class:`~segdeploy.safety.archive.ArchiveError` naming the entry, not a ``RecursionError``.

A refusal raises :class:`Refused` -- a ``BaseException``, so PyTorch's ``except Exception`` fallbacks
cannot swallow it -- and is also kept in ``guard.refusal``. If one of these places cannot be found in
the installed PyTorch/SymPy, entering the block raises :class:`UnrestrictableTorch` (never an
unrestricted load).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import os
import pickle
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from segdeploy.jsonio import MAX_DEPTH
from segdeploy.jsonio import parse as parse_json
from segdeploy.safety.archive import AOTI_DIR, ArchiveError
from segdeploy.safety.codecheck import CodeProblem, check_generated_python, check_sympy_code
from segdeploy.safety.patching import PATCH_LOCK, patched


class Refused(BaseException):
    """Raised at a sink inside :func:`restricted_pt2_load`: ``entry`` would run code (``reason`` says how)."""

    def __init__(self, entry: str, reason: str):
        super().__init__(f"{entry} ({reason})")
        self.entry = entry
        self.reason = reason


class UnrestrictableTorch(Refused):
    """Raised on entering :func:`restricted_pt2_load` when a sink is not where this module expects it."""

    def __init__(self, reason: str):
        super().__init__("the program", reason)


_ACTIVE = threading.local()


def _active() -> bool:
    return getattr(_ACTIVE, "guard", None) is not None


def weights_only_complaint(e: BaseException) -> str:
    """PyTorch's weights-only refusal as one short clause (``unpickling it calls exec``)."""
    text = " ".join(str(e).split())
    m = re.search(r"GLOBAL (\S+) was not an allowed global", text)
    if m:
        return f"unpickling it calls {m.group(1)}"
    m = re.search(r"Unsupported (?:global|operand)[^.]*", text)
    return m.group(0)[:120] if m else "PyTorch's weights-only unpickler refuses it"


@dataclass
class LoadGuard:
    """State of one :func:`restricted_pt2_load` block: which entry each payload came from, the refusal."""

    entries: dict[str, str] = field(default_factory=dict)  # digest of a payload -> record name
    program: str = "models/model.json"
    refusal: Refused | None = None
    checked: set[tuple[str, tuple[tuple[str, int], ...]]] = field(default_factory=set)  # (source, namespace ids)

    def check_python(self, src: str, namespace: dict[str, Any]) -> None:
        """check_generated_python, once per (source, namespace objects): PyTorch recompiles the same graph often."""
        key = (src, tuple(sorted((k, id(v)) for k, v in namespace.items())))
        if key not in self.checked:
            check_generated_python(src, namespace)
            self.checked.add(key)

    def remember(self, name: str, data: bytes) -> None:
        self.entries[hashlib.blake2b(data, digest_size=16).hexdigest()] = name
        if name.startswith("models/") and name.endswith(".json"):
            self.program = name

    def entry_of(self, payload: Any) -> str:
        if isinstance(payload, (str, os.PathLike)):
            return os.fspath(payload)
        try:
            if isinstance(payload, io.BytesIO):
                with payload.getbuffer() as view:
                    digest = hashlib.blake2b(view, digest_size=16).hexdigest()
            else:
                digest = hashlib.blake2b(bytes(payload), digest_size=16).hexdigest()
        except (TypeError, ValueError, BufferError):
            return "an archive entry"
        return self.entries.get(digest, "an archive entry")

    def refuse(self, entry: str, reason: str) -> Refused:
        r = Refused(entry, reason)
        if self.refusal is None:
            self.refusal = r
        return r


def _sinks(guard: LoadGuard) -> list[tuple[Any, str, Any]]:
    """(owner, attribute, replacement) for every place PyTorch runs file content; UnrestrictableTorch if one
    is not where this module expects it."""
    import importlib

    def need(module: str, attr: str | None = None, calls: tuple[Callable[..., Any], str] | None = None) -> Any:
        try:
            mod = importlib.import_module(module)
            obj = getattr(mod, attr) if attr else mod
        except (ImportError, AttributeError):
            raise UnrestrictableTorch(f"{module}{'.' + attr if attr else ''} not found") from None
        code = getattr(calls[0], "__code__", None) if calls is not None else None
        if calls is not None and (code is None or calls[1] not in code.co_names):
            raise UnrestrictableTorch(f"{module}.{calls[0].__name__} no longer calls {calls[1]}")
        return obj

    import torch

    serialization = need("torch.serialization")
    unlift = need("torch.export._unlift")
    fx_graph_module = need("torch.fx.graph_module")
    sympy_parser = need("sympy.parsing.sympy_parser")
    need("torch.fx.graph_module", "_exec_with_source", (need("torch.fx.graph_module", "_method_from_src"),
                                                       "_exec_with_source"))
    need("torch.export._unlift", "_convert_guards_code_to_fn",
         (need("torch.export._unlift", "_convert_guards_code_to_fn"), "exec"))
    need("sympy.parsing.sympy_parser", "eval_expr", (need("sympy.parsing.sympy_parser", "eval_expr"), "eval"))
    reader = need("torch.export.pt2_archive._package", "PT2ArchiveReader")
    need("torch._C", "_pickle_load_obj")

    real_load = serialization.load
    sinks: list[tuple[Any, str, Any]] = [
        (torch, "load", _restricted_torch_load(guard, real_load)),
        (serialization, "load", _restricted_torch_load(guard, real_load)),
        (pickle, "loads", _refusing(guard, pickle.loads, "an opaque object: unpickling it can run any code")),
        (pickle, "load", _refusing(guard, pickle.load, "a pickled object: unpickling it can run any code")),
        (pickle, "Unpickler", _refusing_unpickler(guard)),
        (torch._C, "_pickle_load_obj", _refusing(guard, torch._C._pickle_load_obj,
                                                 "a TorchScript custom object: loading it runs its class's code")),
        (reader, "read_bytes", _remembering_read(guard, reader.read_bytes)),
        (fx_graph_module, "_exec_with_source", _checked_fx_exec(guard, fx_graph_module._exec_with_source)),
        (unlift, "exec", _checked_exec(guard, "its input-guard code")),
        (sympy_parser, "eval", _checked_sympy_eval(guard)),
    ]
    aoti = getattr(torch._C, "_aoti", None)
    if aoti is not None and hasattr(aoti, "AOTIModelPackageLoader"):
        sinks.append((aoti, "AOTIModelPackageLoader", _refusing_aoti(guard, aoti.AOTIModelPackageLoader)))
    return sinks


def _restricted_torch_load(guard: LoadGuard, real: Callable[..., Any]) -> Callable[..., Any]:
    def load(f: Any, map_location: Any = None, pickle_module: Any = None, *, weights_only: bool | None = None,
             **kwargs: Any) -> Any:
        if not _active():
            return real(f, map_location, pickle_module, weights_only=weights_only, **kwargs)
        try:
            return real(f, map_location, weights_only=True, **kwargs)
        except pickle.UnpicklingError as e:
            if weights_only is False or pickle_module is not None:
                raise guard.refuse(guard.entry_of(f), weights_only_complaint(e)) from None
            raise
    return load


def _refusing(guard: LoadGuard, real: Callable[..., Any], reason: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        if not _active():
            return real(*args, **kwargs)
        raise guard.refuse(guard.entry_of(args[0]) if args else "an archive entry", reason)
    return refuse


def _refusing_unpickler(guard: LoadGuard) -> type:
    class Unpickler(pickle.Unpickler):  # subclasses made inside the block keep working after it
        def __init__(self, *args: Any, **kwargs: Any):
            if _active():
                raise guard.refuse("an archive entry", "a pickled object: unpickling it can run any code")
            super().__init__(*args, **kwargs)
    return Unpickler


def _refusing_aoti(guard: LoadGuard, real: type) -> type:
    reason = "compiled AOTInductor libraries: loading them runs native code"

    class AOTIModelPackageLoader:
        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            if _active():
                raise guard.refuse(AOTI_DIR, reason)
            return real(*args, **kwargs)

        @staticmethod
        def load_metadata_from_package(*args: Any, **kwargs: Any) -> Any:
            if _active():
                raise guard.refuse(AOTI_DIR, reason)
            return real.load_metadata_from_package(*args, **kwargs)
    return AOTIModelPackageLoader


def _remembering_read(guard: LoadGuard, real: Callable[..., bytes]) -> Callable[..., bytes]:
    def read_bytes(reader: Any, name: str) -> bytes:
        if not _active():
            return real(reader, name)
        parts = name.split("/")
        if name.startswith("/") or "" in parts or ".." in parts or "\\" in name:
            raise guard.refuse(name, "an absolute, '..' or '//' record path: it could name another entry")
        data = real(reader, name)
        guard.remember(name, data)
        check_json_record(name, data)
        return data
    return read_bytes


# The records PyTorch parses with plain ``json.loads`` (one recursion per nesting level): the programs under
# models/ and the payload configs (data/weights/<model>_weights_config.json, data/constants/..._config.json).
_PROGRAM_DIR = "models/"
_CONFIG_SUFFIX = "_config.json"
MAX_JSON_RECORD_BYTES = 1 << 30  # torch.export.save writes a few MiB for large models; read_pt2_layout bounds the total
_PROGRAM_MAX_DEPTH = 256  # a program nests ~7 levels per control-flow subgraph (torch.cond); configs: jsonio's default


def check_json_record(name: str, data: bytes) -> None:
    """ArchiveError naming ``name`` when it is a JSON record PyTorch parses and it is too large, nested too deep
    or not JSON (:func:`segdeploy.jsonio.parse`); other records pass."""
    if name.startswith(_PROGRAM_DIR):
        depth = _PROGRAM_MAX_DEPTH
    elif name.endswith(_CONFIG_SUFFIX):
        depth = MAX_DEPTH
    else:
        return
    try:
        parse_json(data, max_bytes=MAX_JSON_RECORD_BYTES, max_depth=depth)
    except ValueError as e:
        raise ArchiveError(f"{name} is not valid JSON ({e})") from None


def _checked_fx_exec(guard: LoadGuard, real: Callable[..., Any]) -> Callable[..., Any]:
    def exec_with_source(src: str, globals: dict[str, Any], co_fields: Any = None) -> Any:
        if _active():
            try:
                guard.check_python(src, globals)
            except CodeProblem as e:
                raise guard.refuse(guard.program,
                                   f"PyTorch would run part of it as Python: its generated forward code {e}") from None
        return real(src, globals, co_fields)
    return exec_with_source


def _checked_exec(guard: LoadGuard, what: str) -> Callable[..., Any]:
    def exec_(code: Any, globals: dict[str, Any] | None = None, locals: Any = None) -> Any:
        if _active():
            if not isinstance(code, str):
                raise guard.refuse(guard.program, f"PyTorch would run {what}, which segdeploy cannot check")
            try:
                guard.check_python(code, globals or {})
            except CodeProblem as e:
                raise guard.refuse(guard.program, f"PyTorch would run part of it as Python: {what} {e}") from None
        return builtins.exec(code, globals, locals)
    return exec_


def _checked_sympy_eval(guard: LoadGuard) -> Callable[..., Any]:
    def eval_(code: Any, globals: dict[str, Any] | None = None, locals: Any = None) -> Any:
        if _active():
            try:
                check_sympy_code(code, globals, locals)
            except CodeProblem as e:
                raise guard.refuse(guard.program,
                                   f"PyTorch would run part of it as Python: a shape expression {e}") from None
        return builtins.eval(code, globals, locals)
    return eval_


@contextlib.contextmanager
def restricted_pt2_load() -> Iterator[LoadGuard]:
    """Restrict every sink of ``torch.export.load``/``.module()`` inside the block (see module docstring)."""
    if _active():
        raise RuntimeError("restricted_pt2_load is not re-entrant")
    guard = LoadGuard()
    with PATCH_LOCK, patched(_sinks(guard)):  # _sinks: UnrestrictableTorch when PyTorch has moved a sink
        _ACTIVE.guard = guard
        try:
            yield guard
        finally:
            _ACTIVE.guard = None
