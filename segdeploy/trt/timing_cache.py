"""TensorRT timing cache on disk, keyed by TensorRT version and GPU, reused across builds.

A timing cache is valid only for the exact TensorRT version and device that made it. The file
``<dir>/trt-<version>-<gpu>.timing-cache`` (``gpu`` = GPU name + compute capability, made file-safe) holds a
one-line JSON header ``{"format": "segdeploy.trt-timing-cache", "version": 1, "tensorrt": ..., "gpu": ...,
"sha256": ..., "bytes": ...}`` followed by TensorRT's serialized cache. It is not trtexec's raw
``--timingCacheFile`` format.

Contract (``TimingCacheFile(directory, tensorrt_version, gpu_key)``):
    ``load() -> bytes``: the stored blob, or ``b""`` (start a new cache) when there is none, or when the file is
    corrupt (bad header, sha256 mismatch) or foreign (another TensorRT/GPU in its header) -- each of those adds a
    message to ``warnings`` and never raises.
    ``save(blob)``: atomic write (temp file + rename). Raises ArtifactError when it cannot be written.
    Both go through :mod:`segdeploy.usercache` (safefs): an entry that is not a regular file reached without a
    link (a FIFO, a planted link) is treated like a missing one, with a warning; a save never writes through a link.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from segdeploy.errors import ArtifactError
from segdeploy.jsonio import parse as parse_json
from segdeploy.usercache import read_entry, write_entry

FORMAT = "segdeploy.trt-timing-cache"
SUFFIX = ".timing-cache"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unknown"


def gpu_key(name: str | None, compute_capability: str | None) -> str:
    """'NVIDIA H200', '9.0' -> 'NVIDIA-H200-sm90'; unknown GPU -> 'unknown-gpu'."""
    if not name:
        return "unknown-gpu"
    cc = f"-sm{compute_capability.replace('.', '')}" if compute_capability else ""
    return _slug(name) + cc


class TimingCacheFile:
    """One timing-cache file for (TensorRT version, GPU) in ``directory``."""

    def __init__(self, directory: str | os.PathLike, tensorrt_version: str, gpu: str):
        self.directory = Path(directory)
        self.tensorrt_version = str(tensorrt_version)
        self.gpu = str(gpu)
        self.path = self.directory / f"trt-{_slug(self.tensorrt_version)}-{_slug(self.gpu)}{SUFFIX}"
        self.warnings: list[str] = []

    def load(self) -> bytes:
        try:
            raw = read_entry(self.directory, self.path.name)
        except ArtifactError:
            self._warn("it is not a regular file (a link, FIFO or device)")
            return b""
        except OSError as e:
            self._warn(f"cannot read it ({e.strerror or e})")
            return b""
        if raw is None:
            return b""
        header, sep, blob = raw.partition(b"\n")
        try:
            meta = parse_json(header) if sep else None  # bounded depth (segdeploy.jsonio)
        except ValueError:
            meta = None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            self._warn("it is not a segdeploy timing cache (corrupt or written by another tool)")
            return b""
        if meta.get("tensorrt") != self.tensorrt_version or meta.get("gpu") != self.gpu:
            self._warn(f"it was made by TensorRT {meta.get('tensorrt')} on {meta.get('gpu')}, "
                       f"not TensorRT {self.tensorrt_version} on {self.gpu}")
            return b""
        if meta.get("bytes") != len(blob) or meta.get("sha256") != hashlib.sha256(blob).hexdigest():
            self._warn("its content does not match its checksum (truncated or modified)")
            return b""
        return blob

    def save(self, blob: bytes) -> None:
        blob = bytes(blob)
        meta = {"format": FORMAT, "version": 1, "tensorrt": self.tensorrt_version, "gpu": self.gpu,
                "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ArtifactError(f"cannot create the timing cache directory {self.directory}: {e.strerror or e}; "
                                "choose a writable directory") from None
        write_entry(self.directory, self.path.name, json.dumps(meta, sort_keys=True).encode() + b"\n" + blob)

    def _warn(self, why: str) -> None:
        self.warnings.append(f"timing cache {self.path} ignored: {why}; a new one is made")
