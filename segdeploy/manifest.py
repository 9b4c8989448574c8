"""The manifest: a versioned JSON document that travels beside the artifacts.

It records everything a later stage (or a Jetson with nothing but the bundle) needs: input/output names,
dtypes and the shape profile, preprocessing, classes, how the ONNX was produced (exporter, opset,
rewrites), versions, hashes and verification results. Later stages add their own sections
(``precision``, ``calibration``, ``engines``) through :func:`update_manifest`.

Schema (``schema_version`` 1) -- required top-level keys and their types are in ``REQUIRED``;
unknown keys are allowed (forward compatible); a document with a newer major version is refused.
The file is written with sorted keys and no timestamps, so equal content gives equal bytes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from segdeploy.errors import ArtifactError
from segdeploy.fsutil import atomic_write_json

SCHEMA_NAME = "segdeploy.manifest"
SCHEMA_VERSION = 1
MANIFEST_FILENAME = "manifest.json"

REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema": str,
    "schema_version": int,
    "segdeploy_version": str,
    "source": dict,
    "model": dict,
    "inputs": list,
    "outputs": list,
    "preprocess": dict,
    "onnx": dict,
    "rewrites": list,
    "verification": dict,
    "versions": dict,
}

_REQUIRED_NESTED: dict[str, tuple[str, ...]] = {
    "source": ("format", "sha256"),
    "model": ("in_channels", "num_classes", "spatial_multiple", "output_selection"),
    "preprocess": ("mean", "std", "scale", "channel_order", "resize"),
    "onnx": ("file", "opset", "exporter", "sha256"),
    "verification": ("passed", "shapes"),
}


def validate_manifest(doc: Any, where: str = "manifest") -> dict[str, Any]:
    """Check ``doc`` against the schema; return it. Raises ArtifactError naming the first problem."""
    if not isinstance(doc, dict):
        raise ArtifactError(f"{where} is not a JSON object; re-run `segdeploy export` to regenerate it")
    if doc.get("schema") != SCHEMA_NAME:
        raise ArtifactError(f"{where} is not a segdeploy manifest (schema={doc.get('schema')!r})")
    ver = doc.get("schema_version")
    if isinstance(ver, int) and ver > SCHEMA_VERSION:
        raise ArtifactError(
            f"{where} has schema version {ver}, newer than this segdeploy understands ({SCHEMA_VERSION}); "
            "upgrade segdeploy"
        )
    for key, typ in REQUIRED.items():
        if key not in doc:
            raise ArtifactError(f"{where} lacks required key {key!r}; re-run `segdeploy export` to regenerate it")
        if not isinstance(doc[key], typ):
            raise ArtifactError(f"{where} key {key!r} has the wrong type ({type(doc[key]).__name__})")
    for key, subkeys in _REQUIRED_NESTED.items():
        for sub in subkeys:
            if sub not in doc[key]:
                raise ArtifactError(f"{where} lacks {key}.{sub}; re-run `segdeploy export` to regenerate it")
    for i, io in enumerate(doc["inputs"] + doc["outputs"]):
        if not isinstance(io, dict) or not {"name", "dtype", "shape"} <= set(io):
            raise ArtifactError(f"{where} input/output entry {i} needs name, dtype and shape")
    if not doc["inputs"] or "profile" not in doc["inputs"][0]:
        raise ArtifactError(f"{where} input lacks its shape profile; re-run `segdeploy export`")
    return doc


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a manifest file (or the ``manifest.json`` inside a directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_FILENAME
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactError(f"manifest {p} not found; run `segdeploy export` first or pass the export directory") from None
    except OSError as e:
        raise ArtifactError(f"cannot read manifest {p}: {e.strerror or e}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArtifactError(f"manifest {p} is not valid JSON ({e.msg} at line {e.lineno}); re-run `segdeploy export`") from None
    return validate_manifest(doc, str(p))


def write_manifest(path: str | os.PathLike, doc: dict[str, Any]) -> None:
    """Validate and atomically write ``doc``."""
    validate_manifest(doc, str(path))
    atomic_write_json(path, doc)


def update_manifest(path: str | os.PathLike, section: str, value: Any) -> dict[str, Any]:
    """Set one top-level ``section`` of an existing manifest and rewrite it atomically; return the new doc."""
    doc = read_manifest(path)
    doc[section] = value
    p = Path(path)
    write_manifest(p / MANIFEST_FILENAME if p.is_dir() else p, doc)
    return doc


def onnx_profile_of(doc: dict[str, Any]):
    """The :class:`~segdeploy.spec.ShapeProfile` of the manifest's (single) input."""
    from segdeploy.spec import ShapeProfile

    return ShapeProfile.from_dict(doc["inputs"][0]["profile"])


def preprocess_of(doc: dict[str, Any]):
    """The :class:`~segdeploy.spec.Preprocess` recorded in the manifest."""
    from segdeploy.spec import Preprocess

    return Preprocess.from_dict(doc["preprocess"])
