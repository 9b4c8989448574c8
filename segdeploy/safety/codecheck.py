"""Allow-list checks of the Python that PyTorch generates from an archive and is about to run.

Contract
--------
* :func:`check_generated_python` ``(src, namespace)`` raises :class:`CodeProblem` unless ``src`` only defines
  functions (no decorators, constant defaults) of straight-line code that calls PyTorch operators, shape
  methods of its locals (``size``, ``stride``, ...), submodules of ``self``, ``getattr`` with a constant plain
  name and the plain functions PyTorch's own generated code calls; no dunder attribute, no rebinding of
  ``self``, builtins or the namespace's names. This is what FX's generated ``forward`` and the input-guard
  function look like; parameter names and guard strings from the program JSON end up in that code.
* :func:`check_sympy_code` ``(code, globals, locals)`` raises :class:`CodeProblem` unless SymPy's transformed
  ``code`` (``sympy.sympify`` of the program's shape expressions) builds an expression from SymPy classes,
  symbols and numbers.
"""

from __future__ import annotations

import ast
import functools
import re
from typing import Any


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
