"""Atomic file writes and content hashing (path-level wrappers of :mod:`segdeploy.safefs`).

Contract: a write either leaves the complete new file at ``path`` or leaves ``path`` as it was
(missing or the old good file). The temporary file is created beside the target with ``O_EXCL | O_NOFOLLOW``
(never through a planted link, never an existing inode) and renamed over ``path`` relative to the directory
handle (a link at ``path`` is replaced, not followed); it is removed on any failure. Hashing refuses anything
that is not a regular file (a FIFO never blocks it) with one ArtifactError line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from segdeploy import safefs
from segdeploy.errors import ArtifactError


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) if needed and check it is a writable directory.

    Raises ArtifactError with the fix when it cannot be created or written.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ArtifactError(f"output path {p} exists and is not a directory; choose another --out")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArtifactError(
            f"cannot create output directory {p}: {e.strerror or e}; choose a writable --out directory"
        ) from None
    if not p.is_dir():
        raise ArtifactError(f"output path {p} exists and is not a directory; choose another --out")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ArtifactError(f"output directory {p} is not writable; fix its permissions or choose another --out")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a new temporary path beside ``path`` (0644); on success rename it over ``path``, on error delete it."""
    with safefs.atomic_path(path, suffix) as tmp:
        yield tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (0644). Raises ArtifactError."""
    safefs.atomic_write(path, data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for equal content)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a regular file's bytes (a final link is followed: the caller names an input). A FIFO,
    device or directory is one ArtifactError line; a missing file raises FileNotFoundError."""
    fd = safefs.open_file(path, fix="pass a regular file", follow=True)
    try:
        return safefs.hash_fd(fd)[0]
    finally:
        os.close(fd)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
