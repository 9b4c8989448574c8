"""Reading a published export directory: the validated view, its file table, and the fd-level readers.

Contract
--------
* :meth:`ExportDir.open` ``(path, verify=True)`` -- the manifest's schema and types
  (:func:`segdeploy.manifest.validate_manifest`) and the sha256 and size of every listed file, all read through
  one directory handle (one published set even if a writer publishes meanwhile). The manifest and every listed
  file must be regular files reached without a link: a symbolic link, FIFO, device or directory in their place
  is one :class:`~segdeploy.errors.ArtifactError` line (never a hang, never a read elsewhere).
* :meth:`ExportDir.beside` -- the export directory holding a file, when a ``manifest.json`` entry sits beside it.
* :meth:`ExportDir.copy_without_engines` -- the directory's files and manifest, engines left out, into a new
  directory (the bundle's ``model/``): a valid export directory, every copied file hash-checked.
* :func:`read_manifest_unvalidated` -- the parsed JSON of a manifest for readers of one optional key.
* :func:`is_owned_name` -- the names segdeploy manages in an export directory (everything else is the user's).
* :func:`read_manifest_at`, :func:`open_listed`, :func:`check_hash`, :func:`manifest_bytes` -- the pieces the
  transaction shares with the view (the manifest is read and written one way).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segdeploy import safefs
from segdeploy.errors import ArtifactError
from segdeploy.jsonio import parse as parse_json
from segdeploy.manifest import MAX_MANIFEST_BYTES, REEXPORT, ManifestView, load_manifest_bytes
from segdeploy.vocab import (GATED_ORT_LEVEL, LOWERED_PRECISIONS, MANIFEST, MODEL_ONNX, TRT_ONNX, FileKind, Precision,
                             is_artifact_name)

_LEGACY = ("precision_report.json", ".calib_stats", ".calib_cache")
MANIFEST_LIMIT = MAX_MANIFEST_BYTES  # bytes; a manifest is a few KiB


def is_owned_name(name: str) -> bool:
    """True for names segdeploy manages in an export directory (everything else is the user's)."""
    return name in (MANIFEST, safefs.WORK_MARKER) or name in _LEGACY or is_artifact_name(name)


@dataclass(frozen=True)
class FileEntry:
    """One row of the file table."""

    name: str
    kind: str
    sha256: str
    bytes: int
    derived_from: dict[str, str] = field(default_factory=dict)  # input file -> its sha256 when this was made

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "sha256": self.sha256, "bytes": self.bytes, "derived_from": dict(self.derived_from)}


def manifest_bytes(doc: dict[str, Any]) -> bytes:
    """The bytes of a manifest file: sorted keys, no timestamps (equal content gives equal bytes)."""
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def file_entries(doc: dict[str, Any]) -> dict[str, FileEntry]:
    """The file table of a (validated) manifest as :class:`FileEntry` rows."""
    return {n: FileEntry(n, e["kind"], e["sha256"], e["bytes"], dict(e["derived_from"])) for n, e in doc["files"].items()}


def set_file_table(doc: dict[str, Any], entries: dict[str, FileEntry]) -> None:
    """Replace the manifest's file table by ``entries`` (sorted by name)."""
    doc["files"] = {n: e.to_dict() for n, e in sorted(entries.items())}


# ------------------------------------------------------------------------------------------- fd-level readers


def _open_at(dfd: int, where: Path, name: str, missing: str) -> int:
    """Open regular file ``name`` in the directory ``dfd`` (``where``) for reading, links never followed, a FIFO
    never waited on; ArtifactError ``missing`` when absent, one line naming the file for anything else."""
    try:
        return safefs.open_regular(dfd, name, shown=where / name, fix=REEXPORT)
    except FileNotFoundError:
        raise ArtifactError(missing) from None


def read_manifest_at(dfd: int, where: Path) -> dict[str, Any]:
    """The validated manifest of the directory ``dfd`` (shown as ``where``). Raises ArtifactError."""
    mpath = where / MANIFEST
    fd = _open_at(dfd, where, MANIFEST, f"{where} holds no {MANIFEST}; pass a `segdeploy export` directory, or {REEXPORT}")
    try:
        raw = safefs.read_fd(fd, shown=mpath, limit=MANIFEST_LIMIT, fix=REEXPORT)
    finally:
        os.close(fd)
    return load_manifest_bytes(raw, str(mpath))


def read_manifest_unvalidated(path: str | os.PathLike) -> Any:
    """The parsed JSON of a manifest without schema validation, for readers of one optional key that must also take
    hand-made manifests (the plugin library an engine needs). ``path``: an export directory or a manifest file.

    None when there is no such entry or it is not JSON; ArtifactError (one line) when the entry is there but is not
    a regular file reached without a link -- a FIFO, a link, a directory is never waited on nor silently ignored."""
    p = Path(path)
    if p.is_dir() and (p.name != MANIFEST or os.path.lexists(p / MANIFEST)):
        p = p / MANIFEST
    try:
        raw = safefs.read_file(p, fix=REEXPORT, limit=MANIFEST_LIMIT)
    except FileNotFoundError:
        return None
    try:
        return parse_json(raw, max_bytes=MANIFEST_LIMIT)
    except ValueError:
        return None


