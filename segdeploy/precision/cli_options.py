"""The precision option group (shared by `segdeploy export` and `segdeploy precision`) and its summary table.

``@precision_options`` adds the options below and passes them to the command as one dict ``precision``;
:func:`options_from_cli` turns it into :class:`~segdeploy.precision.stage.PrecisionOptions` (or None when
neither --int8 nor --fp16 was given). The stage itself runs through :mod:`segdeploy.pipeline` (export) or
:func:`segdeploy.precision.stage.lower` (precision); :func:`print_precision_summary` prints its result.

Options (all validated before the export starts, so a typo fails fast with exit 2):
  --int8 / --fp16            lower to INT8 Q/DQ and/or strongly-typed FP16 ONNX (both may be given)
  --calib DIR                calibration images (folder or list file); required for --int8, used by --fp16
                             to keep ops whose activations exceed the FP16 range in FP32
  --calib-size N             sample N images reproducibly (--seed); default all
  --calib-method M           max | percentile | entropy (default, TensorRT's KL search) | mse
  --percentile P             for --calib-method percentile (default 99.99)
  --val DIR                  validation split: DIR/images (+ DIR/masks); default: when --calib is
                             calibration/<set>/calib, the sibling calibration/<set>/val
  --max-miou-drop X          accuracy budget in mIoU points: INT8 keeps the most sensitive layers in float
                             until the drop is within X; exit 3 when it cannot (FP16: gate only)
  --exclude-layer NAME       keep this node in float (repeatable)
  --budget-images N          validation images the sensitivity search starts with (default 32; escalated
                             automatically when its choice misses the budget on the whole split)
  --trt-version V            TensorRT version written into the calibration cache header (default 10.3;
                             8.6 for JetPack 6 / TensorRT 8.6)
"""

from __future__ import annotations

import functools
from typing import Any

import click

from segdeploy.errors import UsageError
from segdeploy.vocab import DEFAULT_CALIB_METHOD, DEFAULT_PERCENTILE, CalibMethod
from segdeploy.trt.versions import DEFAULT_CALIB_CACHE_VERSION

PARAM_NAMES = (
    "int8", "fp16", "calib", "calib_size", "calib_method", "percentile", "seed", "val", "max_miou_drop",
    "exclude_layer", "budget_images", "trt_version",
)

_OPTIONS = [
    click.option("--int8", is_flag=True, help="Also write model.int8.onnx (explicit Q/DQ, TensorRT rules)."),
    click.option("--fp16", is_flag=True, help="Also write model.fp16.onnx (strongly typed, IO float32)."),
    click.option("--calib", type=click.Path(exists=True, path_type=str), help="Calibration images: folder or list file."),
    click.option("--calib-size", type=int, help="Sample this many calibration images (default: all)."),
    click.option("--calib-method", type=click.Choice(CalibMethod.values()), default=DEFAULT_CALIB_METHOD.value, show_default=True),
    click.option("--percentile", type=float, default=DEFAULT_PERCENTILE, show_default=True, help="For --calib-method percentile."),
    click.option("--seed", type=int, default=0, show_default=True, help="Calibration sampling seed."),
    click.option("--val", type=click.Path(exists=True, file_okay=False, path_type=str),
                 help="Validation split DIR/images + DIR/masks (default: calibration/<set>/val beside --calib)."),
    click.option("--max-miou-drop", type=float, help="mIoU budget in points; INT8 falls back layers to meet it, else exit 3."),
    click.option("--exclude-layer", multiple=True, help="Node name kept in float (repeatable)."),
    click.option("--budget-images", type=int, default=32, show_default=True, help="Validation images the budget search starts with (escalated automatically)."),
    click.option("--trt-version", default=DEFAULT_CALIB_CACHE_VERSION, show_default=True, help="TensorRT version of the calibration cache header."),
]


def options_from_cli(**opts: Any):
    """Build :class:`~segdeploy.precision.stage.PrecisionOptions` from the CLI values, or None when
    neither --int8 nor --fp16 was given (then every other precision option must be unset)."""
    from segdeploy.precision.stage import PrecisionOptions

    if not (opts.get("int8") or opts.get("fp16")):
        stray = [n for n in ("calib", "calib_size", "val", "max_miou_drop") if opts.get(n) is not None]
        if stray or opts.get("exclude_layer"):
            names = ", ".join("--" + n.replace("_", "-") for n in stray or ["exclude_layer"])
            raise UsageError(f"{names} given without --int8 or --fp16; add --int8 and/or --fp16")
        return None
    return PrecisionOptions(
        int8=bool(opts.get("int8")), fp16=bool(opts.get("fp16")), calib=opts.get("calib"),
        calib_size=opts.get("calib_size"), calib_method=opts.get("calib_method") or DEFAULT_CALIB_METHOD,
        percentile=opts.get("percentile", DEFAULT_PERCENTILE), seed=opts.get("seed", 0) or 0, val=opts.get("val"),
        max_miou_drop=opts.get("max_miou_drop"), trt_version=opts.get("trt_version") or DEFAULT_CALIB_CACHE_VERSION,
        exclude=tuple(opts.get("exclude_layer") or ()), budget_images=opts.get("budget_images") or 32,
    )


def precision_options(f):
    """Decorator: add the precision options to a click command; the function receives them as one dict
    keyword ``precision``; the body validates it with :func:`options_from_cli` before any work."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        precision = {n: kwargs.pop(n) for n in PARAM_NAMES if n in kwargs}
        return f(*args, precision=precision, **kwargs)

    for opt in reversed(_OPTIONS):
        wrapper = opt(wrapper)
    return wrapper


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
    header = f"  {'model':<8}{'ORT level':<17}{'mIoU':>7}{'ref':>8}{'drop pts':>10}{'agree %':>9}  file"
    echo(header)
    for kind in ("int8", "fp16"):
        e = sec.get(kind)
        if not e:
            continue
        acc = e.get("accuracy")
        if not acc:
            echo(f"  {kind:<8}{'(not checked)':<17}{'':>7}{'':>8}{'':>10}{'':>9}  {e['file']}")
            continue
        for lv in acc["levels"].values():
            drop = lv["miou_drop_points"]
            echo(f"  {kind:<8}{lv['ort_level']:<17}{_pct(lv['miou']):>7}{_pct(acc['reference']['miou']):>8}"
                 f"{('n/a' if drop is None else f'{drop:.2f}'):>10}{100 * lv['agreement_vs_reference']:>9.2f}  {e['file']}")
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
