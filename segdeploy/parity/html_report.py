"""The HTML parity report: one self-contained file a person would rather look at than read.

Contents, top to bottom: a verdict header (gate PASS / FAIL / NOT GATED / PARTIAL with the headline numbers
and every tripped threshold), the summary metrics table (reference vs candidate vs drift, and candidate vs
reference agreement), per-class IoU bars reference vs candidate (inline SVG), the worst images as overlay
strips (image / ground truth / reference / candidate / disagreement map, see
:mod:`segdeploy.parity.overlays`), per-image errors, and the run details (command line, models with
hashes, dataset, preprocessing, versions, timings, notes).

Self-contained: inline CSS and SVG, images as base64 PNG data URIs, no scripts, no external resources (it
opens offline and can be attached to a CI run). Every string that comes from the report is HTML-escaped.

Instance-segmentation reports (``segdeploy.instance_report``, :func:`segdeploy.parity.instances.compare_instances`)
render with the same look: verdict, recall / precision / matched mask IoU / score drift, per-class recall and
precision bars, worst images (instances painted by class).

Input: the JSON report dict of docs/parity_report.md (``segdeploy.parity_report`` v1), as returned by
``run_check(...).report``, ``merge_reports`` or ``read_report``. The worst images' class maps come from the
report; the images themselves (and ground-truth masks) are re-read from the paths it records.

API
---
* :func:`render_html_report(report, ...) -> str`
* :func:`write_html_report(report, out_path, ...) -> Path` -- atomic write; raises ArtifactError for a
  document that is not a parity report (nothing is written then) or when the file cannot be written.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from segdeploy.errors import ArtifactError
from segdeploy.parity.overlays import (
    CHANGED_RGB,
    GAINED_RGB,
    LOST_RGB,
    WorstOverlay,
    class_color_hex,
    render_worst_overlays,
)

REF_COLOR = "#4c6ef5"
CAND_COLOR = "#f08c00"


def esc(value: Any) -> str:
    """HTML-escape any value's ``str`` (quotes included, safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _pct(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{100.0 * v:.{digits}f}%"


def _pts(v: float | None) -> str:
    if v is None:
        return "–"
    return "0.00" if v == 0 else f"{v:+.2f}"


def _small(v: float | None) -> str:
    """A small non-negative number: 4 decimals, or 2 significant digits below 0.001."""
    if v is None:
        return "–"
    return "0" if v == 0 else f"{v:.1e}" if abs(v) < 1e-3 else f"{v:.4f}"


