"""Inspecting an export directory: the manifest's summary and the state of every file it lists.

Contract
--------
:func:`inspect_export_dir` opens the directory with :meth:`segdeploy.exportdir.ExportDir.open` (schema checked,
files not yet hashed) and reports the model, the input profile, the ONNX, the lowered precisions, the engines
and, per listed file, its state: ``ok`` (present, sha256 and size as listed), ``modified`` (present, different),
``missing``, or ``not a regular file`` (a link, FIFO or directory in its place: never followed, never waited on).
A directory without a manifest, or with an invalid one, is one :class:`~segdeploy.errors.ArtifactError` line.
:func:`export_dir_text` renders the report.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from segdeploy import safefs
from segdeploy.errors import ArtifactError
from segdeploy.exportdir import ExportDir
from segdeploy.vocab import LOWERED_PRECISIONS

FILE_STATES = ("ok", "modified", "missing", "not a regular file")


def _file_state(dfd: int, where: Path, name: str, sha256: str, size: int) -> str:
    if safefs.lstat_at(dfd, name) is None:
        return "missing"
    try:
        fd = safefs.open_regular(dfd, name, shown=where / name, fix="")
    except (ArtifactError, FileNotFoundError):
        return "not a regular file"
    try:
        sha, n = safefs.hash_fd(fd)
    finally:
        os.close(fd)
    return "ok" if (sha, n) == (sha256, size) else "modified"


def file_states(ed: ExportDir) -> dict[str, dict[str, Any]]:
    """name -> kind, bytes (as listed) and state (one of :data:`FILE_STATES`), through one directory handle."""
    with safefs.dir_handle(ed.path) as dfd:
        return {name: {"kind": e.kind, "bytes": e.bytes, "state": _file_state(dfd, ed.path, name, e.sha256, e.bytes)}
                for name, e in sorted(ed.files.items())}


def _precisions(ed: ExportDir) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in LOWERED_PRECISIONS:
        entry = ed.lowered(kind)
        if entry:
            acc = entry.get("accuracy") if isinstance(entry.get("accuracy"), dict) else None
            out[str(kind)] = {"file": entry.get("file"), "accuracy_checked": acc is not None,
                              "images": acc.get("images") if acc else None, "truth": acc.get("truth") if acc else None,
                              "miou_drop_points": acc.get("miou_drop_points") if acc else None}
    return out


def _engines(ed: ExportDir) -> list[dict[str, Any]]:
    return [{"file": e.get("file"), "precision": e.get("precision"),
             "tensorrt": (e.get("tensorrt") or {}).get("version"), "gpu": (e.get("gpu") or {}).get("name")}
            for e in ed.engines]


def inspect_export_dir(path: Path) -> dict[str, Any]:
    """The report of the export directory ``path`` (see the module docstring)."""
    ed = ExportDir.open(path, verify=False)
    prof = ed.profile
    onnx = ed.onnx_info
    files = file_states(ed)
    return {
        "file": str(path), "kind": "export-dir",
        "model": {"source_format": ed.source_format, "source_sha256": ed.source_sha256, "in_channels": ed.in_channels,
                  "num_classes": ed.num_classes, "class_names": list(ed.class_names)},
        "input": {"name": ed.input_name, "min": list(prof.min), "opt": list(prof.opt), "max": list(prof.max),
                  "spatial_multiple": prof.spatial_multiple},
        "output": ed.output_name,
        "onnx": {"file": onnx.get("file"), "opset": onnx.get("opset"), "exporter": onnx.get("exporter")},
        "verified": bool(ed.verification.get("passed")),
        "precisions": _precisions(ed), "calibrated": ed.calibration is not None,
        "plugins": list(ed.plugin_ops), "engines": _engines(ed), "files": files,
        "intact": all(f["state"] == "ok" for f in files.values()),
    }


def _shape(s: list[int]) -> str:
    return "x".join(map(str, s))


def export_dir_text(r: dict[str, Any]) -> str:
    """The export directory report as terminal lines."""
    m, i, o = r["model"], r["input"], r["onnx"]
    names = f" ({', '.join(m['class_names'])})" if m["class_names"] else ""
    lines = [f"{r['file']}: segdeploy export directory ({'all files intact' if r['intact'] else 'FILES CHANGED'})",
             f"  model:    from a {m['source_format']} file, {m['in_channels']} channels in, {m['num_classes']} classes{names}",
             f"  profile:  {i['name']} min {_shape(i['min'])} opt {_shape(i['opt'])} max {_shape(i['max'])} "
             f"(H/W multiple of {i['spatial_multiple']})",
             f"  onnx:     {o['file']} (opset {o['opset']}, {o['exporter']} exporter), "
             + ("verified against PyTorch" if r["verified"] else "NOT verified")]
    for kind, p in r["precisions"].items():
        drop = p["miou_drop_points"]
        acc = ("accuracy NOT checked" if not p["accuracy_checked"] else
               f"accuracy checked on {p['images']} images against {p['truth']}"
               + (f": mIoU drop {drop:.2f} points" if drop is not None else ""))
        lines.append(f"  {kind}:     {p['file']} ({acc})")
    if r["plugins"]:
        lines.append(f"  plugins:  {', '.join(r['plugins'])}")
    for e in r["engines"]:
        lines.append(f"  engine:   {e['file']} ({e['precision']}, TensorRT {e['tensorrt']}, {e['gpu'] or 'unknown GPU'})")
    lines.append(f"  calibration: {'yes' if r['calibrated'] else 'none'}")
    lines.append("  files:")
    lines += [f"    {n:<24} {f['kind']:<12} {f['bytes']:>12,} bytes  {f['state']}" for n, f in r["files"].items()]
    return "\n".join(lines)
