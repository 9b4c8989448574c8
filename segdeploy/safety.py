"""What loading a model must never do: run code from an untrusted file, or download weights.

Contract
--------
* :func:`read_pt2_layout` reads a ``torch.export`` archive's central directory (no member is read or
  inflated) and raises :class:`ArchiveError` (one clause: what is wrong) when PyTorch's reader could see
  other files than the ones named, or when the archive is a zip bomb: member names that are not valid
  text (or hold control characters or ``\\``), absolute names, empty (``//``), ``.`` or ``..`` path
  segments, members outside the first member's top directory (PyTorch's root), names equal up to ASCII
  case (PyTorch looks records up case-insensitively), more than one ``archive_format`` entry; a member
  over 1 MiB that inflates more than 100:1 (``torch.export.save`` stores members uncompressed), or
  declared content larger than this machine's memory.
* :func:`restricted_pt2_load` is the block inside which segdeploy calls ``torch.export.load`` and
  ``ExportedProgram.module()`` on an untrusted file. For its duration (in the calling thread; the
  replacements act as the originals in other threads and after the block) every place where that code
  turns file content into running code is restricted **at the call PyTorch makes** (blocks of different
  threads, and the patch windows of :func:`no_downloads`, run one at a time):

  - ``torch.load`` (sample inputs; weights and constants marked ``use_pickle``) always runs PyTorch's
    weights-only unpickler, which resolves only tensor/storage/container globals; when the caller asked
    for ``weights_only=False`` and that unpickler refuses, the load is refused;
  - ``pickle.load``/``loads``/``Unpickler`` (opaque objects) and ``torch._C._pickle_load_obj`` (TorchScript
    custom objects) are refused; so is AOTInductor's ``AOTIModelPackageLoader`` (it loads native code);
  - the ``eval`` in SymPy's parser (PyTorch parses the program's shape expressions with ``sympy.sympify``)
    accepts only SymPy arithmetic on symbols and numbers;
  - the ``exec`` of FX's generated ``forward`` code and of the input-guard function (parameter names and
    guard strings from the program JSON end up in that code) accepts only calls of PyTorch operators,
    shape methods and submodules;
  - ``PT2ArchiveReader.read_bytes`` refuses absolute, ``..`` and ``//`` record names, and remembers which
    entry each payload came from, so a refusal names the entry.

  A refusal raises :class:`Refused` -- a ``BaseException``, so PyTorch's ``except Exception`` fallbacks
  cannot swallow it -- and is also kept in ``guard.refusal``. If one of these places cannot be found in
  the installed PyTorch/SymPy, entering the block raises :class:`UnrestrictableTorch` (never an
  unrestricted load).
* :func:`captured_diagnostics` records Python warnings and the records of the ``torch`` and
  ``huggingface_hub`` loggers inside the block instead of printing them (restored on exit).
* :func:`no_downloads` makes outbound connections inside it fail fast and records them, so a factory that
  tries to fetch pretrained weights fails instead of downloading: it patches ``socket.getaddrinfo``,
  ``socket.socket.connect``/``connect_ex`` and ``_socket.socket``/``_socket.getaddrinfo`` (local names and
  AF_UNIX sockets pass), and sets ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``/``HF_DATASETS_OFFLINE`` so
  the Hugging Face libraries refuse at once instead of retrying; all restored on exit. It is a guard
  against accidental downloads, not a sandbox: native code, child processes that ignore those variables
  and references taken before the block are not covered. Factory code is trusted code.
* :func:`no_process_exit` turns ``os._exit`` inside it into :class:`ProcessExit`, so a factory that
  calls it cannot end the command with exit status 0.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import functools
import hashlib
import io
import logging
import os
import pickle
import re
import socket
import threading
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

# ----------------------------------------------------------------------------- archive layout

_AOTI = "data/aotinductor/"
_RATIO_FLOOR = 1 << 20  # members below 1 MiB are never called bombs
_MAX_RATIO = 100


class ArchiveError(ValueError):
    """The archive's layout is ambiguous or it is a zip bomb; ``str()`` says what is wrong."""


@dataclass
class ArchiveLayout:
    """What :func:`read_pt2_layout` found: the root directory and the member names below it."""

    root: str
    members: list[str]  # relative to the root, as PyTorch's reader names them
    declared_bytes: int

    @property
    def has_aotinductor(self) -> bool:
        return any(m.startswith(_AOTI) for m in self.members)


