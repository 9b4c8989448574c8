"""The manifest: a versioned JSON document that travels beside the artifacts.

It records everything a later stage (or a Jetson with nothing but the bundle) needs: input/output names,
dtypes and the shape profile, preprocessing, classes, how the ONNX was produced (exporter, opset,
rewrites), versions, verification results, and the **file table** (``files``: every artifact of the
directory with its kind, sha256, size and the sha256 of the files it was derived from). Later stages add
their own sections (``tensorrt_plugins``, ``calibration``, ``precision``, ``engines``).

Only :mod:`segdeploy.exportdir` reads and writes manifests on disk; this module holds the schema.

Contract
--------
Schema ``segdeploy.manifest`` version 2 (version 1 had no file table and is refused with the fix).
:func:`load_manifest_bytes` parses the bytes of a manifest file with a size cap (:data:`MAX_MANIFEST_BYTES`)
and a nesting-depth cap (:mod:`segdeploy.jsonio`; plain ``json.loads`` would raise ``RecursionError`` on
``[[[[...]]]]``), then validates. :func:`validate_manifest` checks the structure *and the types* of every
section it knows (a ``profile: null`` or ``num_classes: "six"`` is an :class:`~segdeploy.errors.ArtifactError`
naming the key, never a traceback later), value bounds (``num_classes`` 1..65535; dimensions, channels,
batch and spatial multiples 1..2**31-1; opset 1..99; sizes >= 0; every file-table sha256 64 lowercase hex characters),
that every string is valid Unicode (no lone surrogates), that every file-table name is an artifact name
(:data:`segdeploy.vocab.ARTIFACT_NAME`: no NUL, ``/``, ``.``/``..``) of a known :data:`KINDS` kind whose ``derived_from``
names files of the table, that the shape profile and preprocessing are internally consistent, and that
every file a section names is in the file table. Unknown keys are allowed (forward compatible); a newer
schema version is refused. The file is written with sorted keys and no timestamps, so equal content gives
equal bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segdeploy.errors import ArtifactError, SegdeployError
from segdeploy.vocab import FileKind, Precision, is_artifact_name
from segdeploy.jsonio import SHA256, IntRange, check_types, first_unencodable, load_bytes

SCHEMA_NAME = "segdeploy.manifest"
SCHEMA_VERSION = 2

REEXPORT = "re-run `segdeploy export` to regenerate it"

KINDS = FileKind.values()  # every artifact kind the file table may list

MAX_MANIFEST_BYTES = 16 << 20  # segdeploy writes a few KiB; a manifest this large is not one it wrote
MAX_CLASSES = 65535
_DIM = IntRange(1, 2**31 - 1)  # a tensor dimension, batch, channel count or spatial multiple
_BYTES = IntRange(0, 2**63 - 1)
_OPSET = IntRange(1, 99)

# The schema, in the type language of segdeploy.jsonio.check_types.
_NUM = (int, float)
_PROFILE = {"min": [_DIM], "opt": [_DIM], "max": [_DIM], "spatial_multiple": _DIM, "?dynamic_axes": [str]}
_SHAPE = [(str, int)]  # symbolic axis names or sizes (sizes bounded in _check_consistency)
_FILE_ENTRY = {"kind": str, "sha256": SHA256, "bytes": _BYTES, "derived_from": ("dict-of", SHA256)}
_OPT_STR = (str, type(None))
_ENGINE = {  # written by segdeploy.engine.stage (engine_entry); checked against the file table like every section
    "file": str, "sha256": str, "precision": str, "source_onnx": str, "?source_sha256": str, "?bytes": _BYTES,
    "?tensorrt": {"?version": str, "?plan_header": (list, type(None))},
    "?gpu": {"?name": _OPT_STR, "?compute_capability": _OPT_STR},
    "?profile": _PROFILE, "?input": str, "?recipe": dict, "?flags": dict, "?build_options": dict,
    "?build_seconds": _NUM, "?plugins": _OPT_STR, "?plugin_creators": [str],
    "?calibration_cache": (dict, type(None)), "?warnings": [str], "?parity": (dict, type(None)),
}
_TENSOR = {"name": str, "dtype": str, "layout": str, "shape": _SHAPE, "?channel_order": str, "?meaning": str}
_END_TO_END = {  # written by segdeploy.export.e2e (the end-to-end variants: uint8 NHWC frame in, class map out)
    "input": _TENSOR, "outputs": [_TENSOR], "profile": _PROFILE, "in_graph": [str],
    "variants": ("dict-of", {"file": str, "source_onnx": str, "?verification": dict}),
}
SCHEMA: dict[str, Any] = {
    "schema": str,
    "schema_version": int,
    "segdeploy_version": str,
    "source": {"format": str, "sha256": str, "?path": str},
    "model": {"in_channels": _DIM, "num_classes": IntRange(1, MAX_CLASSES), "?class_names": [str],
              "spatial_multiple": _DIM, "output_selection": str, "?output_stride": [_NUM], "?probe_notes": [str]},
    "inputs": [{"name": str, "dtype": str, "shape": _SHAPE, "?layout": str, "profile": _PROFILE}],
    "outputs": [{"name": str, "dtype": str, "shape": _SHAPE, "?layout": str}],
    "?static_axes": [{"axis": str, "reason": str}],
    "preprocess": {"mean": [_NUM], "std": [_NUM], "scale": _NUM, "channel_order": str, "resize": str},
    "onnx": {"file": str, "sha256": str, "opset": _OPSET, "exporter": str},
    "rewrites": [dict],
    "verification": {"passed": bool, "shapes": [dict]},
    "versions": ("dict-of", str),
    "files": ("dict-of", _FILE_ENTRY),
    "?tensorrt_plugins": {"file": str, "nodes": [dict]},
    "?calibration": {"method": dict, "set": dict, "model_sha256": str, "ranges_file": str, "trt_cache_file": str,
                     "trt_cache_version": int},
    "?precision": {"source_onnx": str, "?int8": {"file": str}, "?fp16": {"file": str}},
    "?engines": [_ENGINE],
    "?end_to_end": _END_TO_END,
}


def load_manifest_bytes(raw: bytes, where: str) -> dict[str, Any]:
    """Parse the bytes of a manifest file (size and depth bounded) and validate it; ``where`` names the file.

    Raises ArtifactError in one line naming ``where``: too large, not UTF-8, not JSON, nested too deep, or
    any :func:`validate_manifest` problem.
    """
    doc = load_bytes(raw, where, max_bytes=MAX_MANIFEST_BYTES, fix=REEXPORT)
    return validate_manifest(doc, where)


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
    bad_text = first_unencodable(doc)
    if bad_text is not None:
        raise ArtifactError(f"{where}: {bad_text} is not valid Unicode text (a lone surrogate); {REEXPORT}")
    check_types(doc, SCHEMA, where, REEXPORT)
    _check_file_table(doc["files"], where)
    _check_consistency(doc, where)
    return doc


def _check_file_table(files: dict[str, Any], where: str) -> None:
    """Names (artifact names only: no NUL, '/', '.', '..'), kinds, and ``derived_from`` inside the table."""
    for name, entry in files.items():
        if not is_artifact_name(name):
            raise ArtifactError(f"{where}: file table entry {name!r} is not a plain file name of a segdeploy artifact "
                                f"(model*.onnx, model*.engine, ranges.json or model.calib.cache); {REEXPORT}")
        if entry["kind"] not in KINDS:
            raise ArtifactError(f"{where}: files[{name!r}].kind {entry['kind']!r:.40} is not one of "
                                f"{', '.join(KINDS)}; {REEXPORT}")
        for dep in entry["derived_from"]:
            if dep not in files:
                raise ArtifactError(f"{where}: files[{name!r}].derived_from names {dep!r:.60}, which the file table "
                                    f"does not list; {REEXPORT}")


def _check_consistency(doc: dict[str, Any], where: str) -> None:
    from segdeploy.spec import Preprocess, ShapeProfile

    model = doc["model"]
    for section in ("inputs", "outputs"):
        for i, tensor in enumerate(doc[section]):
            bad = [d for d in tensor["shape"] if isinstance(d, int) and not 1 <= d < 2**31]
            if bad:
                raise ArtifactError(f"{where}: {section}[{i}].shape has size {bad[0]!r:.40}; sizes must be in "
                                    f"1..{2**31 - 1}; {REEXPORT}")
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
            raise ArtifactError(f"{where} names {name!r:.80} but its file table does not list it; {REEXPORT}")


def _file_holders(doc: dict[str, Any]):
    """For each part of the manifest that names files: (the files it names, how to drop that part)."""
    if doc.get("tensorrt_plugins"):
        yield [doc["tensorrt_plugins"]["file"]], lambda: doc.pop("tensorrt_plugins")
    cal = doc.get("calibration")
    if cal:
        yield [cal["ranges_file"], cal["trt_cache_file"]], lambda: doc.pop("calibration")
    prec = doc.get("precision") or {}
    for kind in (Precision.INT8, Precision.FP16):
        if prec.get(kind):
            yield [prec[kind]["file"]], lambda k=kind: prec.pop(k)
    for e in list(doc.get("engines") or []):
        yield [e["file"]], lambda e=e: doc["engines"].remove(e)
    variants = (doc.get("end_to_end") or {}).get("variants") or {}
    for key, v in list(variants.items()):
        yield [v["file"]], lambda k=key: variants.pop(k)


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
    if prec is not None and not (prec.get(Precision.INT8) or prec.get(Precision.FP16)):
        doc.pop("precision")
    if "engines" in doc and not doc["engines"]:
        doc.pop("engines")
    if "end_to_end" in doc and not doc["end_to_end"].get("variants"):
        doc.pop("end_to_end")


def onnx_profile_of(doc: dict[str, Any]):
    """The :class:`~segdeploy.spec.ShapeProfile` of the manifest's (single) input."""
    from segdeploy.spec import ShapeProfile

    return ShapeProfile.from_dict(doc["inputs"][0]["profile"])


