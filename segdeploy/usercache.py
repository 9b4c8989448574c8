"""segdeploy's cache directory: reusable, content-keyed data that is not an artifact of any export.

What lives there: calibration statistics (``calib_stats/``, keyed by model bytes, data bytes and every
setting that shapes them, so another method or a re-run never re-runs the model) and TensorRT timing
caches (``timing/``, keyed by TensorRT version and GPU). Nothing in it is ever needed for correctness:
a missing, corrupt or foreign entry is a miss.

Location: ``$SEGDEPLOY_CACHE_DIR``, else ``$XDG_CACHE_HOME/segdeploy``, else ``~/.cache/segdeploy``.
:func:`cache_subdir` creates the subdirectory and returns it, or None (with the reason) when it cannot be
created or written -- callers then run without a cache and say so; a cache never fails a command.

Entries are read and written only through :mod:`segdeploy.safefs` (:func:`read_entry`, :func:`write_entry`):
an entry is read only when it is a regular file reached without a link (a FIFO, a device, a planted link is a
miss, never a hang or a read elsewhere) and written as a new file renamed into place (never through a link).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    env = os.environ.get("SEGDEPLOY_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "segdeploy"


def cache_subdir(name: str, override: str | os.PathLike | None = None) -> tuple[Path | None, str | None]:
    """(directory, None) ready to use, or (None, why not). ``override`` replaces ``cache_root()/name``.
    The directory may be reached through links (it is the user's own); the entries in it may not."""
    p = Path(override) if override is not None else cache_root() / name
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return None, f"cache directory {p} cannot be created ({e.strerror or e}); running without a cache"
    if not p.is_dir():
        return None, f"cache directory {p} is not a directory; running without a cache"
    if not os.access(p, os.W_OK | os.X_OK):
        return None, f"cache directory {p} is not writable; running without a cache"
    return p, None


def read_entry(directory: str | os.PathLike, name: str, *, limit: int | None = None) -> bytes | None:
    """The bytes of cache entry ``name``; None when it is absent. ArtifactError when it is not a regular file
    reached without a link (never a block on a FIFO), or past ``limit`` bytes: callers treat it as a miss."""
    from segdeploy import safefs

    try:
        return safefs.read_file(Path(directory) / name, fix="it is ignored", limit=limit)
    except FileNotFoundError:
        return None


def write_entry(directory: str | os.PathLike, name: str, data: bytes) -> Path:
    """Write cache entry ``name`` atomically (new file + rename, never through a link). Raises ArtifactError."""
    from segdeploy import safefs

    p = Path(directory) / name
    safefs.atomic_write(p, data)
    return p