def _member_name(info: zipfile.ZipInfo) -> str:
    """The name as PyTorch's reader sees it (raw bytes as UTF-8); ArchiveError if it is not clean text."""
    raw = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveError(f"member name {raw[:60]!r} is not valid UTF-8 text") from None
    if any(ord(c) < 32 or c in "\x7f\\" for c in name):
        raise ArchiveError(f"member name {name[:60]!r} holds control characters or backslashes")
    path = name[:-1] if name.endswith("/") else name
    parts = path.split("/")
    if name.startswith("/"):
        raise ArchiveError(f"member {name[:80]!r} has an absolute path")
    if "" in parts:
        raise ArchiveError(f"member {name[:80]!r} has an empty path segment ('//')")
    if "." in parts or ".." in parts:
        raise ArchiveError(f"member {name[:80]!r} has a '.' or '..' path segment")
    return name


def _check_sizes(infos: list[zipfile.ZipInfo]) -> int:
    for info in infos:
        if info.file_size > _RATIO_FLOOR and info.file_size > _MAX_RATIO * max(info.compress_size, 1):
            raise ArchiveError(
                f"member {info.filename[:80]!r} inflates {info.file_size // max(info.compress_size, 1)}:1 "
                f"({info.file_size / 2**20:.0f} MiB from {info.compress_size / 2**10:.0f} KiB): a zip bomb")
    total = sum(i.file_size for i in infos)
    memory = _physical_memory()
    if memory and total > memory:
        raise ArchiveError(f"its members declare {total / 2**30:.1f} GiB of content, more than this machine's "
                           f"memory ({memory / 2**30:.1f} GiB)")
    return total


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def read_pt2_layout(data: bytes) -> ArchiveLayout:
    """Check a ``.pt2`` archive's layout and declared sizes (see module docstring); nothing is inflated."""
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ArchiveError(f"it is not a readable zip archive ({e})") from None
    if not infos:
        raise ArchiveError("it has no members")
    names = [_member_name(i) for i in infos]
    root = names[0].split("/")[0]
    seen: dict[str, str] = {}
    for n in names:
        if n.split("/")[0] != root or ("/" not in n):
            raise ArchiveError(f"member {n[:80]!r} is outside the archive's root directory {root!r}/ (two roots)")
        key = n.lower()
        if key in seen:
            same = "twice" if seen[key] == n else f"and as {seen[key][:80]!r} (PyTorch ignores case)"
            raise ArchiveError(f"member {n[:80]!r} is present {same}")
        seen[key] = n
    formats = [n for n in names if n.rstrip("/").split("/")[-1] == "archive_format"]
    if formats != [f"{root}/archive_format"]:
        raise ArchiveError(f"it has {len(formats)} archive_format entries ({', '.join(f[:60] for f in formats[:3])}); "
                           f"a torch.export archive has exactly {root}/archive_format")
    total = _check_sizes(infos)
    members = [n[len(root) + 1:] for n in names if n != f"{root}/"]
    return ArchiveLayout(root=root, members=members, declared_bytes=total)


# ----------------------------------------------------------------------------- code checks


class CodeProblem(ValueError):
    """Code PyTorch is about to run does something other than shape arithmetic or operator calls."""


_SAFE_TENSOR_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel", "item"})
_SAFE_BUILTIN_NAMES = frozenset({"getattr", "None", "True", "False"})
_UNSAFE_OPERATOR_FUNCS = frozenset({"call", "attrgetter", "methodcaller"})
_WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=1)
def _pytorch_functions() -> tuple[Any, ...]:
    """Plain Python functions PyTorch's own generated code calls (besides operators)."""
    import torch
    import torch.fx._pytree as fx_pytree
    import torch.utils._pytree as pytree

    found: list[Any] = [torch._assert, torch.device, fx_pytree.tree_flatten_spec, pytree.tree_unflatten,
                        pytree.tree_flatten]
    for name in ("sym_int", "sym_float", "sym_ite", "sym_max", "sym_min", "sym_not", "sym_sqrt", "sym_sum",
                 "_check", "_check_is_size"):
        if hasattr(torch, name):
            found.append(getattr(torch, name))
    try:
        from torch.fx.experimental.symbolic_shapes import SYMPY_INTERP

        found += [v for v in SYMPY_INTERP.values() if callable(v) and not isinstance(v, type(torch))]
    except ImportError:  # pragma: no cover - other versions
        pass
    return tuple(found)


