"""Read a TensorRT engine (plan) header without TensorRT, and say what other files are.

Plan layout (TensorRT 8.6 and later; ``samples/common/sampleEngines.cpp::printPlanVersion``, the code behind
``trtexec --getPlanVersionOnly``): bytes 0-3 are ``b"ftrt"``, the little-endian uint32 at offset 4 selects
the layout (only 0 is understood), bytes 24, 25, 26, 27 are the major, minor, patch and build numbers of
the TensorRT that built the plan. A plan only loads in that TensorRT version (unless it was built
version-compatible), so reading these bytes lets segdeploy refuse a foreign plan *before* handing it to
TensorRT, with both versions in the message.

Ultralytics-style engines prefix the plan with a 4-byte little-endian length and that many bytes of JSON
metadata; they are recognised and explained, never silently accepted.

API:
    ``parse_plan_header(data, name)`` / ``read_plan_header(path)`` -> :class:`PlanHeader`, or
    :class:`NotAPlanError` (an ArtifactError, one line saying what the file is instead);
    ``identify_file(path)`` -> JSON-able dict ``{"kind", "detail", ...}`` for any file (never raises for
    content, only ArtifactError when it cannot be read);
    ``check_plan_version(header, installed, version_compatible=False)`` -> None, or :class:`PlanVersionError`
    naming the plan's version and the installed one.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

from segdeploy.errors import ArtifactError
from segdeploy.jsonio import parse as parse_json

MAGIC = b"ftrt"
HEADER_BYTES = 28
_PREFIX_MAX = 1 << 20  # a JSON metadata prefix longer than this is not an Ultralytics header


class NotAPlanError(ArtifactError):
    """The file is not a TensorRT plan (empty, truncated, another format, or a prefixed plan)."""


class PlanVersionError(ArtifactError):
    """The plan was built by another TensorRT version than the installed one."""


@dataclass(frozen=True)
class PlanHeader:
    """What the first 28 bytes of a plan say.

    ``version`` is (major, minor, patch, build), or None when the layout is not the one understood
    (``layout`` != 0, or implausible numbers: a plan older than 8.6); ``size`` is the plan's byte count.
    """

    name: str
    size: int
    layout: int
    version: tuple[int, int, int, int] | None

    @property
    def version_str(self) -> str | None:
        return ".".join(str(v) for v in self.version) if self.version else None

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "layout": self.layout, "version": self.version_str,
                "plan_header": list(self.version) if self.version else None}


def _plausible(v: tuple[int, int, int, int]) -> bool:
    major, minor, patch, _ = v
    return 8 <= major <= 99 and minor <= 99 and patch <= 99 and not (major == 8 and minor < 6)


def parse_plan_header(data: bytes, name: str = "<plan>", size: int | None = None) -> PlanHeader:
    """Parse the first bytes of a plan. ``size`` is the whole file's size (default ``len(data)``)."""
    size = len(data) if size is None else size
    if data[:4] != MAGIC:
        raise NotAPlanError(f"{name} is not a TensorRT engine: {_what_instead(data, size)}")
    if len(data) < HEADER_BYTES:
        raise NotAPlanError(
            f"{name} is a truncated TensorRT engine ({size} bytes, the header alone is {HEADER_BYTES}); "
            "copy or rebuild it again"
        )
    layout = struct.unpack_from("<I", data, 4)[0]
    version = tuple(data[24:28])
    ok = layout == 0 and _plausible(version)  # type: ignore[arg-type]
    return PlanHeader(name=name, size=size, layout=layout, version=version if ok else None)  # type: ignore[arg-type]


def read_plan_header(path: str | os.PathLike) -> PlanHeader:
    """Read and parse ``path``'s header. Raises ArtifactError (missing/unreadable) or NotAPlanError."""
    p = os.fspath(path)
    data, size = _read_head(p, f"engine {p} not found; build it first (segdeploy build) or fix the path",
                            f"{p} is a directory; pass the engine file (model.<precision>.engine)", "engine ")
    return parse_plan_header(data, os.path.basename(p), size)


