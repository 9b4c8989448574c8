"""Inspecting a TensorRT engine (plan) without TensorRT.

Contract
--------
:func:`inspect_engine` reads the plan header (:mod:`segdeploy.trt.plan`): the TensorRT version that built it, the
size and sha256; the ``manifest.json`` beside it when there is one (its ``engines`` entry for this file: precision,
source ONNX, GPU, profile, and whether the sha256 still matches); and, when a TensorRT module is importable,
whether that TensorRT can load the plan. A file that is not a plan raises :class:`~segdeploy.trt.plan.NotAPlanError`
(one line naming what it is). :func:`engine_text` renders the report for a terminal.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any

from segdeploy.errors import ArtifactError
from segdeploy.trt.plan import (HEADER_BYTES, NotAPlanError, PlanVersionError, check_plan_version, identify_file,
                                parse_plan_header)
from segdeploy.vocab import MANIFEST

PLAN_KINDS = ("tensorrt-plan", "tensorrt-plan-unknown-layout")


def _manifest_entry(path: Path, sha: str) -> dict[str, Any] | None:
    mpath = path.parent / MANIFEST
    if not os.path.lexists(mpath):  # any entry is read: a FIFO or link there is reported, never waited on
        return None
    try:
        from segdeploy.exportdir import ExportDir

        entry = ExportDir.open(path.parent, verify=False).engine_entry(path.name)
    except ArtifactError as e:
        return {"manifest": str(mpath), "valid": False, "problem": e.message}
    out: dict[str, Any] = {"manifest": str(mpath), "valid": True, "listed": entry is not None}
    if entry is not None:
        out["entry"] = entry
        out["sha256_matches"] = entry.get("sha256") == sha
    return out


def _installed_tensorrt() -> dict[str, Any] | None:
    for name in ("tensorrt",):
        if importlib.util.find_spec(name) is None:
            continue
        try:
            mod = importlib.import_module(name)
        except Exception as e:  # a broken install: report it, do not fail the inspection
            return {"module": name, "version": None, "problem": f"{type(e).__name__}: {e}"}
        return {"module": name, "version": str(getattr(mod, "__version__", "unknown"))}
    return None


def inspect_engine(path: str | os.PathLike) -> dict[str, Any]:
    """The report for ``path``. Raises NotAPlanError (after nothing was printed) for a non-plan, ArtifactError
    when the file cannot be read."""
    from segdeploy.fsutil import sha256_file

    p = Path(path)
    ident = identify_file(p)
    if ident["kind"] not in PLAN_KINDS:
        raise NotAPlanError(ident["detail"])
    with open(p, "rb") as f:
        header = parse_plan_header(f.read(HEADER_BYTES), p.name, ident["size"])
    sha = sha256_file(p)
    report: dict[str, Any] = {
        "file": str(p), "kind": ident["kind"], "bytes": ident["size"], "sha256": sha,
        "tensorrt_version": header.version_str, "plan_header": list(header.version) if header.version else None,
        "layout": header.layout,
    }
    report["manifest"] = _manifest_entry(p, sha)
    inst = _installed_tensorrt()
    if inst is not None and inst.get("version"):
        try:
            warning = check_plan_version(header, inst["version"])
            inst["can_load"] = True
            if warning:
                inst["note"] = warning
        except PlanVersionError as e:
            inst["can_load"] = False
            inst["note"] = e.message
    report["installed_tensorrt"] = inst
    return report


def _manifest_lines(m: dict[str, Any] | None) -> list[str]:
    if m is None:
        return ["  manifest: none beside it"]
    if not m["valid"]:
        return [f"  manifest: {m['manifest']} is not valid: {m['problem']}"]
    if not m["listed"]:
        return [f"  manifest: {m['manifest']} does not list this engine"]
    e = m["entry"]
    gpu = e.get("gpu") or {}
    trt_rec = (e.get("tensorrt") or {}).get("version")
    lines = [f"  manifest: precision {e.get('precision')} from {e.get('source_onnx')}"
             + (f", TensorRT {trt_rec}" if trt_rec else "")
             + (f", GPU {gpu.get('name')} (sm {gpu.get('compute_capability')})" if gpu.get("name") else "")]
    prof = e.get("profile")
    if prof:
        lines.append(f"  profile:  min {prof['min']} opt {prof['opt']} max {prof['max']}")
    lines.append("  sha256 matches the manifest" if m["sha256_matches"] else
                 "  sha256 DIFFERS from the manifest: the file was replaced after the build")
    return lines


def engine_text(report: dict[str, Any]) -> str:
    """The engine report as terminal lines."""
    name = os.path.basename(report["file"])
    ver = report["tensorrt_version"]
    lines = [f"{name}: TensorRT engine (plan), built with TensorRT {ver}" if ver else
             f"{name}: TensorRT engine (plan) with a header layout segdeploy cannot read (layout "
             f"{report['layout']}; a plan older than 8.6?)"]
    lines.append(f"  size:     {report['bytes'] / 2**20:.2f} MiB ({report['bytes']} bytes)")
    lines.append(f"  sha256:   {report['sha256']}")
    lines += _manifest_lines(report["manifest"])
    inst = report["installed_tensorrt"]
    if inst is None:
        lines.append("  installed TensorRT: none (this machine cannot run it)")
    elif not inst.get("version"):
        lines.append(f"  installed TensorRT: broken ({inst.get('problem')})")
    else:
        can = "can load it" if inst.get("can_load") else "cannot load it"
        lines.append(f"  installed TensorRT: {inst['version']} ({can})" + (f": {inst['note']}" if inst.get("note") else ""))
    return "\n".join(lines)