def preprocess_of(doc: dict[str, Any]):
    """The :class:`~segdeploy.spec.Preprocess` recorded in the manifest."""
    from segdeploy.spec import Preprocess

    return Preprocess.from_dict(doc["preprocess"])


class ManifestView:
    """Typed read access to a manifest document, shared by :class:`~segdeploy.exportdir.ExportDir` (a published
    directory) and :class:`~segdeploy.exportdir.Transaction` (the set being staged). Subclasses set ``manifest``.

    Nothing outside this module and :mod:`segdeploy.exportdir` reads manifest keys: code asks these accessors
    (``tests/test_structure.py`` enforces it). Sections a stage writes (``calibration``, ``precision``,
    ``tensorrt_plugins``, ``engines``) are returned as the JSON-able dicts the manifest holds.
    """

    manifest: dict[str, Any]

    # ---- the model and its input
    @property
    def profile(self):
        """The input's :class:`~segdeploy.spec.ShapeProfile` (also TensorRT's optimization profile)."""
        return onnx_profile_of(self.manifest)

    @property
    def preprocess(self):
        return preprocess_of(self.manifest)

    @property
    def input_name(self) -> str:
        return self.manifest["inputs"][0]["name"]

    @property
    def output_name(self) -> str:
        return self.manifest["outputs"][0]["name"]

    @property
    def num_classes(self) -> int:
        return int(self.manifest["model"]["num_classes"])

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.manifest["model"].get("class_names") or ())

    @property
    def in_channels(self) -> int:
        return int(self.manifest["model"]["in_channels"])

    @property
    def output_stride(self) -> tuple[float, float]:
        """Output size / input size per spatial axis (1.0: scores at the input resolution)."""
        return tuple(float(s) for s in self.manifest["model"].get("output_stride") or (1.0, 1.0))  # type: ignore[return-value]

    @property
    def model_info(self) -> dict[str, Any]:
        """The ``model`` section: channels, classes, spatial multiple, output selection and stride, probe notes."""
        return self.manifest["model"]

    @property
    def source_sha256(self) -> str:
        return self.manifest["source"]["sha256"]

    @property
    def source_format(self) -> str:
        return self.manifest["source"]["format"]

    # ---- what the export recorded
    @property
    def onnx_info(self) -> dict[str, Any]:
        """The ``onnx`` section: file, sha256, bytes, opset, exporter and why, attempts, clean-up."""
        return self.manifest["onnx"]

    @property
    def verification(self) -> dict[str, Any]:
        return self.manifest["verification"]

    @property
    def static_axes(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("static_axes") or [])

    @property
    def profile_narrowed(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("profile_narrowed") or [])

    @property
    def profile_source(self) -> dict[str, Any]:
        """How the profile's opt/max were chosen (``opt_from``: --shape, example input, data, default); {} if unrecorded."""
        return dict(self.manifest.get("profile_source") or {})

    @property
    def rewrites(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("rewrites") or [])

    @property
    def versions(self) -> dict[str, str]:
        return dict(self.manifest.get("versions") or {})

    # ---- sections later stages add
    @property
    def plugins_section(self) -> dict[str, Any] | None:
        """``tensorrt_plugins``: the plugin-node ONNX, its nodes and CPU check (None when the model needs none)."""
        return self.manifest.get("tensorrt_plugins") or None

    @property
    def needs_plugins(self) -> bool:
        return self.plugins_section is not None

    @property
    def calibration(self) -> dict[str, Any] | None:
        return self.manifest.get("calibration") or None

    @property
    def precision_section(self) -> dict[str, Any] | None:
        return self.manifest.get("precision") or None

    def lowered(self, precision: str) -> dict[str, Any] | None:
        """The ``precision`` section's entry for ``fp16`` / ``int8`` (file, sha256, accuracy, ...), or None."""
        return (self.precision_section or {}).get(precision) or None

    @property
    def engines(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("engines") or [])

    @property
    def file_table(self) -> dict[str, dict[str, Any]]:
        """The file table as JSON (name -> kind, sha256, bytes, derived_from), e.g. for the result document."""
        return self.manifest["files"]

    # ---- accessors added for the build stage, check, bench and inspect (issue 15)
    @property
    def plugin_ops(self) -> tuple[str, ...]:
        """The plugin op names the ``tensorrt_plugins`` section records, sorted (empty when the model needs none)."""
        nodes = (self.plugins_section or {}).get("nodes") or []
        return tuple(sorted({str(n.get("plugin") or n.get("op_type") or "?") for n in nodes if isinstance(n, dict)}))

    def lowered_file(self, precision: str) -> str | None:
        """The file name of the ``fp16`` / ``int8`` ONNX the precision stage recorded, or None."""
        entry = self.lowered(precision)
        return entry.get("file") if entry else None

    @property
    def engine_files(self) -> tuple[str, ...]:
        """The engine files the ``engines`` list names, in its order."""
        return tuple(e["file"] for e in self.engines)

    # ---- the end-to-end variants (segdeploy.export.e2e, issue 20)
    @property
    def end_to_end(self) -> dict[str, Any] | None:
        """The ``end_to_end`` section: the variants' input/outputs/profile, what the graph does, and per precision
        the file, its source ONNX and its verification (None when no variant was made)."""
        return self.manifest.get("end_to_end") or None

    def e2e_file(self, precision: str) -> str | None:
        """The end-to-end variant of ``precision`` (fp32, fp16, int8) the manifest lists, or None."""
        entry = ((self.end_to_end or {}).get("variants") or {}).get(precision)
        return entry.get("file") if entry else None

    def engine_entry(self, file: str) -> dict[str, Any] | None:
        """The ``engines`` entry of engine ``file`` (a copy), or None when the manifest does not list it."""
        return next((dict(e) for e in self.engines if e.get("file") == file), None)


