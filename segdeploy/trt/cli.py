"""``segdeploy inspect FILE [--json]``: what a TensorRT engine is, without TensorRT.

Reads the plan header (:mod:`segdeploy.trt.plan`): the TensorRT version that built it, the size and sha256;
the ``manifest.json`` beside it when there is one (its ``engines`` entry for this file: precision, source ONNX,
GPU, profile, and whether the sha256 still matches); and, when a TensorRT module is importable, whether that
TensorRT can load the plan. A file that is not a plan (ONNX, Ultralytics-prefixed engine, calibration cache,
empty, truncated, ...) is named and the command exits 1 with one line (``--json`` prints the description
first). Library: :func:`inspect_engine` returns the JSON-able report.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import click

from segdeploy.errors import ArtifactError
from segdeploy.vocab import MANIFEST
from segdeploy.trt.plan import HEADER_BYTES, NotAPlanError, PlanVersionError, check_plan_version, identify_file, parse_plan_header



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
    if ident["kind"] not in ("tensorrt-plan", "tensorrt-plan-unknown-layout"):
        raise NotAPlanError(ident["detail"])
    with open(p, "rb") as f:
        header = parse_plan_header(f.read(HEADER_BYTES), p.name, ident["size"])
    sha = sha256_file(p)
    report: dict[str, Any] = {
        "file": str(p), "kind": ident["kind"], "bytes": ident["size"], "sha256": sha,
        "tensorrt_version": header.version_str, "plan_header": list(header.version) if header.version else None,
        "layout": header.layout,
    }
    m = _manifest_entry(p, sha)
    report["manifest"] = m
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


def _text(report: dict[str, Any]) -> str:
    name = os.path.basename(report["file"])
    ver = report["tensorrt_version"]
    lines = [f"{name}: TensorRT engine (plan), built with TensorRT {ver}" if ver else
             f"{name}: TensorRT engine (plan) with a header layout segdeploy cannot read (layout "
             f"{report['layout']}; a plan older than 8.6?)"]
    lines.append(f"  size:     {report['bytes'] / 2**20:.2f} MiB ({report['bytes']} bytes)")
    lines.append(f"  sha256:   {report['sha256']}")
    m = report["manifest"]
    if m is None:
        lines.append("  manifest: none beside it")
    elif not m["valid"]:
        lines.append(f"  manifest: {m['manifest']} is not valid: {m['problem']}")
    elif not m["listed"]:
        lines.append(f"  manifest: {m['manifest']} does not list this engine")
    else:
        e = m["entry"]
        gpu = e.get("gpu") or {}
        trt_rec = (e.get("tensorrt") or {}).get("version")
        lines.append(f"  manifest: precision {e.get('precision')} from {e.get('source_onnx')}"
                     + (f", TensorRT {trt_rec}" if trt_rec else "")
                     + (f", GPU {gpu.get('name')} (sm {gpu.get('compute_capability')})" if gpu.get("name") else ""))
        prof = e.get("profile")
        if prof:
            lines.append(f"  profile:  min {prof['min']} opt {prof['opt']} max {prof['max']}")
        lines.append("  sha256 matches the manifest" if m["sha256_matches"] else
                     "  sha256 DIFFERS from the manifest: the file was replaced after the build")
    inst = report["installed_tensorrt"]
    if inst is None:
        lines.append("  installed TensorRT: none (this machine cannot run it)")
    elif not inst.get("version"):
        lines.append(f"  installed TensorRT: broken ({inst.get('problem')})")
    else:
        can = "can load it" if inst.get("can_load") else "cannot load it"
        lines.append(f"  installed TensorRT: {inst['version']} ({can})" + (f": {inst['note']}" if inst.get("note") else ""))
    return "\n".join(lines)


@click.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the segdeploy.result document (the report is stages.inspect).")
def inspect_command(file: Path, as_json: bool) -> None:
    """Show which TensorRT version built an engine FILE (no TensorRT needed), its size, sha256 and manifest entry.

    Exits 1 with one line when FILE is not a TensorRT engine (it says what the file is).
    """
    from segdeploy.result import echo_json, result_doc

    try:
        report = inspect_engine(file)
    except NotAPlanError as e:
        if as_json:
            echo_json(result_doc("inspect", stages={"inspect": identify_file(file) | {"file": str(file)}}, error=e))
        raise
    if as_json:
        echo_json(result_doc("inspect", stages={"inspect": report}))
    else:
        click.echo(_text(report))
