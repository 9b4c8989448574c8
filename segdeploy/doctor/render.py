"""Render a doctor report (the dict from :func:`segdeploy.doctor.report.collect`) as a plain-text table.

Contract: ``render_table(report) -> str``. Works from the JSON form only (a saved ``--json`` report renders
the same). Absent probes print their note (what was looked for, or ``-``); failed probes print ``ERROR: <text>``.
"""

from __future__ import annotations

_W = 18  # label column width


def _versions_text(name: str, v) -> str:
    if name == "torch":
        cuda = f"CUDA {v['cuda_build']} build" if v.get("cuda_build") else "CPU-only build"
        avail = f"CUDA available: {'yes, ' + str(v['device_count']) + ' device(s)' if v['cuda_available'] else 'no'}"
        return f"{v['version']} ({cuda}; {avail})"
    if name == "onnxruntime":
        return f"{v['version']} (providers: {', '.join(v['providers'])})"
    if name == "tensorrt":
        return v["version"] + ("" if v.get("has_builder") else " (no Builder: runtime only)")
    if name == "tensorrt_lean":
        return f"{v.get('version') or 'unknown version'} (module {v['module']})"
    if name == "platform":
        return f"{v['system']} {v['machine']} ({v['release']})"
    if name == "cuda_runtime":
        return ", ".join(f"{k} {val}" for k, val in v.items() if val) or "-"
    if name == "gpu":
        return "; ".join(f"{g['name']} (compute capability {g['compute_capability']})" for g in v)
    if name == "tensorrt_headers":
        return f"{v['dir']} (TensorRT {v.get('version') or 'version unknown'})"
    if name == "plugin_library":
        state = "loadable" if v["loadable"] else f"NOT loadable: {v['load_error']}"
        return f"{v['path']} (from {v['source']}; {state})"
    return str(v)


_NOTE_SHOWN = {"segdeploy", "python", "nvcc", "cmake", "gpu", "dla", "tensorrt", "cuda_driver"}


def _probe_line(label: str, name: str, p: dict) -> str:
    if p["status"] == "error":
        text = f"ERROR: {p['error']}"
    elif p["status"] == "absent":
        text = p.get("note") or "-"
    else:
        text = _versions_text(name, p["value"])
        if p.get("note") and name in _NOTE_SHOWN:
            text += f"  [{p['note']}]"
    return f"  {label:<{_W}}{text}"


_SECTIONS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Versions", (("segdeploy", "segdeploy"), ("python", "python"), ("platform", "platform"), ("torch", "torch"),
                  ("onnx", "onnx"), ("onnxruntime", "onnxruntime"), ("tensorrt", "tensorrt"),
                  ("tensorrt lean", "tensorrt_lean"), ("trtexec", "trtexec"))),
    ("Toolchain", (("nvcc", "nvcc"), ("cmake", "cmake"), ("C++ compiler", "cxx"),
                   ("TensorRT headers", "tensorrt_headers"))),
    ("CUDA and GPU", (("CUDA driver", "cuda_driver"), ("CUDA runtime", "cuda_runtime"), ("GPU", "gpu"),
                      ("DLA cores", "dla"))),
    ("segdeploy plugins", (("plugin library", "plugin_library"),)),
)


def _jetson_lines(report: dict) -> list[str]:
    j = report.get("jetson")
    if report.get("jetson_error"):
        return [f"  {'Jetson':<{_W}}ERROR: {report['jetson_error']}"]
    if j is None:
        return [f"  {'Jetson':<{_W}}no"]
    rows: list[tuple[str, str | None]] = [
        ("model", j.get("model")),
        ("module", (j["module"] + (f" ({j['part_number']})" if j.get("part_number") else ""))
         if j.get("module") else None),
        ("SoC", f"{j['soc']} ({j['soc_name']}, compute capability {j['compute_capability']})"
         if j.get("soc_name") else j.get("soc")),
        ("L4T", j.get("l4t")),
        ("JetPack", f"{j['jetpack']} (from {j['jetpack_source']})" if j.get("jetpack") else None),
        ("ships TensorRT", (f"{j['tensorrt']} / CUDA {j['cuda']} (JetPack table"
                            + (", unconfirmed)" if not j.get("table_confirmed") else ")"))
         if j.get("tensorrt") else None),
    ]
    out = [f"  {k:<{_W}}{v if v is not None else '-'}" for k, v in rows]
    out += [f"  {'note':<{_W}}{n}" for n in j.get("notes", [])]
    return out


def _detected_line(report: dict) -> str:
    d = report.get("tensorrt_detected") or {}
    if d.get("version"):
        kind = "" if d.get("exact", True) else ", a table value"
        return f"  {'TensorRT on host':<{_W}}{d['version']} (from {d['source']}{kind})"
    return f"  {'TensorRT on host':<{_W}}none found ({'; '.join(d.get('tried', []))})"


def render_table(report: dict) -> str:
    """The report as text lines (see the module docstring)."""
    lines = [f"segdeploy doctor (report schema {report.get('schema')} v{report.get('schema_version')})"]
    probes = report.get("probes", {})
    for title, rows in _SECTIONS:
        lines.append("")
        lines.append(title)
        for label, name in rows:
            if name in probes:
                lines.append(_probe_line(label, name, probes[name]))
        if title == "Versions":
            lines.append(_detected_line(report))
    lines.append("")
    lines.append("Jetson")
    lines += _jetson_lines(report)
    lines.append("")
    lines.append("What this machine can do")
    for c in report.get("capabilities", []):
        lines.append(f"  {c['name']:<{_W}}{c['able']:<8}{c['detail']}")
        if c.get("hint"):
            lines.append(f"  {'':<{_W}}{'':<8}-> {c['hint']}")
    return "\n".join(lines)
