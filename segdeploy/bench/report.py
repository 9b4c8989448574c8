"""The ``segdeploy.bench`` report: JSON document (schema version 1, docs/bench.md) and terminal tables.

* :func:`build_report` -- targets + measurement -> the document. Ratios are computed here, against target 0
  (the first artifact's first runner) **at the same shape**: ``speedup_vs_baseline = baseline p50 / p50``
  (> 1: faster than the baseline), ``latency_ratio_vs_baseline = p50 / baseline p50`` and
  ``throughput_ratio_vs_baseline = images/s / baseline images/s``.
* :func:`format_report` -- the human-readable tables (latency, ratios, load and memory, notes).
* :func:`validate_report`, :func:`write_report` (atomic, sorted keys), :func:`dumps`.

Raises ArtifactError for documents that are not bench reports (validate/write).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any

from segdeploy.errors import ArtifactError
from segdeploy.fsutil import atomic_write_json, sha256_file

SCHEMA_NAME = "segdeploy.bench"
SCHEMA_VERSION = 1
REQUIRED = ("schema", "schema_version", "settings", "shapes", "baseline", "targets", "results", "skipped", "notes")

MB = 1024 * 1024


def _fmt_shape(s) -> str:
    return "x".join(str(v) for v in s)


def _versions() -> dict[str, str | None]:
    import numpy

    from segdeploy import __version__

    out: dict[str, str | None] = {"segdeploy": __version__, "numpy": numpy.__version__,
                                  "python": platform.python_version()}
    for mod in ("torch", "onnxruntime", "tensorrt"):
        m = sys.modules.get(mod)
        out[mod] = getattr(m, "__version__", None) if m is not None else None
    return out


def _machine(device_memory: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                           "cpu_count": os.cpu_count(), "cuda_device": None}
    torch = sys.modules.get("torch")
    if torch is not None and device_memory:
        try:
            out["cuda_device"] = torch.cuda.get_device_name()
        except Exception:
            out["cuda_device"] = None
    return out


def _file_facts(path) -> dict[str, Any]:
    try:
        return {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}
    except OSError:
        return {"sha256": None, "bytes": None}


def build_report(exp, shapes, m, options, *, notes: list[str], torch_threads: int | None,
                 command: str | None = None) -> dict[str, Any]:
    """Assemble the document from an Expansion, the shapes, a Measurement and the BenchOptions."""
    shape_keys = [_fmt_shape(s) for s in shapes]
    all_notes = list(notes)
    if options.threads is None:
        all_notes.append("threads: library defaults (torch and ONNX Runtime each use about one thread per "
                         "physical core); pass --threads T to pin both")
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "segdeploy_version": _versions()["segdeploy"],
        "command": command,
        "versions": _versions(),
        "machine": _machine(m.device_memory),
        "settings": _settings(options, torch_threads),
        "shapes": [list(s) for s in shapes],
        "baseline": 0,
        "timed_rounds": {shape_keys[si]: k for si, k in m.rounds.items()},
        "timed_seconds": {shape_keys[si]: v for si, v in m.seconds.items()},
        "device_memory_measured": m.device_memory,
        "targets": _targets(exp, m, shape_keys),
        "results": _results(exp, m),
        "skipped": [s.to_dict() for s in exp.skipped],
        "notes": all_notes,
    }


def _targets(exp, m, shape_keys: list[str]) -> list[dict[str, Any]]:
    targets = []
    for i, (t, rec) in enumerate(zip(exp.targets, m.records)):
        d = t.to_dict()
        d.update({
            "index": i,
            **_file_facts(t.artifact),
            "runner_info": rec.describe,
            "open_s": rec.open_s,
            "first_call_ms": {shape_keys[si]: v for si, v in rec.first_call_ms.items()},
            "memory": rec.memory,
        })
        targets.append(d)
    return targets


def _results(exp, m) -> list[dict[str, Any]]:
    """Each (target, shape) result with its ratios against target 0 at the same shape."""
    base = {r.shape: r for r in m.results if r.runner == 0}
    results = []
    for r in m.results:
        d = r.to_dict()
        b = base[r.shape]
        p50, bp50 = r.latency_ms["p50"], b.latency_ms["p50"]
        d.update({
            "target": r.runner,
            "label": exp.targets[r.runner].label,
            "speedup_vs_baseline": bp50 / p50 if p50 > 0 else None,
            "latency_ratio_vs_baseline": p50 / bp50 if bp50 > 0 else None,
            "throughput_ratio_vs_baseline": (r.throughput_ips / b.throughput_ips) if b.throughput_ips > 0 else None,
        })
        results.append(d)
    return results


def _settings(options, torch_threads: int | None) -> dict[str, Any]:
    mo = options.measure_options()
    return {
        "warmup": mo.warmup,
        "iters": mo.iters,
        "seconds": mo.seconds,
        "min_iters": mo.min_iters,
        "threads": options.threads,
        "torch_threads": torch_threads,
        "ort_intra_op_threads": options.threads,
        "ort_opt_level": options.ort_opt_level,
        "seed": mo.seed,
        "switch_gap_ms": mo.switch_gap_s * 1e3,
        "settle_calls": mo.settle_calls,
        "input": "standard-normal float32, seeded, the same array for every target",
        "order": ("rotating round-robin: timed round i gives every target one turn, starting at target i mod n; "
                  "a turn is a pause of switch_gap_ms, settle_calls untimed calls, then one timed call "
                  "(no pause or settle calls with a single target)"),
        "latency": "the runner's own timer per call (wall clock around the backend call, device synchronised)",
    }


def validate_report(doc: Any, where: str = "bench report") -> dict[str, Any]:
    """Check schema name/version and the required keys. Raises ArtifactError."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_NAME:
        raise ArtifactError(f"{where} is not a segdeploy bench report; pass a file written by `segdeploy bench --report`")
    ver = doc.get("schema_version")
    if not isinstance(ver, int) or ver > SCHEMA_VERSION:
        raise ArtifactError(f"{where} has schema version {ver}, this segdeploy reads up to {SCHEMA_VERSION}; "
                            "upgrade segdeploy")
    for k in REQUIRED:
        if k not in doc:
            raise ArtifactError(f"{where} lacks {k!r}; it is truncated or corrupt, re-run the benchmark")
    return doc


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True)