def _read_head(p: str, missing: str, is_dir: str, what: str = "") -> tuple[bytes, int]:
    """The first bytes of ``p`` (enough for a header behind a JSON prefix) and its size; one-line ArtifactErrors.
    Opened through :func:`segdeploy.safefs.open_file`: a FIFO or device is refused, never waited on."""
    from segdeploy import safefs

    if os.path.isdir(p):
        raise ArtifactError(is_dir)
    try:
        fd = safefs.open_file(p, fix="pass an engine file", follow=True)
    except FileNotFoundError:
        raise ArtifactError(missing) from None
    try:
        return os.pread(fd, 4 + _PREFIX_MAX + HEADER_BYTES, 0), os.fstat(fd).st_size
    except OSError as e:
        raise ArtifactError(f"cannot read {what}{p}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def ultralytics_prefix(data: bytes) -> tuple[int, dict[str, Any]] | None:
    """(offset of the plan, metadata) when ``data`` starts with a 4-byte length + JSON object + a plan."""
    if len(data) < 4 + 2:
        return None
    n = int.from_bytes(data[:4], "little")
    if not 2 <= n <= _PREFIX_MAX or len(data) < 4 + n:
        return None
    try:
        meta = parse_json(data[4 : 4 + n])  # bounded depth: a hostile prefix is "not a prefix", not a traceback
    except ValueError:
        return None
    if not isinstance(meta, dict):
        return None
    return 4 + n, meta


def _what_instead(data: bytes, size: int) -> str:
    """One clause saying what a non-plan file is, with the fix."""
    if size == 0:
        return "the file is empty; the build that wrote it failed: build the engine again"
    pre = ultralytics_prefix(data)
    if pre is not None:
        off, meta = pre
        inner = ""
        if data[off : off + 4] == MAGIC and len(data) >= off + HEADER_BYTES:
            v = tuple(data[off + 24 : off + 28])
            inner = f" a TensorRT {'.'.join(map(str, v))} plan" if _plausible(v) else " a TensorRT plan"  # type: ignore[arg-type]
        keys = ", ".join(sorted(meta)[:4])
        return (
            f"it is an Ultralytics-style engine ({off - 4} bytes of JSON metadata [{keys}] before{inner or ' the plan'}); "
            f"strip the first {off} bytes (tail -c +{off + 1} FILE > model.engine) or export the model with segdeploy"
        )
    head = data[:16]
    if head.startswith(b"PK\x03\x04"):
        return "it is a ZIP archive (a .pt2 / TorchScript model?); export it (segdeploy export) and build an engine"
    if head[:1] in (b"\x80",) and len(head) > 1 and head[1] in (2, 3, 4, 5):
        return "it is a Python pickle (a PyTorch checkpoint?); export the model (segdeploy export) and build an engine"
    if head.startswith(b"TRT-"):
        return "it is a TensorRT calibration cache, not an engine"
    stripped = data.lstrip()[:1]
    if stripped in (b"{", b"["):
        return "it is a JSON document, not an engine"
    if _looks_like_onnx(data):
        return "it is an ONNX model; build an engine from it (segdeploy build) or run it with onnxruntime"
    return f"it does not start with the plan magic 'ftrt' (first bytes {head[:8].hex()}); pass a TensorRT engine file"


def _looks_like_onnx(data: bytes) -> bool:
    # ModelProto starts with field 1 (ir_version, a small varint), then field 2 (producer_name, 0x12), 3, 4
    # (producer_version / domain, 0x1a / 0x22), 5 (model_version, 0x28), 7 (graph, 0x3a) or 8 (opset_import, 0x42)
    return len(data) >= 3 and data[0] == 0x08 and data[1] < 0x80 and data[2] in (0x12, 0x1A, 0x22, 0x28, 0x3A, 0x42)


def identify_file(path: str | os.PathLike) -> dict[str, Any]:
    """What ``path`` is: ``{"kind": "tensorrt-plan", "header": {...}}`` or ``{"kind": ..., "detail": ...}``.

    Kinds: tensorrt-plan, tensorrt-plan-unknown-layout, ultralytics-engine, truncated-plan, empty, zip,
    pickle, calibration-cache, json, onnx, unknown. Raises ArtifactError only when the file cannot be read.
    """
    p = os.fspath(path)
    data, size = _read_head(p, f"{p} not found; fix the path", f"{p} is a directory; pass a file")
    name = os.path.basename(p)
    try:
        h = parse_plan_header(data, name, size)
    except NotAPlanError as e:
        return {"kind": _kind_of(data, size), "size": size, "detail": e.message}
    kind = "tensorrt-plan" if h.version else "tensorrt-plan-unknown-layout"
    return {"kind": kind, "size": size, "header": h.to_dict()}


def _kind_of(data: bytes, size: int) -> str:
    if size == 0:
        return "empty"
    if data[:4] == MAGIC:
        return "truncated-plan"
    if ultralytics_prefix(data) is not None:
        return "ultralytics-engine"
    if data.startswith(b"PK\x03\x04"):
        return "zip"
    if data[:1] == b"\x80" and len(data) > 1 and data[1] in (2, 3, 4, 5):
        return "pickle"
    if data.startswith(b"TRT-"):
        return "calibration-cache"
    if data.lstrip()[:1] in (b"{", b"["):
        return "json"
    if _looks_like_onnx(data):
        return "onnx"
    return "unknown"


def _triple(v: tuple[int, ...]) -> tuple[int, int, int]:
    return (tuple(v) + (0, 0, 0))[:3]  # type: ignore[return-value]


def check_plan_version(header: PlanHeader, installed: str, *, version_compatible: bool = False) -> str | None:
    """Refuse a plan built by another TensorRT (major.minor.patch) than ``installed`` (``trt.__version__``).

    ``version_compatible=True`` (the plan was built with VERSION_COMPATIBLE) accepts a plan from the same or an
    older release within the forward-compatibility range TensorRT documents (same major, 8.6 -> 10.x, 10.x -> 11.x).
    Returns a warning string when the check cannot be made (unknown layout) or only the build number differs,
    else None. Raises :class:`PlanVersionError` naming both versions.
    """
    from segdeploy.trt.versions import parse_version

    inst = parse_version(installed)
    if header.version is None:
        return (f"{header.name}: the plan header layout {header.layout} is not understood (a plan from TensorRT "
                f"before 8.6, or a newer layout); TensorRT {installed} will check the version itself")
    plan_v = header.version
    pv, iv = _triple(plan_v), _triple(inst)
    where = f"{header.name} was built with TensorRT {header.version_str} but TensorRT {installed} is installed"
    if version_compatible:
        ok_major = pv[0] == iv[0] or (pv[0], iv[0]) in ((8, 10), (10, 11))
        if pv <= iv and ok_major:
            return None
        if pv > iv:
            raise PlanVersionError(
                f"{where}; a version-compatible plan runs only on the same or a newer TensorRT: install TensorRT "
                f">= {'.'.join(map(str, pv))} or rebuild the engine here from the ONNX"
            )
        raise PlanVersionError(
            f"{where}; version-compatible plans cross at most one major release (8.6 -> 10.x, 10.x -> 11.x): "
            "rebuild the engine here from the ONNX"
        )
    if pv != iv:
        raise PlanVersionError(
            f"{where}; an engine only loads in the TensorRT version that built it: rebuild it here from the ONNX "
            f"bundle (segdeploy build), or run it where TensorRT {'.'.join(map(str, pv))} is installed"
        )
    if len(inst) == 4 and inst[3] != plan_v[3]:
        return f"{where} (same release, other build number); TensorRT will check the plan itself"
    return None
