"""segdeploy's cache directory: reusable, content-keyed data that is not an artifact of any export.

What lives there: calibration statistics (``calib_stats/``, keyed by model bytes, data bytes and every
setting that shapes them, so another method or a re-run never re-runs the model) and TensorRT timing
caches (``timing/``, keyed by TensorRT version and GPU). Nothing in it is ever needed for correctness:
a missing, corrupt or foreign entry is a miss.

Location: ``$SEGDEPLOY_CACHE_DIR``, else ``$XDG_CACHE_HOME/segdeploy``, else ``~/.cache/segdeploy``.
:func:`cache_subdir` creates the subdirectory and returns it, or None (with the reason) when it cannot be
created or written -- callers then run without a cache and say so; a cache never fails a command.
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
    """(directory, None) ready to use, or (None, why not). ``override`` replaces ``cache_root()/name``."""
    p = Path(override) if override is not None else cache_root() / name
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return None, f"cache directory {p} cannot be created ({e.strerror or e}); running without a cache"
    if not os.access(p, os.W_OK | os.X_OK):
        return None, f"cache directory {p} is not writable; running without a cache"
    return p, None
