"""The precision stage's summary table on the terminal (`segdeploy export --int8/--fp16`, `segdeploy precision`).

Contract: :func:`print_precision_summary` prints a :class:`~segdeploy.precision.stage.PrecisionResult` with
``echo`` (click.echo by default): notes, the calibration line, one row per lowered model and ONNX Runtime level
(mIoU and reference mIoU in points 0-100, drop in points, agreement), a loud
``NOT CHECKED`` line for a lowered model that no validation split checked, the reference-mIoU warning, the INT8 layers kept in float and the budget search, the FP16 nodes kept
in FP32, and the files written. It reads only the result (its ``section`` is this run's part of the manifest's
``precision`` section); nothing here runs or writes anything.
"""

from __future__ import annotations

import click

from segdeploy.vocab import Precision


def _pct(v) -> str:
    return "   n/a" if v is None else f"{100 * v:6.2f}"


def print_precision_summary(res, echo=click.echo) -> None:
    """A table: one row per lowered model and ORT level (mIoU, drop, agreement), then kept-out layers."""
    sec = res.section
    echo("precision")
    for note in sec.get("notes", []):
        echo(f"  note: {note}")
    cal = res.calibration
    if cal is not None:
        echo(f"  calibration   {cal.method.label}, {cal.calib_set.size} images"
             f"{' (cached statistics)' if cal.cache_hit else ''}, {len(cal.ranges)} tensors")
    header = f"  {'model':<8}{'ORT level':<17}{'mIoU pts':>9}{'ref pts':>9}{'drop pts':>10}{'agree %':>9}  file"
    echo(header)
    for kind in (Precision.INT8, Precision.FP16):
        e = sec.get(kind)
        if not e:
            continue
        acc = e.get("accuracy")
        if not acc:
            echo(f"  {kind:<8}{'NOT CHECKED':<17}{'':>9}{'':>9}{'':>10}{'':>9}  {e['file']}")
            continue
        for lv in acc["levels"].values():
            drop = lv["miou_drop_points"]
            echo(f"  {kind:<8}{lv['ort_level']:<17}{_pct(lv['miou']):>9}{_pct(acc['reference']['miou']):>9}"
                 f"{('n/a' if drop is None else f'{drop:.2f}'):>10}{100 * lv['agreement_vs_reference']:>9.2f}  {e['file']}")
        if acc.get("reference_warning"):
            echo(f"  WARNING {kind}: {acc['reference_warning']}")
        if acc.get("levels_disagree"):
            echo(f"  WARNING {kind}: the two ONNX Runtime levels disagree (the gate uses ORT_DISABLE_ALL)")
    i8 = sec.get("int8")
    if i8:
        echo(f"  int8 layers   {i8['quantized_layers']} quantized, {len(i8['excluded_layers'])} in float; rule check {i8['rule_check']}")
        for x in i8["excluded_layers"]:
            echo(f"    float: {x['layer']} ({x['op']}): {x['reason']}")
        b = i8.get("budget")
        if b:
            echo(f"  budget        {b['budget_points']} points: drop {b['initial_drop_points']:.3f} -> {b['final_drop_points']:.3f}"
                 f" on {b['subset_images']} images, {b['evaluations']} evaluations")
            for c in b["kept_out"]:
                share = "" if c["mac_share"] is None else f", {100 * c['mac_share']:.1f}% of int8 MACs"
                echo(f"    kept out {c['layer']}: sensitivity {c['sensitivity_points']:.3f}, drop after {c['drop_after_points']:.3f}{share}")
    f16 = sec.get("fp16")
    if f16:
        echo(f"  fp16 kept FP32 {len(f16['kept_fp32'])} node(s); overflow check: {f16['overflow_check']}")
        for k in f16["kept_fp32"]:
            echo(f"    fp32: {k['node']} ({k['op']}): {k['reason']}")
    for k, p in res.files.items():
        echo(f"  wrote {k:<12}{p}")
    for kind in (Precision.INT8, Precision.FP16):
        e = sec.get(kind)
        if e and e.get("checked") is False:
            echo(f"{kind}: NOT CHECKED \u2014 {e.get('not_checked') or 'no accuracy check ran'}")
