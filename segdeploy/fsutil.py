"""Atomic file writes and content hashing.

Contract: a write either leaves the complete new file at ``path`` or leaves ``path`` as it was
(missing or the old good file). Temporary files live beside the target (same filesystem, so the final
``os.replace`` is atomic) and are removed on any failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

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
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on error delete it."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; artifacts are ordinary files others (CI, a device) must read
    os.chmod(tmp_path, 0o644)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as e:
        raise ArtifactError(f"cannot write {path}: {e.strerror or e}; check free space and permissions") from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for equal content)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
