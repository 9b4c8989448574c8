"""Outputs never land on inputs: the one decision every command that writes a report or a bundle asks.

Contract
--------
:func:`guard_outputs` is used by every command that writes a report (``--report``, ``--html``) or a bundle
(``--out``): before any work it refuses, with one :class:`~segdeploy.errors.UsageError` line, a path that is, or
would replace, an artifact of an export directory or one of the command's own input files.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Iterable

from segdeploy.errors import UsageError
from segdeploy.exportdir.view import is_owned_name
from segdeploy.vocab import MANIFEST


def _stat(path: str | os.PathLike) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _same_file(a: os.stat_result | None, b: os.stat_result | None) -> bool:
    return a is not None and b is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _export_dirs_near(paths: Iterable[str]) -> set[str]:
    """Real paths of the export directories among ``paths`` and their parents (a ``manifest.json`` entry in it)."""
    out = set()
    for p in paths:
        real = os.path.realpath(p)
        for d in (real, os.path.dirname(real)):
            if os.path.isdir(d) and os.path.lexists(os.path.join(d, MANIFEST)):
                out.add(d)
    return out


def _owned_stats(d: str) -> list[os.stat_result]:
    try:
        names = [n for n in os.listdir(d) if is_owned_name(n)]
    except OSError:
        return []
    return [s for s in (_stat(os.path.join(d, n)) for n in names) if s is not None]


def guard_outputs(outputs: Iterable[tuple[str, str | os.PathLike | None]],
                  inputs: Iterable[tuple[str, Any]] = (), *, directory: bool = False) -> None:
    """Refuse, before any work, an output that would land on an input or on an export directory's artifact.

    ``outputs``: (option, path) pairs, e.g. ``("--report", "out/r.json")`` (None paths are skipped); ``inputs``:
    (what, path) pairs of the command's own input files and directories (the candidate, the model file, the
    manifest, an export directory; non-path values are skipped). A file output is refused when it (its real path,
    or the same inode) is an input file, is a file an export directory owns (an owned name inside a directory
    holding a ``manifest.json``, or the same inode as one), or names the same file as another output.
    ``directory=True`` (a bundle's ``--out``): refused when it is an input export directory or inside one.
    Raises UsageError, one line."""
    outs = [(opt, os.fspath(p)) for opt, p in outputs if p is not None and os.fspath(p) != ""]
    ins = [(what, os.fspath(p)) for what, p in inputs if isinstance(p, (str, os.PathLike)) and os.fspath(p) != ""]
    dirs = _export_dirs_near(p for _, p in ins)
    for i, (opt, path) in enumerate(outs):
        real = os.path.realpath(path)
        if directory:
            for d in sorted(dirs):
                if real == d or real.startswith(d.rstrip(os.sep) + os.sep):
                    raise UsageError(f"{opt} {path} is inside the export directory {d}; choose a separate {opt}")
            continue
        st = _stat(path)
        for what, src in ins:
            if os.path.realpath(src) == real or (st is not None and not stat.S_ISDIR(st.st_mode) and _same_file(st, _stat(src))):
                raise UsageError(f"{opt} {path} would overwrite {what} {src}; choose another {opt}")
        for d in sorted((dirs | _export_dirs_near([real, os.path.abspath(path)])) - {real}):
            owned_here = os.path.dirname(real) == d and is_owned_name(os.path.basename(real))
            if owned_here or (st is not None and any(_same_file(st, s) for s in _owned_stats(d))):
                shown = os.path.dirname(path) if os.path.realpath(os.path.dirname(path) or ".") == d else d
                raise UsageError(f"{opt} {path} would overwrite an artifact of the export directory {shown or '.'}; "
                                 "choose a path outside it")
        for opt2, path2 in outs[:i]:
            if os.path.realpath(path2) == real:
                raise UsageError(f"{opt2} and {opt} both name {path}; give each its own file")
