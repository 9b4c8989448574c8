"""The manifest: a versioned JSON document that travels beside the artifacts.

It records everything a later stage (or a Jetson with nothing but the bundle) needs: input/output names,
dtypes and the shape profile, preprocessing, classes, how the ONNX was produced (exporter, opset,
rewrites), versions, verification results, and the **file table** (``files``: every artifact of the
directory with its kind, sha256, size and the sha256 of the files it was derived from). Later stages add
their own sections (``tensorrt_plugins``, ``calibration``, ``precision``, ``engines``).

Only :mod:`segdeploy.exportdir` reads and writes manifests on disk; this module holds the schema.

Schema ``segdeploy.manifest`` version 2 (version 1 had no file table and is refused with the fix).
:func:`validate_manifest` checks the structure *and the types* of every section it knows (a
``profile: null`` or ``num_classes: "six"`` is an :class:`~segdeploy.errors.ArtifactError` naming the key,
never a traceback later), that the shape profile and preprocessing are internally consistent, and that
every file a section names is in the file table. Unknown keys are allowed (forward compatible); a newer
schema version is refused. The file is written with sorted keys and no timestamps, so equal content gives
equal bytes.
"""

from __future__ import annotations

from typing import Any

from segdeploy.errors import ArtifactError, SegdeployError

SCHEMA_NAME = "segdeploy.manifest"
SCHEMA_VERSION = 2
MANIFEST_FILENAME = "manifest.json"

REEXPORT = "re-run `segdeploy export` to regenerate it"

# A tiny declarative type language: a Python type (or tuple of types); {"key": spec} for an object
# (keys starting with "?" are optional); [spec] for a list of spec; ("dict-of", spec) for a mapping of
# str -> spec. bool never passes as int/float.
_NUM = (int, float)
_PROFILE = {"min": [int], "opt": [int], "max": [int], "spatial_multiple": int, "?dynamic_axes": [str]}
_FILE_ENTRY = {"kind": str, "sha256": str, "bytes": int, "derived_from": ("dict-of", str)}
_OPT_STR = (str, type(None))
_ENGINE = {  # written by segdeploy.build.stage (engine_entry); checked against the file table like every section
    "file": str, "sha256": str, "precision": str, "source_onnx": str, "?source_sha256": str, "?bytes": int,
    "?tensorrt": {"?version": str, "?plan_header": (list, type(None))},
    "?gpu": {"?name": _OPT_STR, "?compute_capability": _OPT_STR},
    "?profile": _PROFILE, "?input": str, "?recipe": dict, "?flags": dict, "?build_options": dict,
    "?build_seconds": _NUM, "?plugins": _OPT_STR, "?plugin_creators": [str],
    "?calibration_cache": (dict, type(None)), "?warnings": [str], "?parity": (dict, type(None)),
}
SCHEMA: dict[str, Any] = {
    "schema": str,
    "schema_version": int,
    "segdeploy_version": str,
    "source": {"format": str, "sha256": str, "?path": str},
    "model": {"in_channels": int, "num_classes": int, "?class_names": [str], "spatial_multiple": int,
              "output_selection": str, "?output_stride": [_NUM], "?probe_notes": [str]},
    "inputs": [{"name": str, "dtype": str, "shape": list, "?layout": str, "profile": _PROFILE}],
    "outputs": [{"name": str, "dtype": str, "shape": list, "?layout": str}],
    "?static_axes": [{"axis": str, "reason": str}],
    "preprocess": {"mean": [_NUM], "std": [_NUM], "scale": _NUM, "channel_order": str, "resize": str},
    "onnx": {"file": str, "sha256": str, "opset": int, "exporter": str},
    "rewrites": [dict],
    "verification": {"passed": bool, "shapes": [dict]},
    "versions": ("dict-of", str),
    "files": ("dict-of", _FILE_ENTRY),
    "?tensorrt_plugins": {"file": str, "nodes": [dict]},
    "?calibration": {"method": dict, "set": dict, "model_sha256": str, "ranges_file": str, "trt_cache_file": str,
                     "trt_cache_version": int},
    "?precision": {"source_onnx": str, "?int8": {"file": str}, "?fp16": {"file": str}},
    "?engines": [_ENGINE],
}