def write_report(path: str | os.PathLike, doc: dict[str, Any]) -> None:
    """Validate and write atomically (new file + rename, never through a link). Refuses a path that is an export
    directory's artifact (:func:`segdeploy.exportdir.guard_outputs`). Raises ArtifactError / UsageError."""
    from segdeploy.exportdir import guard_outputs

    validate_report(doc, str(path))
    guard_outputs([("--report", path)])
    atomic_write_json(path, doc)


# ------------------------------------------------------------------------------------------------ tables


def _num(v: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def _mb(v: int | None) -> str:
    return "-" if v is None else f"{v / MB:.0f}"


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def format_report(doc: dict[str, Any]) -> str:
    """Human-readable tables of a bench report."""
    s = doc["settings"]
    targets = doc["targets"]
    run = f"{s['iters']} rounds" if s["iters"] is not None else f"{s['seconds']:g} s per shape"
    threads = s["threads"] if s["threads"] is not None else "default"
    out = [f"segdeploy bench: {len(targets)} targets, interleaved ({run}, warmup {s['warmup']}, "
           f"{s['settle_calls']} settle call(s) after a {s['switch_gap_ms']:g} ms pause per turn), threads {threads}, "
           f"baseline #0 = {targets[0]['label']}"]
    footnotes: dict[str, int] = {}  # note -> its number, in order of first mention
    for shape in doc["shapes"]:
        out += _latency_table(doc, shape, footnotes)
    out += _memory_table(doc)
    out += _e2e_table(doc)
    if doc["skipped"]:
        out.append("")
        out.append("skipped:")
        out += [f"  {s['artifact']} [{s['runner']}]: {s['reason']}" for s in doc["skipped"]]
    if footnotes or doc["notes"]:
        out.append("")
        out += [f"[{k}] {n}" for n, k in footnotes.items()]
        out += [f"note: {n}" for n in doc["notes"]]
    out.append("argmax agree %: agreement with #0's output on the benchmark's random input (a same-model guard, "
               "not accuracy: use `segdeploy check` for that)")
    return "\n".join(out)


def _marks(target: dict[str, Any], footnotes: dict[str, int]) -> str:
    refs = []
    for n in target["notes"]:
        if n not in footnotes:
            footnotes[n] = len(footnotes) + 1
        refs.append(f"[{footnotes[n]}]")
    return "".join(refs)


def _latency_table(doc: dict[str, Any], shape: list[int], footnotes: dict[str, int]) -> list[str]:
    targets = doc["targets"]
    has_split = any(r["split_ms"] for r in doc["results"])
    rows = []
    for r in (r for r in doc["results"] if r["shape"] == shape):
        t = targets[r["target"]]
        lat = r["latency_ms"]
        agree = r["argmax_agreement_vs_baseline"]
        row = [f"{r['target']}", t["label"] + _marks(t, footnotes), t["precision"], _num(lat["p50"]), _num(lat["p90"]),
               _num(lat["p99"]), _num(r["throughput_ips"], "{:.1f}"),
               "baseline" if r["target"] == 0 else _num(r["speedup_vs_baseline"], "{:.2f}x"),
               "-" if agree is None else f"{100 * agree:.2f}"]
        if has_split:
            sp = r["split_ms"]
            row.append("-" if not sp else f"{sp['h2d']:.2f}/{sp['compute']:.2f}/{sp['d2h']:.2f}")
        rows.append(row)
    header = ["#", "target", "prec", "p50 ms", "p90 ms", "p99 ms", "img/s", "speedup vs #0", "argmax agree %"]
    if has_split:
        header.append("h2d/compute/d2h ms")
    key = _fmt_shape(shape)
    return (["", f"input {key} ({doc['timed_rounds'][key]} timed rounds, {doc['timed_seconds'][key]:.1f} s)"]
            + _table(header, rows, right={0, 3, 4, 5, 6, 7, 8}))


def _memory_table(doc: dict[str, Any]) -> list[str]:
    out = ["", "load and memory (each target loaded and warmed up alone, growth over the RSS just before it)"]
    dev = doc.get("device_memory_measured")
    rows = []
    for t in doc["targets"]:
        first = ", ".join(f"{v:.0f}" for v in t["first_call_ms"].values())
        mem = t["memory"]
        row = [str(t["index"]), t["label"], _num(t["open_s"]), first, _mb(mem.get("peak_rss_growth_bytes")),
               _mb(mem.get("retained_rss_growth_bytes"))]
        if dev:
            row.append(_mb(mem.get("peak_device_growth_bytes")))
        rows.append(row)
    header = ["#", "target", "open s", "first call ms", "peak RSS +MB", "kept RSS +MB"] + (["device +MB"] if dev else [])
    return out + _table(header, rows, right={0, 2, 3, 4, 5, 6})


def _e2e_table(doc: dict[str, Any]) -> list[str]:
    """The ``end_to_end`` rows (segdeploy.bench.e2e): each variant beside its plain model on ONNX Runtime's CPU."""
    rows = doc.get("end_to_end") or []
    if not rows:
        return []
    table = []
    for r in rows:
        b, ms = r["bytes_per_frame"], r["ms"]
        table.append([r["e2e_onnx"], "x".join(map(str, r["frames"])), f"{b['plain']['in']:,}/{b['plain']['out']:,}",
                      f"{b['end_to_end']['in']:,}/{b['end_to_end']['out']:,}",
                      f"{ms['host_pre']:.2f}+{ms['run']:.2f}+{ms['host_post']:.2f}", _num(ms["plain_total"]),
                      _num(ms["e2e_run"]), f"{r['speedup_total']:.2f}x", "yes" if r["class_maps_equal"] else "NO"])
    header = ["end-to-end variant", "frames", "plain B in/out", "e2e B in/out", "plain pre+run+post ms",
              "plain ms", "e2e ms", "speedup", "same map"]
    return (["", "end-to-end variants vs the plain model (ONNX Runtime CPU, medians; bytes per frame across the "
                 "model boundary; plain = host preprocessing + run + host crop/argmax)"]
            + _table(header, table, right={2, 3, 5, 6, 7}))