def _rgb(c: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % c


def _drift_class(points: float | None, budget: float | None) -> str:
    """CSS class for a drop in points: bad when over the budget (or > 1 pt without one), warn when > 0.1."""
    if points is None:
        return ""
    limit = budget if budget is not None else 1.0
    if points > limit:
        return "bad"
    if points > 0.1:
        return "warn"
    return "good"


def _class_names(report: dict[str, Any], k: int) -> list[str]:
    names = list((report.get("classes") or {}).get("names") or [])
    return [str(names[i]) if i < len(names) and names[i] not in (None, "") else f"class {i}" for i in range(k)]


# ------------------------------------------------------------------------------------------------ header


def _verdict(report: dict[str, Any]) -> tuple[str, str, str]:
    """(css class, badge text, one-line explanation)."""
    gate = report.get("gate") or {}
    if report.get("partial"):
        sh = report.get("shard") or {}
        return "partial", "PARTIAL", f"shard {sh.get('index')}/{sh.get('count')}: merge the shards to evaluate the gate"
    if not gate.get("evaluated"):
        return "ungated", "NOT GATED", "no gate threshold was given (--max-miou-drop, --min-agreement, --min-class-iou)"
    if gate.get("passed"):
        return "pass", "PASS", "every gate threshold holds"
    n = len(gate.get("failures") or [])
    return "fail", "FAIL", f"{n} gate threshold{'s' if n != 1 else ''} tripped"


def _kpi(label: str, value: str, sub: str = "", cls: str = "") -> str:
    return (f'<div class="kpi {esc(cls)}"><div class="kpi-label">{esc(label)}</div>'
            f'<div class="kpi-value">{esc(value)}</div><div class="kpi-sub">{esc(sub)}</div></div>')


def _header_html(report: dict[str, Any], mode: str, cls: str, badge: str, why: str, kpis: list[str],
                 failures: list[str], extra_html: str) -> str:
    """The verdict banner shared by semantic and instance reports: badge, models, KPIs, tripped gates."""
    ref, cand = report.get("reference") or {}, report.get("candidate") or {}
    fail_html = ('<ul class="failures">' + "".join(f"<li>{esc(f)}</li>" for f in failures) + "</ul>") if failures else ""
    return f"""
<header class="verdict {cls}">
  <div class="verdict-top">
    <div class="badge" id="verdict">{esc(badge)}</div>
    <div class="headline">
      <h1>segdeploy parity report <span class="mode">{esc(mode)}</span></h1>
      <p class="models"><span class="swatch" style="background:{CAND_COLOR}"></span>candidate
        <code>{esc(cand.get('name') or cand.get('path'))}</code> <span class="dim">({esc(cand.get('kind'))}, {esc(cand.get('device'))})</span>
        &nbsp;vs&nbsp; <span class="swatch" style="background:{REF_COLOR}"></span>reference
        <code>{esc(ref.get('name') or ref.get('path'))}</code> <span class="dim">({esc(ref.get('kind'))}, {esc(ref.get('device'))})</span></p>
      <p class="why">{esc(why)}</p>
    </div>
  </div>
  <div class="kpis">{''.join(kpis)}</div>
  {fail_html}{extra_html}
</header>"""


def _header(report: dict[str, Any]) -> str:
    cls, badge, why = _verdict(report)
    m = report["metrics"]
    ds = report["dataset"]
    thr = ((report.get("gate") or {}).get("thresholds") or {})
    budget = thr.get("max_miou_drop_points")
    agree = m.get("agreement") or {}
    kpis = []
    if report["mode"] == "labelled" and m.get("drift"):
        drop = m["drift"].get("miou_points")
        kpis.append(_kpi("mIoU drop", f"{_pts(drop)} pts",
                         f"budget {budget:g} pts" if budget is not None else "no budget set", _drift_class(drop, budget)))
        kpis.append(_kpi("reference mIoU", _pct(m["reference"].get("miou")), "vs ground truth"))
        kpis.append(_kpi("candidate mIoU", _pct(m["candidate"].get("miou")), "vs ground truth"))
    else:
        miou = agree.get("miou")
        drop = None if miou is None else 100.0 * (1.0 - miou)
        kpis.append(_kpi("agreement mIoU", _pct(miou), "candidate vs reference", _drift_class(drop, budget)))
    kpis.append(_kpi("pixel agreement", _pct(agree.get("pixel_accuracy"), 3), "candidate == reference"))
    skipped = ds.get("num_skipped") or 0
    kpis.append(_kpi("images", f"{ds.get('num_evaluated')}",
                     f"of {ds.get('num_entries')}" + (f", {skipped} skipped" if skipped else ""), "warn" if skipped else ""))
    failures = (report.get("gate") or {}).get("failures") or []
    nonfinite = report.get("nonfinite") or {}
    warn_html = ""
    if nonfinite.get("images"):
        warn_html = (f'<p class="alert">candidate produced NaN/Inf on {esc(nonfinite["images"])} image(s) '
                     f'({esc(nonfinite.get("values"))} values): those pixels count as wrong</p>')
    return _header_html(report, report["mode"], cls, badge, why, kpis, failures, warn_html)


# ------------------------------------------------------------------------------------------------ tables


_THRESHOLD_LABELS = {"max_miou_drop_points": ("max mIoU drop", " pts"), "min_agreement_percent": ("min pixel agreement", "%"),
                     "min_class_iou_percent": ("min class IoU", "%")}


def _threshold_value(key: str, value: Any) -> str:
    if value is None:
        return "not set"
    if isinstance(value, (int, float)):
        return f"{value:g}{_THRESHOLD_LABELS.get(key, (key, ''))[1]}"
    return str(value)


def _summary_table(report: dict[str, Any]) -> str:
    m = report["metrics"]
    thr = ((report.get("gate") or {}).get("thresholds") or {})
    budget = thr.get("max_miou_drop_points")
    rows = []
    if report["mode"] == "labelled" and m.get("drift"):
        d = m["drift"]
        for name, key in (("mIoU", "miou"), ("pixel accuracy", "pixel_accuracy"),
                          ("mean pixel accuracy", "mean_pixel_accuracy"), ("frequency-weighted IoU", "fwiou"),
                          ("mean Dice / F1", "mean_dice")):
            v = d.get(f"{key}_points")
            rows.append(f'<tr><th scope="row">{esc(name)}</th><td>{_pct(m["reference"].get(key))}</td>'
                        f'<td>{_pct(m["candidate"].get(key))}</td>'
                        f'<td class="num {_drift_class(v, budget if key == "miou" else None)}">{_pts(v)}</td></tr>')
        table = ('<table class="metrics"><thead><tr><th>metric (vs ground truth)</th><th>reference</th>'
                 '<th>candidate</th><th>drop (pts)</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")
    else:
        table = ('<p class="dim">unlabelled run: no ground truth, the reference prediction is the pseudo ground '
                 'truth for the agreement metrics below.</p>')
    a = m.get("agreement") or {}
    agree = ('<table class="metrics agreement"><thead><tr><th>candidate vs reference</th><th>value</th></tr></thead><tbody>'
             f'<tr><th scope="row">pixel agreement</th><td>{_pct(a.get("pixel_accuracy"), 3)}</td></tr>'
             f'<tr><th scope="row">agreement mIoU</th><td>{_pct(a.get("miou"))}</td></tr>'
             f'<tr><th scope="row">pixels compared</th><td>{esc(a.get("pixels"))}</td></tr>'
             "</tbody></table>")
    thr_rows = "".join(f'<tr><th scope="row">{esc(_THRESHOLD_LABELS.get(k, (k, ""))[0])}</th><td>{esc(_threshold_value(k, v))}</td></tr>'
                       for k, v in sorted(thr.items()))
    gate_tbl = ('<table class="metrics"><thead><tr><th>gate threshold</th><th>value</th></tr></thead><tbody>'
                + thr_rows + "</tbody></table>") if thr_rows else ""
    return f'<section id="summary"><h2>Summary</h2><div class="tables">{table}{agree}{gate_tbl}</div></section>'


# ------------------------------------------------------------------------------------------------ bars


def class_iou_svg(
    names: Sequence[str],
    reference: Sequence[float | None] | None,
    candidate: Sequence[float | None],
    drift_points: Sequence[float | None] | None = None,
    *,
    class_ids: Sequence[int] | None = None,
    labels: tuple[str, str] = ("reference", "candidate"),
) -> str:
    """Inline SVG: one row per class, a reference bar (when given) and a candidate bar, values in %.

    Each row is ``<g class="class-row" data-class="K">`` with ``rect.bar.ref`` / ``rect.bar.cand``
    (a class whose value is undefined gets no rect and the text "absent"). ``class_ids`` (default
    0..K-1) give the swatch colour and ``data-class`` of each row; ``labels`` name the two bars in tooltips.
    """
    k = len(candidate)
    ids = list(class_ids) if class_ids is not None else list(range(k))
    label_w, bar_w, val_w = 170, 580, 160
    width = label_w + bar_w + val_w
    two = reference is not None
    bar_h = 11
    row_h = (2 * bar_h + 12) if two else (bar_h + 14)
    top = 26
    height = top + k * row_h + 8
    parts = [f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="per-class IoU">']
    for t in range(0, 101, 25):
        x = label_w + bar_w * t / 100
        parts.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 6}" class="grid"/>'
                     f'<text x="{x:.1f}" y="{top - 10}" class="axis" text-anchor="middle">{t}%</text>')
    for i in range(k):
        y0 = top + i * row_h
        name = names[i] if i < len(names) else f"class {i}"
        parts.append(f'<g class="class-row" data-class="{ids[i]}"><title>{esc(name)}</title>')
        parts.append(f'<rect x="0" y="{y0 + 2}" width="10" height="10" rx="2" fill="{class_color_hex(ids[i])}" class="swatch"/>')
        parts.append(f'<text x="16" y="{y0 + 11}" class="cname">{esc(name[:22])}</text>')
        rows = ([("ref", reference[i], REF_COLOR)] if two else []) + [("cand", candidate[i], CAND_COLOR)]
        for j, (kind, v, color) in enumerate(rows):
            y = y0 + j * (bar_h + 2)
            parts.append(f'<rect x="{label_w}" y="{y}" width="{bar_w}" height="{bar_h}" class="track"/>')
            if v is None:
                parts.append(f'<text x="{label_w + 4}" y="{y + bar_h - 2}" class="absent">absent</text>')
            else:
                w = max(0.0, min(1.0, float(v))) * bar_w
                parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="2" fill="{color}" '
                             f'class="bar {kind}"><title>{esc(name)} {esc(labels[0] if kind == "ref" else labels[1])}: '
                             f'{100 * v:.2f}%</title></rect>')
                parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + bar_h - 1}" class="val">{100 * v:.2f}%</text>')
        if drift_points is not None and i < len(drift_points) and drift_points[i] is not None:
            dv = drift_points[i]
            parts.append(f'<text x="{width - 4}" y="{y0 + bar_h + 5}" text-anchor="end" '
                         f'class="drift {_drift_class(dv, None)}">{_pts(dv)} pts</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _classes_section(report: dict[str, Any]) -> str:
    m = report["metrics"]
    k = int((report.get("classes") or {}).get("num_classes") or len((m.get("agreement") or {}).get("per_class_iou") or []))
    names = _class_names(report, k)
    if report["mode"] == "labelled" and m.get("reference") and m.get("candidate"):
        svg = class_iou_svg(names, m["reference"]["per_class_iou"], m["candidate"]["per_class_iou"],
                            (m.get("drift") or {}).get("per_class_iou_points"))
        legend = (f'<span class="swatch" style="background:{REF_COLOR}"></span>reference vs ground truth '
                  f'<span class="swatch" style="background:{CAND_COLOR}"></span>candidate vs ground truth '
                  '<span class="dim">· right: drop in points (reference − candidate)</span>')
    else:
        svg = class_iou_svg(names, None, (m.get("agreement") or {}).get("per_class_iou") or [None] * k)
        legend = (f'<span class="swatch" style="background:{CAND_COLOR}"></span>candidate IoU against the reference '
                  'prediction (agreement)')
    absent = ('<p class="dim small">"absent": the class appears in neither prediction nor ground truth; it is '
              'excluded from the means.</p>') if ">absent<" in svg else ""
    return (f'<section id="classes"><h2>Per-class IoU</h2><p class="legend">{legend}</p>'
            f'<div class="svgwrap">{svg}</div>{absent}</section>')


# ------------------------------------------------------------------------------------------------ worst images


def _legend_html(k: int, names: Sequence[str], labelled: bool, present: Sequence[int] | None = None,
                 nonfinite: bool = False) -> str:
    """Class swatches (all classes up to 40, else only ``present`` ones) and the disagreement colours."""
    ids = list(range(min(k, 256))) if k <= 40 or present is None else [i for i in present if 0 <= i < 256]
    sw = "".join(f'<span class="lg"><span class="swatch" style="background:{class_color_hex(i)}"></span>{esc(names[i])}</span>'
                 for i in ids)
    if labelled:
        dis = (f'<span class="lg"><span class="swatch" style="background:{_rgb(LOST_RGB)}"></span>candidate wrong, reference right</span>'
               f'<span class="lg"><span class="swatch" style="background:{_rgb(GAINED_RGB)}"></span>candidate right, reference wrong</span>'
               f'<span class="lg"><span class="swatch" style="background:{_rgb(CHANGED_RGB)}"></span>both wrong / ignored</span>')
    else:
        dis = f'<span class="lg"><span class="swatch" style="background:{_rgb(CHANGED_RGB)}"></span>candidate ≠ reference</span>'
    dis += '<span class="lg dim">a few isolated disagreeing pixels are framed by a square</span>'
    if nonfinite:
        dis += '<span class="lg"><span class="dim">NaN/Inf candidate pixels are listed per image</span></span>'
    return f'<div class="legend-box"><div><b>classes</b> {sw}</div><div><b>disagreement</b> {dis}</div></div>'


def _present_classes(report: dict[str, Any]) -> list[int]:
    """Classes present in any evaluated summary (reference, candidate, agreement)."""
    m = report.get("metrics") or {}
    out: set[int] = set()
    for key in ("reference", "candidate", "agreement"):
        out.update(int(i) for i in ((m.get(key) or {}).get("classes_present") or []))
    return sorted(out)


def _chip(label: str, value: str, cls: str = "") -> str:
    return f'<span class="chip {esc(cls)}"><span class="chip-l">{esc(label)}</span> {esc(value)}</span>'


def _worst_section(report: dict[str, Any], overlays: list[WorstOverlay]) -> str:
    k = int((report.get("classes") or {}).get("num_classes") or 0)
    names = _class_names(report, k)
    labelled = report["mode"] == "labelled"
    by = report.get("worst_images_by") or ""
    if not overlays:
        return ('<section id="worst"><h2>Worst images</h2><p class="dim">no worst images in this report '
                '(--worst 0, or nothing was evaluated).</p></section>')
    cards = []
    for rank, ov in enumerate(overlays, 1):
        rec = ov.record
        chips = []
        if labelled:
            chips.append(_chip("mIoU drop", f"{_pts(rec.get('miou_drop_points'))} pts",
                               _drift_class(rec.get("miou_drop_points"), None)))
            chips.append(_chip("ref mIoU", _pct(rec.get("reference_miou"))))
            chips.append(_chip("cand mIoU", _pct(rec.get("candidate_miou"))))
        chips.append(_chip("agreement", _pct(rec.get("pixel_agreement"), 3)))
        chips.append(_chip("agreement mIoU", _pct(rec.get("agreement_miou"))))
        if ov.counts:
            c = ov.counts
            txt = f"{c['changed']} px" + (f" (lost {c['lost']}, gained {c['gained']})" if labelled else "")
            chips.append(_chip("changed", txt))
        if rec.get("nonfinite_pixels"):
            chips.append(_chip("NaN/Inf px", str(rec["nonfinite_pixels"]), "bad"))
        figs = "".join(
            f'<figure><img src="{p.data_uri}" width="{p.width}" height="{p.height}" alt="{esc(p.title)} of {esc(rec.get("stem"))}" '
            f'class="ov" data-panel="{esc(p.title)}"><figcaption>{esc(p.title)}</figcaption></figure>'
            for p in ov.panels)
        notes = "".join(f'<p class="note">{esc(n)}</p>' for n in ov.notes)
        cards.append(
            f'<article class="card" data-stem="{esc(rec.get("stem"))}"><div class="card-head"><span class="rank">#{rank}</span>'
            f'<span class="stem">{esc(rec.get("stem"))}</span><span class="dim">{esc(rec.get("width"))}×{esc(rec.get("height"))}</span>'
            f'<span class="chips">{"".join(chips)}</span></div><div class="strip">{figs}</div>{notes}'
            f'<div class="path dim small">{esc(rec.get("image"))}</div></article>')
    same = all(ov.counts and ov.counts["changed"] == 0 for ov in overlays)
    banner = ('<p class="agree-all">candidate and reference agree on every pixel of every listed image '
              '(the disagreement maps are empty)</p>') if same else ""
    return (f'<section id="worst"><h2>Worst images <span class="dim small">ranked by {esc(by)}</span></h2>{banner}'
            f'{_legend_html(k, names, labelled, _present_classes(report), bool((report.get("nonfinite") or {}).get("images")))}'
            f'{"".join(cards)}</section>')


def _errors_section(report: dict[str, Any]) -> str:
    errs = report.get("errors") or []
    if not errs:
        return ""
    rows = "".join(f'<tr><td>{esc(e.get("stem"))}</td><td>{esc(e.get("kind"))}</td><td>{esc(e.get("message"))}</td></tr>'
                   for e in errs)
    return (f'<section id="errors"><h2>Per-image errors <span class="dim small">{len(errs)}</span></h2>'
            f'<table class="metrics wide"><thead><tr><th>image</th><th>kind</th><th>message</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></section>')


# ------------------------------------------------------------------------------------------------ run details


def _kv_table(title: str, items: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{esc("–" if v is None else v)}</td></tr>' for k, v in items)
    return f'<table class="kv"><caption>{esc(title)}</caption><tbody>{rows}</tbody></table>'


def _model_items(d: dict[str, Any]) -> list[tuple[str, Any]]:
    items = []
    for k in ("kind", "name", "path", "device", "providers", "graph_optimization_level", "precision"):
        if d.get(k) is not None:
            v = d[k]
            items.append((k, ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v))
    if d.get("sha256"):
        items.append(("sha256", d["sha256"]))
    return items


def _ms(t: dict[str, Any] | None) -> str:
    if not t or t.get("mean_ms") is None:
        return "–"
    return f"{t['mean_ms']:.2f} ms mean, {t.get('calls')} calls"


def _run_section(report: dict[str, Any]) -> str:
    cmd = report.get("command")
    cmd_html = (f'<pre class="cmd">{esc(cmd)}</pre>' if cmd else '<p class="dim">run from Python (no command line)</p>')
    ds = report.get("dataset") or {}
    cls = report.get("classes") or {}
    pre = report.get("preprocess") or {}
    prof = report.get("profile") or {}
    tm = report.get("timing") or {}
    vers = report.get("versions") or {}
    cb = report.get("created_by") or {}
    of = tm.get("overhead_fraction")
    tables = [
        _kv_table("reference", _model_items(report.get("reference") or {})),
        _kv_table("candidate", _model_items(report.get("candidate") or {})),
        _kv_table("dataset", [("images", ds.get("images")), ("masks", ds.get("masks")),
                              ("evaluated", f"{ds.get('num_evaluated')} of {ds.get('num_entries')}"),
                              ("classes", cls.get("num_classes")), ("ignore index", cls.get("ignore_index")),
                              ("manifest", report.get("manifest"))]),
        _kv_table("preprocessing", [(k, v) for k, v in sorted(pre.items())]
                  + ([("profile min/opt/max", f"{prof.get('min')} / {prof.get('opt')} / {prof.get('max')}")] if prof else [])),
        _kv_table("timing", [("reference", _ms(tm.get("reference"))), ("candidate", _ms(tm.get("candidate"))),
                             ("open", None if tm.get("open_s") is None else f"{tm['open_s']:.2f} s"),
                             ("loop", None if tm.get("loop_s") is None else f"{tm['loop_s']:.2f} s"),
                             ("total", None if tm.get("total_s") is None else f"{tm['total_s']:.2f} s"),
                             ("loop overhead", None if of is None else f"{100 * of:.1f}% of runner time")]),
        _kv_table("versions", [(k, v) for k, v in sorted(vers.items())]
                  + [("python", cb.get("python")), ("platform", cb.get("platform"))]),
    ]
    notes = report.get("notes") or []
    notes_html = ("<h3>Notes</h3><ul class='notes'>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>") if notes else ""
    return (f'<section id="run"><h2>Run</h2><h3>Command</h3>{cmd_html}<div class="kvgrid">{"".join(tables)}</div>'
            f'{notes_html}</section>')


# ------------------------------------------------------------------------------------------------ page

# ------------------------------------------------------------------------------------------------ instances


def _instance_header(report: dict[str, Any]) -> str:
    gate = report.get("gate") or {}
    if not gate.get("evaluated"):
        cls, badge, why = "ungated", "NOT GATED", "no gate threshold was given (--min-recall, --min-precision, --min-mask-iou, --max-score-drift)"
    elif gate.get("passed"):
        cls, badge, why = "pass", "PASS", "every gate threshold holds"
    else:
        n = len(gate.get("failures") or [])
        cls, badge, why = "fail", "FAIL", f"{n} gate threshold{'s' if n != 1 else ''} tripped"
    t = report["totals"]
    thr = gate.get("thresholds") or {}

    def lim(key: str, v: float | None) -> str:
        floor = thr.get(key)
        if floor is None or v is None:
            return ""
        return "bad" if 100.0 * v < floor else "good"

    sd = t["score_drift"]
    kpis = [
        _kpi("recall", _pct(t["recall"]), f"{t['matched']} of {t['reference']} reference", lim("min_recall_percent", t["recall"])),
        _kpi("precision", _pct(t["precision"]), f"{t['matched']} of {t['candidate']} candidate",
             lim("min_precision_percent", t["precision"])),
        _kpi("matched mask IoU", _pct(t["matched_mask_iou"]), f"IoU ≥ {report['options']['iou_threshold']:g} to match",
             lim("min_mask_iou_percent", t["matched_mask_iou"])),
        _kpi("score drift", _small(sd["mean"]), "mean |Δscore|" + ("" if sd["max"] is None else f", max {_small(sd['max'])}")),
        _kpi("images", str(report.get("num_images")), "compared"),
    ]
    return _header_html(report, "instances", cls, badge, why, kpis, gate.get("failures") or [], "")


def _instance_body(report: dict[str, Any], overlays: list[WorstOverlay]) -> str:
    t = report["totals"]
    opts = report.get("options") or {}
    rows = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in (
        ("reference instances", t["reference"]), ("candidate instances", t["candidate"]), ("matched", t["matched"]),
        ("missed (reference unmatched)", t["missed"]), ("extra (candidate unmatched)", t["extra"]),
        ("matched box IoU", _pct(t["box_iou"])),
        ("thresholds", f"match IoU ≥ {opts.get('iou_threshold')}, mask p > {opts.get('mask_threshold')}, "
                       f"score ≥ {opts.get('score_threshold')}")))
    summary = ('<section id="summary"><h2>Summary</h2><table class="metrics wide"><tbody>' + rows + "</tbody></table>"
               '<p class="dim small">Candidates are matched to reference instances of the same label, greedily by '
               'candidate score, by mask IoU.</p></section>')
    per = report.get("per_class") or {}
    ids = sorted(int(k) for k in per)
    names_all = list((report.get("classes") or {}).get("names") or [])
    names = [names_all[i] if i < len(names_all) and names_all[i] else f"class {i}" for i in ids]
    names = [f"{n} ({per[str(i)]['matched']}/{per[str(i)]['reference']}/{per[str(i)]['candidate']})" for n, i in zip(names, ids)]
    svg = class_iou_svg(names, [per[str(i)]["recall"] for i in ids], [per[str(i)]["precision"] for i in ids],
                        class_ids=ids, labels=("recall", "precision"))
    classes = (f'<section id="classes"><h2>Per class: recall and precision</h2><p class="legend">'
               f'<span class="swatch" style="background:{REF_COLOR}"></span>recall (reference instances reproduced) '
               f'<span class="swatch" style="background:{CAND_COLOR}"></span>precision (candidate instances matched) '
               '<span class="dim">· name (matched/reference/candidate)</span></p>'
               f'<div class="svgwrap">{svg}</div></section>')
    cards = []
    for rank, ov in enumerate(overlays, 1):
        rec = ov.record
        chips = [_chip("F1", _pct(rec.get("f1"))), _chip("matched", f"{rec.get('matched')}"),
                 _chip("reference", f"{rec.get('reference')}"), _chip("candidate", f"{rec.get('candidate')}"),
                 _chip("mean mask IoU", _pct(rec.get("mean_mask_iou")))]
        figs = "".join(
            f'<figure><img src="{p.data_uri}" width="{p.width}" height="{p.height}" alt="{esc(p.title)} of {esc(rec.get("stem"))}" '
            f'class="ov" data-panel="{esc(p.title)}"><figcaption>{esc(p.title)}</figcaption></figure>' for p in ov.panels)
        notes = "".join(f'<p class="note">{esc(n)}</p>' for n in ov.notes)
        cards.append(f'<article class="card" data-stem="{esc(rec.get("stem"))}"><div class="card-head"><span class="rank">#{rank}</span>'
                     f'<span class="stem">{esc(rec.get("stem"))}</span><span class="chips">{"".join(chips)}</span></div>'
                     f'<div class="strip">{figs}</div>{notes}</article>')
    worst = ('<section id="worst"><h2>Worst images <span class="dim small">ranked by F1 of the matching, then mean mask IoU'
             '</span></h2><p class="dim small">instances painted by class, the most confident on top; disagreement: '
             'pixels whose painted class differs.</p>' + ("".join(cards) or '<p class="dim">every image agrees.</p>')
             + "</section>")
    cmd = report.get("command")
    vers = report.get("versions") or {}
    cb = report.get("created_by") or {}
    run = ('<section id="run"><h2>Run</h2><h3>Command</h3>'
           + (f'<pre class="cmd">{esc(cmd)}</pre>' if cmd else '<p class="dim">run from Python (no command line)</p>')
           + '<div class="kvgrid">' + _kv_table("reference", _model_items(report.get("reference") or {}))
           + _kv_table("candidate", _model_items(report.get("candidate") or {}))
           + _kv_table("versions", [(k, v) for k, v in sorted(vers.items())]
                       + [("python", cb.get("python")), ("platform", cb.get("platform"))]) + "</div></section>")
    return summary + classes + worst + run


def _css() -> str:
    """The report's stylesheet (segdeploy/parity/report.css, shipped as package data), inlined into each report."""
    from importlib.resources import files

    return files("segdeploy.parity").joinpath("report.css").read_text(encoding="utf-8")



def render_html_report(
    report: dict[str, Any],
    *,
    overlays: list[WorstOverlay] | None = None,
    image_loader: Callable[[str], np.ndarray] | None = None,
    mask_loader: Callable[[str], np.ndarray] | None = None,
    max_side: int = 320,
) -> str:
    """The report as one HTML string. ``overlays`` (from :func:`render_worst_overlays`) are rendered here
    when not given; loaders/max_side are passed on to it. Raises ArtifactError for a non-report dict."""
    from segdeploy.parity.instances import SCHEMA_NAME as INSTANCE_SCHEMA

    if isinstance(report, dict) and report.get("schema") == INSTANCE_SCHEMA:
        return _render_instance_page(report, overlays, image_loader, max_side)
    from segdeploy.parity.report_json import validate_report

    validate_report(report)
    if overlays is None:
        overlays = render_worst_overlays(report, image_loader=image_loader, mask_loader=mask_loader, max_side=max_side)
    cls, badge, _ = _verdict(report)
    cand = report.get("candidate") or {}
    title = f"{badge} · segdeploy parity · {cand.get('name') or cand.get('path') or 'candidate'}"
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_css()}</style></head><body>",
        _header(report),
        "<main>",
        _summary_table(report),
        _classes_section(report),
        _worst_section(report, overlays),
        _errors_section(report),
        _run_section(report),
        "</main>",
        f'<footer>segdeploy {esc(report.get("segdeploy_version"))} · report schema '
        f'{esc(report.get("schema"))} v{esc(report.get("schema_version"))}</footer>',
        "</body></html>\n",
    ])


