"""The terminal view of a parity report: a summary table, per-class table, worst images, gate verdict.

``format_report(report, max_classes=30)`` returns plain text (no colours, no terminal queries) built only
from the JSON document, so it renders the same for a fresh check and a merged one.
"""

from __future__ import annotations

from typing import Any


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:6.2f}"


def _pts(v: float | None) -> str:
    return "-" if v is None else f"{v:+6.2f}"


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]


def _header(report: dict[str, Any]) -> list[str]:
    ds, ref, cand = report["dataset"], report["reference"], report["candidate"]
    return [
        f"parity check ({report['mode']}{', PARTIAL shard %d/%d' % (report['shard']['index'], report['shard']['count']) if report.get('partial') else ''})",
        f"  reference: {ref.get('kind')} {ref.get('path') or ref.get('name')}",
        f"  candidate: {cand.get('kind')} {cand.get('path') or cand.get('name')}"
        + (f" (ORT opt level {cand['graph_optimization_level']})" if cand.get("graph_optimization_level") else ""),
        f"  images: {ds['num_evaluated']} evaluated of {ds['num_entries']}"
        + (f", {ds['num_skipped']} skipped" if ds.get("num_skipped") else ""),
        "",
    ]


def _metrics(report: dict[str, Any]) -> list[str]:
    """The drift table (labelled) and the agreement table."""
    m, lines = report["metrics"], []
    agree = m["agreement"]
    if report["mode"] == "labelled":
        d = m["drift"]
        rows = [
            [name, _pct(m["reference"][k]), _pct(m["candidate"][k]), _pts(d[f"{k}_points"])]
            for name, k in (
                ("mIoU", "miou"),
                ("pixel accuracy", "pixel_accuracy"),
                ("mean pixel accuracy", "mean_pixel_accuracy"),
                ("frequency-weighted IoU", "fwiou"),
                ("mean Dice/F1", "mean_dice"),
            )
        ]
        lines += _table(rows, ["metric (%)", "reference", "candidate", "drop (pts)"]) + [""]
    lines += _table(
        [["pixel agreement", _pct(agree["pixel_accuracy"])], ["agreement mIoU", _pct(agree["miou"])]],
        ["candidate vs reference (%)", "value"],
    )
    return lines + [""]


def _classes(report: dict[str, Any], max_classes: int) -> list[str]:
    """Per-class IoU rows of the classes present (the most changed first when there are too many)."""
    m, labelled = report["metrics"], report["mode"] == "labelled"
    names = report["classes"].get("names") or []
    crow = []
    for c in range(report["classes"]["num_classes"]):
        label = f"{c} {names[c]}" if c < len(names) else str(c)
        if labelled:
            r, cc = m["reference"]["per_class_iou"][c], m["candidate"]["per_class_iou"][c]
            if r is not None or cc is not None:
                crow.append([label, _pct(r), _pct(cc), _pts(m["drift"]["per_class_iou_points"][c])])
        elif m["agreement"]["per_class_iou"][c] is not None:
            crow.append([label, _pct(m["agreement"]["per_class_iou"][c])])
    if not crow:
        return []
    hdr = ["class IoU (%)", "reference", "candidate", "drop"] if labelled else ["class", "agreement IoU"]
    if len(crow) <= max_classes:
        return _table(crow, hdr) + [""]
    crow.sort(key=lambda r: -float(r[-1]) if r[-1] != "-" else 0.0)
    return _table(crow[:max_classes], hdr) + [f"  ... {len(crow) - max_classes} more classes in the JSON", ""]


def _worst(report: dict[str, Any]) -> list[str]:
    worst = report.get("worst_images") or []
    if not worst:
        return []
    if report["mode"] == "labelled":
        rows = [[w["stem"], _pct(w["pixel_agreement"]), _pct(w.get("reference_miou")), _pct(w.get("candidate_miou")),
                 _pts(w.get("miou_drop_points"))] for w in worst]
        return _table(rows, ["worst images", "agree %", "ref mIoU", "cand mIoU", "drop"]) + [""]
    rows = [[w["stem"], _pct(w["pixel_agreement"]), _pct(w.get("agreement_miou"))] for w in worst]
    return _table(rows, ["worst images", "agree %", "agree mIoU"]) + [""]


def _problems_and_time(report: dict[str, Any]) -> list[str]:
    """NaN/Inf warning, per-image errors (first 10), timing."""
    lines = []
    nf = report.get("nonfinite", {})
    if nf.get("images"):
        lines.append(f"WARNING: candidate produced NaN/Inf on {nf['images']} image(s); those pixels are scored as wrong")
    errs = report.get("errors") or []
    if errs:
        lines.append(f"{len(errs)} per-image error(s):")
        lines += [f"  {e['stem']}: [{e['kind']}] {e['message']}" for e in errs[:10]]
        if len(errs) > 10:
            lines.append(f"  ... {len(errs) - 10} more in the JSON")
    t = report.get("timing") or {}
    if t.get("reference", {}).get("calls"):
        lines.append(
            f"time: reference {t['reference']['total_s']:.2f} s, candidate {t['candidate']['total_s']:.2f} s, "
            f"loop {t.get('loop_s', t['total_s']):.2f} s, total {t['total_s']:.2f} s"
            + (f" (check-loop overhead {100 * t['overhead_fraction']:.1f} % of runner time)" if t.get("overhead_fraction") is not None else "")
        )
    return lines


def _gate(report: dict[str, Any]) -> str:
    g = report["gate"]
    if report.get("partial"):
        return "gate: not evaluated on a shard; run `segdeploy merge`"
    if not g["evaluated"]:
        return "gate: no thresholds given (see --max-miou-drop, --min-agreement, --min-class-iou)"
    return "gate: PASSED" if g["passed"] else "gate: FAILED -- " + "; ".join(g["failures"])


def format_report(report: dict[str, Any], max_classes: int = 30) -> str:
    """Human-readable multi-line summary of a report dict (docs/parity_report.md)."""
    lines = (_header(report) + _metrics(report) + _classes(report, max_classes) + _worst(report)
             + _problems_and_time(report) + [_gate(report)])
    return "\n".join(lines)