def _is_pytorch_callable(obj: Any) -> bool:
    import math
    import operator

    import torch

    ops = tuple(t for t in (getattr(torch._ops, "OpOverload", None), getattr(torch._ops, "OpOverloadPacket", None),
                            getattr(torch._ops, "HigherOrderOperator", None)) if t is not None)
    if ops and isinstance(obj, ops):
        return True
    if any(obj is f for f in _pytorch_functions()):
        return True
    name = getattr(obj, "__name__", "")
    if getattr(operator, name, None) is obj:
        return name not in _UNSAFE_OPERATOR_FUNCS
    return getattr(math, name, None) is obj and callable(obj)


class _PythonCheck:
    """Allow-list check of Python source that PyTorch generated and is about to ``exec``."""

    def __init__(self, namespace: dict[str, Any]):
        self.namespace = namespace
        self.locals: set[str] = set()  # of the function being checked
        self.has_self = False  # its first parameter is ``self`` (the GraphModule)

    def module(self, src: str) -> None:
        try:
            tree = ast.parse(src)
        except (SyntaxError, ValueError) as e:
            raise CodeProblem(f"is not valid Python ({e.msg if isinstance(e, SyntaxError) else e})") from None
        for stmt in tree.body:
            if not isinstance(stmt, ast.FunctionDef) or stmt.decorator_list:
                raise CodeProblem(f"runs a top-level {type(stmt).__name__} statement")
            self.function(stmt)

    def function(self, fn: ast.FunctionDef) -> None:
        a = fn.args
        params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *(x for x in (a.vararg, a.kwarg) if x)]
        self.has_self = bool(params) and params[0].arg == "self" and params[0] in (*a.posonlyargs, *a.args)
        self.locals = set()
        for i, arg in enumerate(params):
            if arg.arg in _SAFE_BUILTIN_NAMES or arg.arg in self.namespace or (arg.arg == "self" and i > 0):
                raise CodeProblem(f"has a parameter named {arg.arg}")
            self.locals.add(arg.arg)
            if arg.annotation is not None:
                self.expr(arg.annotation, calls=False)
        for d in (*a.defaults, *(d for d in a.kw_defaults if d is not None)):
            if not isinstance(d, ast.Constant):
                raise CodeProblem("computes a parameter default when it is defined")
        for stmt in fn.body:  # straight-line code: a name is local once assigned (earlier uses fail at run time)
            self.statement(stmt)

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Assign):
            self.expr(stmt.value)
            for t in stmt.targets:
                self.target(t)
        elif isinstance(stmt, (ast.Expr, ast.Return)):
            if stmt.value is not None:
                self.expr(stmt.value)
        elif isinstance(stmt, ast.Delete):
            for t in stmt.targets:
                self.target(t)
        elif not isinstance(stmt, ast.Pass):
            raise CodeProblem(f"runs a {type(stmt).__name__} statement")

    def target(self, t: ast.expr) -> None:
        if isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                self.target(e)
        elif isinstance(t, ast.Starred):
            self.target(t.value)
        elif isinstance(t, ast.Name):
            # PyTorch's code generator never rebinds self, builtins or its globals; a rebinding would let a later
            # call pass as a call of the module, getattr or an operator
            if t.id == "self" or t.id in _SAFE_BUILTIN_NAMES or t.id in self.namespace:
                raise CodeProblem(f"rebinds {t.id}")
            self.locals.add(t.id)
        else:
            raise CodeProblem(f"assigns to a {type(t).__name__}")

    def expr(self, e: ast.expr, calls: bool = True) -> None:
        if isinstance(e, ast.Constant):
            return
        if isinstance(e, ast.Name):
            if e.id not in self.locals and e.id not in self.namespace and e.id not in _SAFE_BUILTIN_NAMES \
                    and not (e.id == "self" and self.has_self):
                raise CodeProblem(f"uses {e.id}")
            return
        if isinstance(e, ast.Attribute):
            if e.attr.startswith("__"):
                raise CodeProblem(f"reads the attribute {e.attr}")
            return self.expr(e.value, calls)
        if isinstance(e, ast.Call):
            if not calls:
                raise CodeProblem("calls a function in an annotation")
            self.callee(e)
            for x in (*e.args, *(k.value for k in e.keywords)):
                self.expr(x)
            return
        if isinstance(e, (ast.Tuple, ast.List, ast.Set)):
            children: list[ast.expr] = list(e.elts)
        elif isinstance(e, ast.Dict):
            children = [x for x in (*e.keys, *e.values) if x is not None]
        elif isinstance(e, ast.Subscript):
            children = [e.value, e.slice]
        elif isinstance(e, ast.Slice):
            children = [x for x in (e.lower, e.upper, e.step) if x is not None]
        elif isinstance(e, ast.BinOp):
            children = [e.left, e.right]
        elif isinstance(e, ast.UnaryOp):
            children = [e.operand]
        elif isinstance(e, ast.BoolOp):
            children = list(e.values)
        elif isinstance(e, ast.Compare):
            children = [e.left, *e.comparators]
        elif isinstance(e, ast.Starred):
            children = [e.value]
        else:
            raise CodeProblem(f"evaluates a {type(e).__name__} expression")
        for c in children:
            self.expr(c, calls)

    def callee(self, call: ast.Call) -> None:
        chain: list[str] = []
        f = call.func
        while isinstance(f, ast.Attribute):
            chain.insert(0, f.attr)
            f = f.value
        if isinstance(f, ast.Subscript) and isinstance(f.value, ast.Name) and f.value.id in self.locals:
            f = f.value  # args[0].size()
        if not isinstance(f, ast.Name):
            raise CodeProblem(f"calls {ast.unparse(call.func)[:60]}")
        root = f.id
        if root == "self" and self.has_self:  # a submodule: self._guards_fn(x)
            import torch

            if not chain or any(a.startswith("__") or hasattr(torch.fx.GraphModule, a) for a in chain):
                raise CodeProblem(f"calls self.{'.'.join(chain)}")
            return
        if root in self.locals:  # a tensor: x.size()
            if len(chain) != 1 or chain[0] not in _SAFE_TENSOR_METHODS:
                raise CodeProblem(f"calls {'.'.join([root, *chain])}")
            return
        if root == "getattr" and not chain:
            return self.getattr_call(call)
        if root not in self.namespace:
            raise CodeProblem(f"calls {'.'.join([root, *chain])}")
        obj = self.namespace[root]
        for a in chain:
            if a.startswith("__"):
                raise CodeProblem(f"reads the attribute {a}")
            try:
                obj = getattr(obj, a)
            except Exception:  # noqa: BLE001 - unresolvable: not something PyTorch generated
                raise CodeProblem(f"calls {'.'.join([root, *chain])}, which does not exist") from None
        if not _is_pytorch_callable(obj):
            raise CodeProblem(f"calls {'.'.join([root, *chain])}, which is not a PyTorch operator")

    def getattr_call(self, call: ast.Call) -> None:
        ok = (len(call.args) == 2 and not call.keywords and isinstance(call.args[1], ast.Constant)
              and isinstance(call.args[1].value, str) and _WORD.fullmatch(call.args[1].value)
              and not call.args[1].value.startswith("__"))
        if not ok:
            raise CodeProblem("calls getattr with a computed or special attribute name")


