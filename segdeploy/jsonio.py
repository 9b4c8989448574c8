"""Bounded JSON: parse JSON a user can hand us without a traceback, a recursion blow-up or a memory bomb.

Contract
--------
``json.loads`` recurses once per nesting level, so ``[[[[...]]]]`` 100 000 deep raises ``RecursionError`` (a
traceback, not a message). Every reader of user-supplied JSON (manifests, parity/shard reports, label maps,
ranges files, the metadata prefix of a plan, cache headers) parses through this module instead:

* :func:`parse` ``(raw, max_bytes=None, max_depth=MAX_DEPTH) -> value`` -- checks the size, then the nesting
  depth *without recursion* (strings are blanked by one linear regex pass, the remaining brackets are
  counted with C-level ``itertools.accumulate``), then calls ``json.loads``. Every failure is a
  :class:`ValueError` (:class:`JsonTooLarge`, :class:`JsonTooDeep`, ``UnicodeDecodeError``,
  ``json.JSONDecodeError``, or Python's "too many digits" error), so a lenient caller that treats bad JSON
  as absent keeps its ``except ValueError``.
* :func:`load_bytes` ``(raw, where, max_bytes, fix, error=ArtifactError)`` -- :func:`parse` with every failure
  turned into one line ``<where> is not valid JSON (<why>); <fix>`` of the given
  :class:`~segdeploy.errors.SegdeployError` class.
* :func:`read_file` ``(path, what, max_bytes, fix, error=ArtifactError)`` -- reads at most ``max_bytes + 1``
  bytes (so a larger file is refused, not silently truncated) and calls :func:`load_bytes`; a missing or
  unreadable file is the same error class, naming the file.
* :func:`check_types` -- the tiny declarative schema language the manifest and the shard reports use:
  a Python type (or tuple of types); :class:`IntRange`; :class:`Pattern`; ``{"key": spec}`` for an object
  (keys starting with ``?`` are optional); ``[spec]`` for a list; ``("dict-of", spec)`` for a mapping of
  str -> spec. ``bool`` never passes as a number. Errors name the key path.
* :func:`first_unencodable` -- the path of the first key or string that is not valid Unicode (a lone
  surrogate from a ``\\ud800`` escape), which would crash any later print or file name.

Limits: :data:`MAX_DEPTH` (64) nesting levels -- segdeploy's own documents nest fewer than 10; size caps
are the caller's (each reader names its own, e.g. 16 MiB for a manifest).
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from segdeploy.errors import ArtifactError, SegdeployError

MAX_DEPTH = 64

# A JSON string, or an unterminated one running to the end: every attempt that starts at a quote succeeds at
# the first place the greedy loops stop (a quote, the end, or a lone backslash at the end), so there is no
# backtracking and the pass stays linear even on adversarial input. Possessive quantifiers (Python 3.11+) only
# save the bookkeeping of backtrack points (15 MB of escapes: 0.04 s instead of 2 s).
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+\\?(?:"|\Z)' if sys.version_info >= (3, 11)
                     else rb'"[^"\\]*(?:\\.[^"\\]*)*\\?(?:"|\Z)', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


class JsonTooLarge(ValueError):
    """The document is larger than the reader's cap."""


class JsonTooDeep(ValueError):
    """The document nests arrays/objects deeper than the cap."""