def _typename(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _check(value: Any, spec: Any, where: str, path: str) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise ArtifactError(f"{where}: {path} must be an object, not {_typename(value)}; {REEXPORT}")
        for key, sub in spec.items():
            optional = key.startswith("?")
            name = key[1:] if optional else key
            if name not in value:
                if optional:
                    continue
                raise ArtifactError(f"{where} lacks {path + '.' if path else ''}{name}; {REEXPORT}")
            _check(value[name], sub, where, f"{path}.{name}" if path else name)
        return
    if isinstance(spec, list):
        if not isinstance(value, list):
            raise ArtifactError(f"{where}: {path} must be a list, not {_typename(value)}; {REEXPORT}")
        for i, item in enumerate(value):
            _check(item, spec[0], where, f"{path}[{i}]")
        return
    if isinstance(spec, tuple) and spec and spec[0] == "dict-of":
        if not isinstance(value, dict):
            raise ArtifactError(f"{where}: {path} must be an object, not {_typename(value)}; {REEXPORT}")
        for k, v in value.items():
            _check(v, spec[1], where, f"{path}[{k!r}]")
        return
    types = spec if isinstance(spec, tuple) else (spec,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise ArtifactError(f"{where}: {path} must be {want}, not {_typename(value)} ({value!r:.40}); {REEXPORT}")


def validate_manifest(doc: Any, where: str = "manifest") -> dict[str, Any]:
    """Check ``doc`` against the schema (structure, types, consistency); return it.

    Raises ArtifactError naming the first problem and the fix. File hashes are checked by
    :class:`segdeploy.exportdir.ExportDir`, which knows where the files are.
    """
    if not isinstance(doc, dict):
        raise ArtifactError(f"{where} is not a JSON object; {REEXPORT}")
    if doc.get("schema") != SCHEMA_NAME:
        raise ArtifactError(f"{where} is not a segdeploy manifest (schema={doc.get('schema')!r}); {REEXPORT}")
    ver = doc.get("schema_version")
    if isinstance(ver, int) and not isinstance(ver, bool) and ver > SCHEMA_VERSION:
        raise ArtifactError(f"{where} has schema version {ver}, newer than this segdeploy understands "
                            f"({SCHEMA_VERSION}); upgrade segdeploy")
    if ver != SCHEMA_VERSION:
        raise ArtifactError(f"{where} has schema version {ver!r}, which this segdeploy cannot read (it lacks the "
                            f"file table of version {SCHEMA_VERSION}); {REEXPORT}")
    _check(doc, SCHEMA, where, "")
    _check_consistency(doc, where)
    return doc


def _check_consistency(doc: dict[str, Any], where: str) -> None:
    from segdeploy.spec import Preprocess, ShapeProfile

    model = doc["model"]
    for key in ("in_channels", "num_classes", "spatial_multiple"):
        if model[key] < 1:
            raise ArtifactError(f"{where}: model.{key} must be >= 1, got {model[key]}; {REEXPORT}")
    names = model.get("class_names") or []
    if names and len(names) != model["num_classes"]:
        raise ArtifactError(f"{where}: model.class_names lists {len(names)} names for {model['num_classes']} "
                            f"classes; {REEXPORT}")
    if not doc["inputs"] or not doc["outputs"]:
        raise ArtifactError(f"{where} needs at least one input and one output; {REEXPORT}")
    try:
        prof = ShapeProfile.from_dict(doc["inputs"][0]["profile"])
        Preprocess.from_dict(doc["preprocess"])
    except (SegdeployError, TypeError, ValueError) as e:
        msg = e.message if isinstance(e, SegdeployError) else str(e)
        raise ArtifactError(f"{where}: inconsistent profile or preprocessing ({msg}); {REEXPORT}") from None
    if prof.channels != model["in_channels"]:
        raise ArtifactError(f"{where}: the profile has {prof.channels} channels but model.in_channels is "
                            f"{model['in_channels']}; {REEXPORT}")
    files = doc["files"]
    for name in referenced_files(doc):
        if name not in files:
            raise ArtifactError(f"{where} names {name} but its file table does not list it; {REEXPORT}")
    for name, entry in files.items():
        if "/" in name or "\\" in name or name in ("", ".", "..") or name.startswith("."):
            raise ArtifactError(f"{where}: file table entry {name!r} is not a plain file name; {REEXPORT}")
        if len(entry["sha256"]) != 64:
            raise ArtifactError(f"{where}: files[{name!r}].sha256 is not a SHA-256 digest; {REEXPORT}")


def _file_holders(doc: dict[str, Any]):
    """For each part of the manifest that names files: (the files it names, how to drop that part)."""
    if doc.get("tensorrt_plugins"):
        yield [doc["tensorrt_plugins"]["file"]], lambda: doc.pop("tensorrt_plugins")
    cal = doc.get("calibration")
    if cal:
        yield [cal["ranges_file"], cal["trt_cache_file"]], lambda: doc.pop("calibration")
    prec = doc.get("precision") or {}
    for kind in ("int8", "fp16"):
        if prec.get(kind):
            yield [prec[kind]["file"]], lambda k=kind: prec.pop(k)
    for e in list(doc.get("engines") or []):
        yield [e["file"]], lambda e=e: doc["engines"].remove(e)


def referenced_files(doc: dict[str, Any]) -> list[str]:
    """Every file name the manifest's sections refer to (they must all be in the file table)."""
    return [doc["onnx"]["file"]] + [f for files, _ in _file_holders(doc) for f in files]


def drop_unlisted(doc: dict[str, Any], listed: set[str]) -> None:
    """Remove the sections (and section entries) that name a file not in ``listed``; empty ``precision`` and
    ``engines`` go too. The inverse of :func:`referenced_files`, used when a transaction drops files."""
    for files, drop in list(_file_holders(doc)):
        if any(f not in listed for f in files):
            drop()
    prec = doc.get("precision")
    if prec is not None and not (prec.get("int8") or prec.get("fp16")):
        doc.pop("precision")
    if "engines" in doc and not doc["engines"]:
        doc.pop("engines")


def onnx_profile_of(doc: dict[str, Any]):
    """The :class:`~segdeploy.spec.ShapeProfile` of the manifest's (single) input."""
    from segdeploy.spec import ShapeProfile

    return ShapeProfile.from_dict(doc["inputs"][0]["profile"])


def preprocess_of(doc: dict[str, Any]):
    """The :class:`~segdeploy.spec.Preprocess` recorded in the manifest."""
    from segdeploy.spec import Preprocess

    return Preprocess.from_dict(doc["preprocess"])