def check_generated_python(src: str, namespace: dict[str, Any]) -> None:
    """Raise CodeProblem unless ``src`` only defines functions that call PyTorch operators (see docstring)."""
    _PythonCheck(namespace).module(src)


_SYMPY_STRING = re.compile(r"[\w.+\-/ ]*")


def check_sympy_code(code: Any, global_dict: dict[str, Any] | None, local_dict: dict[str, Any] | None) -> None:
    """Raise CodeProblem unless SymPy's transformed ``code`` builds an expression from symbols and numbers."""
    import sympy
    from sympy.core.function import FunctionClass

    if not isinstance(code, str):
        raise CodeProblem("is parsed with evaluate=False, which segdeploy cannot check")
    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError as e:
        raise CodeProblem(f"is not valid ({e.msg})") from None

    def resolve(name: str) -> Any:
        for d in (local_dict or {}, global_dict or {}):
            if name in d:
                return d[name]
        raise CodeProblem(f"uses {name}")

    def sympy_class(obj: Any) -> bool:
        return isinstance(obj, FunctionClass) or (isinstance(obj, type) and issubclass(obj, sympy.Basic))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or not sympy_class(resolve(node.func.id)):
                raise CodeProblem(f"calls {ast.unparse(node.func)[:60]}")
        elif isinstance(node, ast.Name):
            obj = resolve(node.id)
            if not (sympy_class(obj) or isinstance(obj, sympy.Basic)):
                raise CodeProblem(f"uses {node.id}")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, str) and not _SYMPY_STRING.fullmatch(node.value):
                raise CodeProblem(f"holds the string {node.value[:40]!r}")
        elif not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Tuple,
                                   ast.keyword, ast.Load, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)):
            raise CodeProblem(f"evaluates a {type(node).__name__}")