def nesting_depth(raw: bytes) -> int:
    """The maximum nesting depth of arrays/objects in ``raw`` (brackets inside strings do not count)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def parse(raw: bytes | str, *, max_bytes: int | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON with a size and a depth cap. Raises ValueError (see the module docstring)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if max_bytes is not None and len(data) > max_bytes:
        raise JsonTooLarge(f"{len(data)} bytes, more than the {max_bytes} allowed")
    if data.count(b"[") + data.count(b"{") > max_depth:  # cheap: only then can it be too deep
        depth = nesting_depth(data)
        if depth > max_depth:
            raise JsonTooDeep(f"nested {depth} levels deep, more than the {max_depth} allowed")
    text = raw if isinstance(raw, str) else data.decode("utf-8")
    return json.loads(text)


def _why(e: ValueError) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at line {e.lineno}"
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8"
    return " ".join(str(e).split())[:120]


def load_bytes(raw: bytes | str, where: str, *, max_bytes: int, fix: str, max_depth: int = MAX_DEPTH,
               error: type[SegdeployError] = ArtifactError) -> Any:
    """:func:`parse`, with any failure raised as ``error("<where> is not valid JSON (<why>); <fix>")``."""
    try:
        return parse(raw, max_bytes=max_bytes, max_depth=max_depth)
    except JsonTooLarge as e:
        raise error(f"{where} is too large ({e}); {fix}") from None
    except JsonTooDeep as e:
        raise error(f"{where} is not usable JSON ({e}); {fix}") from None
    except (ValueError, RecursionError) as e:  # RecursionError: belt and braces, the depth check prevents it
        raise error(f"{where} is not valid JSON ({_why(e) if isinstance(e, ValueError) else 'nested too deep'}); "
                    f"{fix}") from None


def read_file(path: str | os.PathLike, what: str, *, max_bytes: int, fix: str, max_depth: int = MAX_DEPTH,
              error: type[SegdeployError] = ArtifactError) -> Any:
    """Read and parse the JSON file ``path`` (``what`` names it in messages, e.g. "parity report"). Raises ``error``."""
    where = f"{what} {os.fspath(path)}"
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{where} not found; {fix}") from None
    except IsADirectoryError:
        raise error(f"{where} is a directory, not a JSON file; {fix}") from None
    except OSError as e:
        raise error(f"cannot read {where}: {e.strerror or e}; {fix}") from None
    return load_bytes(raw, where, max_bytes=max_bytes, fix=fix, max_depth=max_depth, error=error)


def first_unencodable(value: Any, path: str = "") -> str | None:
    """The key path of the first key or string in ``value`` that is not valid Unicode, else None."""
    stack = [(value, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return p or "(top level)"
        elif isinstance(v, dict):
            for k, item in v.items():
                try:
                    k.encode("utf-8")
                except UnicodeEncodeError:
                    return f"{p or '(top level)'} key {k!r}"  # repr shows a surrogate as \udXXX
                stack.append((item, f"{p}[{k!r}]" if p else k))
        elif isinstance(v, list):
            stack.extend((item, f"{p}[{i}]") for i, item in enumerate(v))
    return None


# --------------------------------------------------------------------------------------- schema checks


@dataclass(frozen=True)
class IntRange:
    """An int (never bool) with ``lo <= value <= hi``."""

    lo: int
    hi: int


@dataclass(frozen=True)
class Pattern:
    """A str that fully matches ``regex``; ``description`` says what it is in messages."""

    regex: str
    description: str


SHA256 = Pattern(r"[0-9a-f]{64}", "a SHA-256 digest (64 lowercase hex characters)")


def _typename(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_types(value: Any, spec: Any, where: str, fix: str, path: str = "",
                error: type[SegdeployError] = ArtifactError) -> None:
    """Check ``value`` against ``spec`` (see the module docstring); raise ``error`` naming the key path and ``fix``."""
    stack = [(value, spec, path)]
    while stack:
        v, s, p = stack.pop()
        if isinstance(s, dict):
            if not isinstance(v, dict):
                raise error(f"{where}: {p or 'the document'} must be an object, not {_typename(v)}; {fix}")
            for key, sub in reversed(list(s.items())):
                name = key.lstrip("?")
                if name not in v:
                    if key.startswith("?"):
                        continue
                    raise error(f"{where} lacks {p + '.' if p else ''}{name}; {fix}")
                stack.append((v[name], sub, f"{p}.{name}" if p else name))
        elif isinstance(s, list):
            if not isinstance(v, list):
                raise error(f"{where}: {p} must be a list, not {_typename(v)}; {fix}")
            stack.extend((item, s[0], f"{p}[{i}]") for i, item in reversed(list(enumerate(v))))
        elif isinstance(s, tuple) and s and s[0] == "dict-of":
            if not isinstance(v, dict):
                raise error(f"{where}: {p} must be an object, not {_typename(v)}; {fix}")
            stack.extend((item, s[1], f"{p}[{k!r}]") for k, item in reversed(list(v.items())))
        elif isinstance(s, IntRange):
            if not isinstance(v, int) or isinstance(v, bool):
                raise error(f"{where}: {p} must be int, not {_typename(v)} ({_shown(v)}); {fix}")
            if not s.lo <= v <= s.hi:
                raise error(f"{where}: {p} must be in {s.lo}..{s.hi}, got {_shown(v)}; {fix}")
        elif isinstance(s, Pattern):
            if not isinstance(v, str) or not re.fullmatch(s.regex, v):
                raise error(f"{where}: {p} must be {s.description}, not {_shown(v)}; {fix}")
        else:
            types = s if isinstance(s, tuple) else (s,)
            if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
                want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
                raise error(f"{where}: {p} must be {want}, not {_typename(v)} ({_shown(v)}); {fix}")