def open_listed(dfd: int, where: Path, name: str, entry: dict[str, Any]) -> int:
    """A handle to listed file ``name`` after checking its sha256 and size against ``entry``. Raises ArtifactError."""
    fd = _open_at(dfd, where, name, f"{where / name} (listed in the manifest) is missing; {REEXPORT}")
    try:
        sha, n = safefs.hash_fd(fd)
        check_hash(where / name, sha, n, entry)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_hash(path: Path, sha: str, n: int, entry: dict[str, Any]) -> None:
    """ArtifactError unless ``sha``/``n`` are the sha256 and size the file table lists for ``path``."""
    if sha != entry["sha256"] or n != entry["bytes"]:
        raise ArtifactError(
            f"{path} does not match the manifest (sha256 {sha[:12]}... vs {entry['sha256'][:12]}...): it "
            f"was modified or replaced after segdeploy wrote it; {REEXPORT}"
        )


def _verify_files_at(dfd: int, where: Path, doc: dict[str, Any]) -> None:
    for name, entry in sorted(doc["files"].items()):
        os.close(open_listed(dfd, where, name, entry))


# ------------------------------------------------------------------------------------------- the view


class ExportDir(ManifestView):
    """A validated, read-only view of a published export directory (see the module docstring)."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = path
        self.manifest = manifest

    @classmethod
    def open(cls, path: str | os.PathLike, *, verify: bool = True) -> "ExportDir":
        """Open and validate ``path`` (an export directory, or its manifest.json). Raises ArtifactError."""
        p = Path(path)
        if p.name == MANIFEST and os.path.lexists(p) and not os.path.lexists(p / MANIFEST):
            p = p.parent
        if not p.exists():
            raise ArtifactError(f"export directory {p} does not exist; run `segdeploy export MODEL --out {p}` first")
        if not p.is_dir():
            raise ArtifactError(f"{p} is not an export directory; pass the directory `segdeploy export --out` wrote")
        try:
            dfd = safefs.open_dir(p)
        except OSError as e:
            raise ArtifactError(f"cannot open {p}: {e.strerror}; check its permissions") from None
        try:
            doc = read_manifest_at(dfd, p)
            if verify:
                _verify_files_at(dfd, p, doc)
        finally:
            os.close(dfd)
        return cls(p, doc)

    @classmethod
    def beside(cls, path: str | os.PathLike, *, verify: bool = True) -> "ExportDir | None":
        """The export directory holding the file ``path`` when a ``manifest.json`` entry sits beside it, else None.

        Any entry counts -- a FIFO, a link, a directory named manifest.json is one ArtifactError line from
        :meth:`open`, never silently ignored (nor a hang)."""
        parent = Path(path).parent
        if not os.path.lexists(parent / MANIFEST):
            return None
        return cls.open(parent, verify=verify)

    # ---- typed accessors (the rest come from ManifestView)
    @property
    def files(self) -> dict[str, FileEntry]:
        return file_entries(self.manifest)

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    def file(self, name: str) -> Path:
        """Path of a listed file. Raises ArtifactError when the directory does not hold it."""
        if name not in self.manifest["files"]:
            raise ArtifactError(f"{self.path} holds no {name}; run the stage that makes it first")
        return self.path / name

    def section(self, name: str) -> Any:
        return self.manifest.get(name)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def onnx_variants(self) -> dict[str, Path]:
        """precision -> the ONNX TensorRT builds from: fp32 (model.trt.onnx when plugins are needed), fp16, int8."""
        out = {Precision.FP32: self.path / (TRT_ONNX if self.needs_plugins else MODEL_ONNX)}
        for kind in LOWERED_PRECISIONS:
            entry = self.lowered(kind)
            if entry:
                out[kind] = self.path / entry["file"]
        return out

    @property
    def validation_source(self) -> str | None:
        """The validation split the precision stage checked accuracy on (as recorded), or None."""
        return ((self.precision_section or {}).get("validation") or {}).get("source") or None

    def gated_agreement(self, precision: str) -> float | None:
        """The fraction of pixels where the lowered ``precision`` model (int8-implicit: the INT8 one) agreed with the
        FP32 reference on the CPU at the gate's ORT level, as the precision stage measured it; None if unmeasured."""
        lowered = Precision.INT8 if precision.startswith(Precision.INT8) else precision
        accuracy = (self.lowered(lowered) or {}).get("accuracy") or {}
        return ((accuracy.get("levels") or {}).get(GATED_ORT_LEVEL) or {}).get("agreement_vs_reference")

    def copy_without_engines(self, dst: Path) -> list[str]:
        """Copy this directory into the new directory ``dst`` without its engines (they run only on the GPU and
        TensorRT they were built with): every other listed file (read without following links, hash-checked by
        reopening the copy) and the manifest without the engine entries. Returns the engine names left out."""
        doc = json.loads(json.dumps(self.manifest))
        engines = sorted(n for n, e in self.files.items() if e.kind == FileKind.ENGINE)
        dst.mkdir(parents=True)
        with safefs.dir_handle(self.path) as src_fd, safefs.dir_handle(dst) as dst_fd:
            for name in self.files:
                if name in engines:
                    continue
                fd = safefs.open_regular(src_fd, name, shown=self.path / name, fix=REEXPORT)
                try:
                    safefs.copy_fd_at(fd, dst_fd, name)
                finally:
                    os.close(fd)
        if engines:
            for n in engines:
                doc["files"].pop(n)
            doc.pop("engines", None)
        safefs.atomic_write(dst / MANIFEST, manifest_bytes(doc))
        ExportDir.open(dst)  # a valid export directory, every copied file hash-checked against the manifest
        return engines