def _render_instance_page(report: dict[str, Any], overlays: list[WorstOverlay] | None,
                          image_loader: Callable[[str], np.ndarray] | None, max_side: int) -> str:
    for key in ("totals", "per_class", "worst_images", "options"):
        if key not in report:
            raise ArtifactError(f"instance report lacks {key!r}; it is truncated or corrupt, re-run the comparison")
    if overlays is None:
        overlays = render_worst_overlays(report, image_loader=image_loader, max_side=max_side)
    gate = report.get("gate") or {}
    badge = "NOT GATED" if not gate.get("evaluated") else ("PASS" if gate.get("passed") else "FAIL")
    cand = report.get("candidate") or {}
    title = f"{badge} · segdeploy instance parity · {cand.get('name') or 'candidate'}"
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_css()}</style></head><body>",
        _instance_header(report), "<main>", _instance_body(report, overlays), "</main>",
        f'<footer>segdeploy · report schema {esc(report.get("schema"))} v{esc(report.get("schema_version"))}</footer>',
        "</body></html>\n",
    ])


def write_html_report(
    report: dict[str, Any],
    out_path: str | os.PathLike,
    *,
    image_loader: Callable[[str], np.ndarray] | None = None,
    mask_loader: Callable[[str], np.ndarray] | None = None,
    max_side: int = 320,
) -> Path:
    """Render and write the HTML report atomically (new file + rename, never through a link); returns the path.
    Refuses a path that is an export directory's artifact (:func:`segdeploy.exportdir.guard_outputs`).
    Raises ArtifactError / UsageError (nothing written)."""
    from segdeploy.exportdir import guard_outputs
    from segdeploy.fsutil import atomic_write_text, ensure_writable_dir

    guard_outputs([("--html", out_path)])
    text = render_html_report(report, image_loader=image_loader, mask_loader=mask_loader, max_side=max_side)
    out = Path(out_path)
    if out.is_dir():
        raise ArtifactError(f"--html {out} is a directory; give a file path such as {out / 'report.html'}")
    ensure_writable_dir(out.parent if str(out.parent) else ".")
    atomic_write_text(out, text)
    return out
