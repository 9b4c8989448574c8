"""A capturing TensorRT logger: failures become one line, the full log is kept for ``--verbose``.

TensorRT reports build, parse and deserialization failures only through its logger (the API returns None or
False). ``make_logger(trt, verbose=False)`` returns an instance of a ``trt.ILogger`` subclass (made lazily, once
per module) that stores every message it receives as ``(severity_name, message)`` -- VERBOSE messages only when
``verbose`` -- and never prints. Severities are compared by *name* (INTERNAL_ERROR, ERROR, WARNING, INFO,
VERBOSE), never by integer.

Methods: ``entries`` (list), ``mark()`` -> position, ``errors(since=0)``, ``warnings(since=0)``,
``first_error(since=0)`` -> one-line str | None, ``text()`` -> the whole log, one message per line.
"""

from __future__ import annotations

from typing import Any

ERROR_SEVERITIES = ("INTERNAL_ERROR", "ERROR")
_MAX_LINE = 400
_CLASSES: dict[int, tuple[type, type]] = {}  # id(trt.ILogger) -> (trt.ILogger, subclass); the base is kept alive


def severity_name(severity: Any) -> str:
    """'ERROR' for trt.ILogger.Severity.ERROR (pybind11 enums have ``.name``; str() is 'Severity.ERROR')."""
    name = getattr(severity, "name", None)
    if isinstance(name, str):
        return name
    return str(severity).rsplit(".", 1)[-1]


def one_line(message: str, limit: int = _MAX_LINE) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _CaptureMixin:
    """The capturing behaviour; combined with ``trt.ILogger`` by :func:`make_logger`."""

    verbose: bool
    entries: list[tuple[str, str]]

    def log(self, severity: Any, msg: str) -> None:  # called by TensorRT (any thread)
        name = severity_name(severity)
        if name == "VERBOSE" and not self.verbose:
            return
        self.entries.append((name, str(msg)))

    def mark(self) -> int:
        return len(self.entries)

    def errors(self, since: int = 0) -> list[str]:
        return [m for s, m in self.entries[since:] if s in ERROR_SEVERITIES]

    def warnings(self, since: int = 0) -> list[str]:
        return [m for s, m in self.entries[since:] if s == "WARNING"]

    def first_error(self, since: int = 0) -> str | None:
        errs = self.errors(since)
        return one_line(errs[0]) if errs else None

    def last_error(self, since: int = 0) -> str | None:
        errs = self.errors(since)
        return one_line(errs[-1]) if errs else None

    def text(self) -> str:
        return "\n".join(f"[{s}] {m}" for s, m in self.entries)


def make_logger(trt: Any, verbose: bool = False) -> Any:
    """A capturing ``trt.ILogger`` instance for module ``trt`` (see the module docstring)."""
    base = trt.ILogger
    cached = _CLASSES.get(id(base))
    cls = cached[1] if cached is not None and cached[0] is base else None
    if cls is None:

        def __init__(self: Any, verbose: bool = False) -> None:
            base.__init__(self)  # pybind11 trampolines need the base initialiser
            self.verbose = verbose
            self.entries = []

        cls = type("SegdeployTrtLogger", (_CaptureMixin, base), {"__init__": __init__})
        _CLASSES[id(base)] = (base, cls)
    return cls(verbose)


_ABANDONED: list[Any] = []


def abandon(obj: Any) -> None:
    """Never destroy ``obj``: a TensorRT object whose creation failed (the logger reported an error).

    Such objects wrap a null handle and their destructor crashes the process (seen with ``trt.Runtime`` of
    tensorrt_lean 11.4 when CUDA cannot start). One extra reference is taken, so neither the garbage collector
    nor interpreter shutdown ever frees it; the object is never used again.
    """
    import ctypes

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    _ABANDONED.append(type(obj).__name__)