# ----------------------------------------------------------------------------- restricted loading


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
                raise guard.refuse(_AOTI, reason)
            return real(*args, **kwargs)

        @staticmethod
        def load_metadata_from_package(*args: Any, **kwargs: Any) -> Any:
            if _active():
                raise guard.refuse(_AOTI, reason)
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
        return data
    return read_bytes


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


_MISSING = object()
_PATCH_LOCK = threading.RLock()  # patch windows of different threads never interleave (each restores what it saved)


@contextlib.contextmanager
def _patched(sinks: list[tuple[Any, str, Any]]) -> Iterator[None]:
    with _PATCH_LOCK:
        saved = [(owner, attr, owner.__dict__.get(attr, _MISSING) if isinstance(owner, type) else
                  getattr(owner, attr, _MISSING)) for owner, attr, _ in sinks]
        try:
            for owner, attr, new in sinks:
                setattr(owner, attr, new)
            yield
        finally:
            for owner, attr, old in reversed(saved):
                if old is _MISSING:
                    with contextlib.suppress(AttributeError):
                        delattr(owner, attr)
                else:
                    setattr(owner, attr, old)


@contextlib.contextmanager
def restricted_pt2_load() -> Iterator[LoadGuard]:
    """Restrict every sink of ``torch.export.load``/``.module()`` inside the block (see module docstring)."""
    if _active():
        raise RuntimeError("restricted_pt2_load is not re-entrant")
    guard = LoadGuard()
    with _PATCH_LOCK, _patched(_sinks(guard)):  # _sinks: UnrestrictableTorch when PyTorch has moved a sink
        _ACTIVE.guard = guard
        try:
            yield guard
        finally:
            _ACTIVE.guard = None


# ----------------------------------------------------------------------------- diagnostics


class _Capture(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]):
        super().__init__(logging.WARNING)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Diagnostics:
    """What PyTorch (and the Hugging Face hub) said inside :func:`captured_diagnostics`."""

    records: list[logging.LogRecord] = field(default_factory=list)
    warnings: list[warnings.WarningMessage] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for r in self.records:
            with contextlib.suppress(Exception):
                out.append(" ".join(r.getMessage().split()))
        out += [" ".join(str(w.message).split()) for w in self.warnings]
        return [o for o in out if o]

    def summary(self, limit: int = 160) -> str | None:
        """The first message, shortened, plus how many more; None when nothing was said."""
        lines = self.lines()
        if not lines:
            return None
        first = lines[0] if len(lines[0]) <= limit else lines[0][: limit - 3] + "..."
        return first + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else "")

    def first_exception(self) -> BaseException | None:
        """The exception PyTorch logged and swallowed (e.g. before its fallback loader), if any."""
        for r in self.records:
            if r.exc_info and r.exc_info[1] is not None:
                return r.exc_info[1]
        return None


@contextlib.contextmanager
def captured_diagnostics(loggers: tuple[str, ...] = ("torch", "huggingface_hub")) -> Iterator[Diagnostics]:
    """Record warnings and those loggers' records inside the block instead of printing them."""
    diag = Diagnostics()
    handler = _Capture(diag.records)
    saved: list[tuple[logging.Logger, list[logging.Handler], bool]] = []
    for prefix in loggers:
        names = [prefix] + [n for n in list(logging.root.manager.loggerDict) if n.startswith(prefix + ".")]
        for n in names:
            lg = logging.getLogger(n)
            if n == prefix or lg.handlers or not lg.propagate:
                saved.append((lg, lg.handlers[:], lg.propagate))
                lg.handlers = [handler]
                lg.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            try:
                yield diag
            finally:
                diag.warnings.extend(caught)
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers = handlers
            lg.propagate = propagate