@dataclass(frozen=True)
class EnginePluginsHint:
    """What a manifest read without validation says about the plugin library one engine needs
    (:func:`engine_plugins_hint`)."""

    listed: bool  # the manifest lists the engine
    library: str | None  # the library its entry names (None: it needs none, or it is not listed)
    model_needs_plugins: bool  # the manifest has a tensorrt_plugins section


def engine_plugins_hint(doc: Any, engine_name: str) -> EnginePluginsHint:
    """The plugin facts for engine ``engine_name`` in ``doc``, a manifest parsed WITHOUT validation (hand-written
    manifests beside engines: :func:`segdeploy.exportdir.read_manifest_unvalidated`). The one reader of those
    optional keys; anything malformed reads as "not listed, no plugins"."""
    if not isinstance(doc, dict):
        return EnginePluginsHint(False, None, False)
    engines = doc.get("engines")
    entry = next((e for e in engines if isinstance(e, dict) and e.get("file") == engine_name), None) \
        if isinstance(engines, list) else None
    library = entry.get("plugins") if entry is not None else None
    return EnginePluginsHint(entry is not None, library if isinstance(library, str) and library else None,
                             bool(doc.get("tensorrt_plugins")))


class ManifestDocument(ManifestView):
    """A :class:`ManifestView` over a document in memory (a stage's result, a manifest passed by a library caller);
    validate it first (:func:`validate_manifest`) when it does not come from segdeploy."""

    def __init__(self, doc: dict[str, Any]):
        self.manifest = doc