# ----------------------------------------------------------------------------- factories


class DownloadAttempt(OSError):
    """Raised inside :func:`no_downloads` instead of connecting."""


_LOCAL_HOSTS = (None, "localhost", "127.0.0.1", "::1")
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def _address_host(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


@contextlib.contextmanager
def _offline_hub() -> Iterator[None]:
    """Hugging Face libraries in offline mode (env vars for imports and children, the hub's constant if loaded)."""
    import sys

    saved_env = {k: os.environ.get(k) for k in _OFFLINE_VARS}
    constants = sys.modules.get("huggingface_hub.constants")
    saved_flag = getattr(constants, "HF_HUB_OFFLINE", _MISSING)
    os.environ.update({k: "1" for k in _OFFLINE_VARS})
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        constants = sys.modules.get("huggingface_hub.constants")
        if constants is not None:  # imported before or inside the block: back to what the environment says
            constants.HF_HUB_OFFLINE = (saved_flag if saved_flag is not _MISSING else
                                        (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
                                         or "").upper() in ("1", "ON", "YES", "TRUE"))


@contextlib.contextmanager
def no_downloads() -> Iterator[list[str]]:
    """Refuse outbound connections inside the block; yields the list of attempted hosts."""
    attempts: list[str] = []
    with _PATCH_LOCK, _patched(_connection_refusals(attempts)), _offline_hub():
        yield attempts


def _connection_refusals(attempts: list[str]) -> list[tuple[Any, str, Any]]:
    """Replacements for the socket entry points that record the attempt and raise DownloadAttempt."""
    import _socket

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_raw_socket = _socket.socket

    def local(sock: Any, address: Any) -> bool:
        return sock.family == getattr(socket, "AF_UNIX", None) or _address_host(address) in _LOCAL_HOSTS

    def refused(address: Any) -> DownloadAttempt:
        attempts.append(_address_host(address))
        return DownloadAttempt(f"segdeploy refused a network connection to {address}")

    def connect(self: Any, address: Any) -> Any:
        if local(self, address):
            return real_connect(self, address)
        raise refused(address)

    def connect_ex(self: Any, address: Any) -> Any:
        if local(self, address):
            return real_connect_ex(self, address)
        raise refused(address)

    def lookup(real: Callable[..., Any]) -> Callable[..., Any]:
        def refuse_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host in _LOCAL_HOSTS:
                return real(host, *args, **kwargs)
            attempts.append(str(host))
            raise DownloadAttempt(f"segdeploy refused to look up {host} (no downloads while loading a model)")
        return refuse_lookup

    class RawSocket(real_raw_socket):  # type: ignore[misc,valid-type] - for `import _socket` users
        def connect(self, address: Any) -> Any:
            if local(self, address):
                return real_raw_socket.connect(self, address)
            raise refused(address)

        def connect_ex(self, address: Any) -> Any:
            if local(self, address):
                return real_raw_socket.connect_ex(self, address)
            raise refused(address)

    return [(socket.socket, "connect", connect), (socket.socket, "connect_ex", connect_ex),
            (socket, "getaddrinfo", lookup(socket.getaddrinfo)), (_socket, "getaddrinfo", lookup(_socket.getaddrinfo)),
            (_socket, "socket", RawSocket)]


def offline_refusal(e: BaseException) -> str | None:
    """The host a Hugging Face offline-mode error (anywhere in ``e``'s chain) wanted to reach, else None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        names = {c.__name__ for c in type(e).__mro__}
        if names & {"OfflineModeIsEnabled", "LocalEntryNotFoundError", "DownloadAttempt"}:
            m = re.search(r"https?://([^/\s'\"]+)", str(e))
            return m.group(1) if m else "the Hugging Face Hub"
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return None


class ProcessExit(BaseException):
    """Raised inside :func:`no_process_exit` instead of ending the process."""

    def __init__(self, code: Any):
        super().__init__(f"os._exit({code!r})")
        self.code = code


@contextlib.contextmanager
def no_process_exit() -> Iterator[None]:
    """Inside the block, ``os._exit`` raises ProcessExit (in this thread) instead of ending the process."""
    real = os._exit
    thread = threading.get_ident()

    def refuse(code: int) -> None:
        if threading.get_ident() != thread:
            real(code)
        raise ProcessExit(code)

    with _patched([(os, "_exit", refuse)]):
        yield
