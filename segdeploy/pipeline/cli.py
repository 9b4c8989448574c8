"""`segdeploy export`: option groups -> :class:`~segdeploy.pipeline.PipelineOptions` ->
:func:`segdeploy.pipeline.run_pipeline` -> summary (or the JSON result document).

The summary reads the published directory through the manifest's owner (:class:`~segdeploy.manifest.ManifestView`
accessors), never the document's keys.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import click

from segdeploy.cli_options import e2e_options, model_options, output_options, precision_options, progress_for
from segdeploy.engine.cli_options import engine_build_options
from segdeploy.errors import SegdeployError, UsageError
from segdeploy.result import echo_json, result_doc
from segdeploy.vocab import Precision

if TYPE_CHECKING:
    from segdeploy.export.stage import ExportOptions, ExportResult
    from segdeploy.pipeline import PipelineResult


def _floats(text: str | None, option: str, n: int = 3) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        vals = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise UsageError(f"{option} {text!r} must be {n} comma-separated numbers, e.g. 0.485,0.456,0.406") from None
    if len(vals) != n:
        raise UsageError(f"{option} needs {n} comma-separated numbers, got {len(vals)}")
    return vals


def _export_options(shape, min_shape, max_shape, max_batch, spatial_multiple, opset, exporter, cleanup, no_rewrites,
                    no_trt_plugins, rtol, mean, std, scale, channel_order, resize, class_names) -> ExportOptions:
    """The export group's values -> :class:`~segdeploy.export.ExportOptions` (validated; UsageError)."""
    from segdeploy.export import ExportOptions
    from segdeploy.spec import Preprocess

    pre = Preprocess(mean=_floats(mean, "--mean") or Preprocess().mean, std=_floats(std, "--std") or Preprocess().std,
                     scale=scale, channel_order=channel_order, resize=resize)
    names = tuple(n.strip() for n in class_names.split(",")) if class_names else ()
    return ExportOptions(shape=shape, min_shape=min_shape, max_shape=max_shape, spatial_multiple=spatial_multiple,
                         max_batch=max_batch, opset=opset, exporter=exporter, cleanup=cleanup,
                         rewrites=() if no_rewrites else None, rtol=rtol, tensorrt_plugins=not no_trt_plugins,
                         preprocess=pre, class_names=names)


@click.command("export")
@model_options()
@click.option("--out", "out_dir", type=str,
              help="Export directory (owned by segdeploy; published atomically). Default: <stem>.segdeploy/ beside MODEL_FILE.")
@click.option("--shape", help="Optimal input shape NxCxHxW or HxW (default: the .pt2's example, else 1x3x512x512).")
@click.option("--min-shape", help="Smallest input shape NxCxHxW (default: batch 1, half of --shape H/W).")
@click.option("--max-shape", help="Largest input shape NxCxHxW (default: batch --max-batch, twice --shape H/W).")
@click.option("--max-batch", type=int, default=8, show_default=True, help="Default max batch when --max-shape is not given.")
@click.option("--spatial-multiple", type=int, help="H/W must be multiples of this (default: detected).")
@click.option("--opset", type=int, default=18, show_default=True)
@click.option("--exporter", type=click.Choice(["auto", "torchscript", "dynamo"]), default="auto", show_default=True)
@click.option("--cleanup", type=click.Choice(["onnxslim", "ort-basic", "none"]), default="onnxslim", show_default=True)
@click.option("--no-rewrites", is_flag=True, help="Apply no export-friendly rewrites.")
@click.option("--no-trt-plugins", is_flag=True, help="Do not write model.trt.onnx (plugin nodes for ops TensorRT cannot parse).")
@click.option("--rtol", type=float, default=1e-4, show_default=True, help="Verification tolerance relative to max |output|.")
@click.option("--mean", help="Preprocessing mean per channel (default ImageNet 0.485,0.456,0.406).")
@click.option("--std", help="Preprocessing std per channel (default ImageNet 0.229,0.224,0.225).")
@click.option("--scale", type=float, default=1 / 255, show_default=True, help="Pixel scale before mean/std.")
@click.option("--channel-order", type=click.Choice(["RGB", "BGR"]), default="RGB", show_default=True)
@click.option("--resize", type=click.Choice(["pad", "resize"]), default="pad", show_default=True, help="How datasets reach an accepted size.")
@click.option("--class-names", help="Comma-separated class names (recorded in the manifest).")
@precision_options
@e2e_options
@click.option("--engine", is_flag=True, help="Also build TensorRT engines (where TensorRT is installed; else print the trtexec commands).")
@engine_build_options(exclude=("--verbose", "--trt-target"), help_prefix="With --engine: ")
@output_options
def export_command(model, out_dir, precision, e2e, engine, build, as_json, quiet, **export):
    """Export MODEL_FILE (or --model) to a verified ONNX with dynamic batch/height/width.

    MODEL_FILE: a torch.export program (.pt2), a TorchScript archive, or (with --trust-pickle) a pickled module.
    With --int8/--fp16 the precision stage runs too, with --end-to-end the end-to-end variants (uint8 frames in,
    class map out) of every ONNX precision, and with --engine the TensorRT build; the directory is
    published only when every requested stage passed.
    """
    from segdeploy.pipeline import PipelineOptions, run_pipeline

    progress = progress_for(quiet)
    try:
        model.validate()
        out_dir = _out_dir(out_dir, model, progress)
        precision = precision.with_default_calib(progress)
        # one --trt-target (the precision group's): the calibration cache header and the printed trtexec commands
        if precision.trt_target is not None and not (engine or precision.int8 or precision.fp16):
            raise UsageError("--trt-target given without --int8/--fp16 or --engine; add the stage it is for")
        if engine:
            build = dataclasses.replace(build, trt_target=precision.trt_target)
        popts = precision.parse()
        e2e_opts = e2e.parse(frames_from=popts.validation_dir()[0] if popts else None, rtol=export["rtol"])
        options = PipelineOptions(_export_options(**export), popts, build.request_if(engine, "--engine"), e2e_opts)
        res = run_pipeline(model.source, out_dir, options, progress=progress, load_kwargs=model.load_kwargs())
    except SegdeployError as e:
        if as_json:
            echo_json(result_doc("export", stages=e.stages, export_dir=out_dir, error=e))
        elif e.engines:
            _print_engine_evidence(e.engines)
        elif e.stages.get("precision"):
            _print_gate_evidence(e)
        raise
    if as_json:
        echo_json(result_doc("export", stages=res.stages(), export_dir=res.export_dir.path, published=True,
                             files=res.export_dir.file_table, notes=res.notes))
        return
    _print_result(res)
    click.echo(f"done in {progress.elapsed:.1f}s")  # the progress lines' clock: one clock


def _out_dir(out_dir: str | None, model, progress) -> str:
    """``--out``, else ``<stem>.segdeploy/`` beside MODEL_FILE (said once); a factory (--model) must name it."""
    from segdeploy.pipeline import default_out_dir

    if out_dir is not None:
        return out_dir
    if model.file is None:
        raise UsageError("--model PKG.MODULE:FACTORY has no file to put the export beside; pass --out DIR")
    out = str(default_out_dir(model.file))
    progress.step(f"output: {out} (default: beside the model; pass --out to choose)")
    return out


def _print_result(res: PipelineResult) -> None:
    from segdeploy.precision.terminal import print_precision_summary

    print_summary(res.export)
    if res.precision is not None:
        print_precision_summary(res.precision)
    if res.end_to_end is not None:
        from segdeploy.export.e2e_terminal import print_e2e_summary

        print_e2e_summary(res.end_to_end)
    if res.build is not None:
        res.build.print_summary()
    shown = set(res.precision.section.get("notes", [])) if res.precision is not None else set()
    for n in res.notes:
        if n not in shown:  # the precision table already printed its notes
            click.echo(f"note: {n}")


def _print_engine_evidence(engines) -> None:
    """The engines' parity records when the engine accuracy gate tripped (segdeploy.engine.verify)."""
    for e in engines:
        p = e.get("parity") or {}
        if p.get("checked"):
            click.echo(f"{e['file']}: mIoU drop {p['miou_drop_points']} points vs PyTorch on {p['images']} images "
                       f"({'ok' if p['passed'] else 'over budget'}; nothing was published)", err=True)


def _print_gate_evidence(e) -> None:
    kept = e.kept_out
    if kept:
        click.echo("layers kept in float by the budget search (best attempt):", err=True)
        for c in kept:
            click.echo(f"  {c.name:<48} sensitivity {c.sensitivity:7.3f}  drop after {c.drop_after:7.3f}", err=True)
    sec = e.stages["precision"].get("precision") or {}
    for kind in (Precision.INT8, Precision.FP16):
        acc = (sec.get(kind) or {}).get("accuracy")
        if acc:
            click.echo(f"{kind}: mIoU drop {acc['miou_drop_points']} points at {acc['gated_level']} on {acc['images']} "
                       "images (nothing was published)", err=True)


def print_summary(res: ExportResult) -> None:
    """The export's summary: file, exporter, classes, profile, axes, rewrites, plugins, the verification table."""
    v, w = res.view, click.echo
    onnx_info, p = v.onnx_info, v.profile
    w(f"exported {res.onnx_path} ({onnx_info['bytes'] / 1e6:.1f} MB, opset {onnx_info['opset']}) and {res.manifest_path}")
    w(f"  exporter      {res.exporter} ({onnx_info['exporter_reason']})")
    w(f"  classes       {v.num_classes}   output rule: {v.model_info['output_selection']}")
    w(f"  profile       min {'x'.join(map(str, p.min))}  opt {'x'.join(map(str, p.opt))}  max {'x'.join(map(str, p.max))}"
      f"  (H/W multiple of {p.spatial_multiple}{_profile_from(v.profile_source)})")
    w(f"  dynamic axes  {', '.join(p.dynamic_axes) or 'none'}")
    for s in v.static_axes:
        w(f"  static axis   {s['axis']}: {s['reason']}")
    for s in v.profile_narrowed:
        w(f"  narrowed      {s['bound']} {'x'.join(map(str, s['from']))} -> {'x'.join(map(str, s['to']))}: {s['reason']}")
    w(f"  rewrites      {', '.join(r['rewrite'] + ' @ ' + r['target'] for r in v.rewrites) or 'none'}")
    tp = v.plugins_section
    if tp is not None:
        w(f"  TensorRT      {tp['file']}: {len(tp['nodes'])} plugin node(s) "
          f"({', '.join(sorted({n['plugin'] for n in tp['nodes']}))}), CPU-checked max|err| {tp['cpu_check']['max_abs_err']:.2e}")
    _print_verification(v.verification)


def _profile_from(source: dict) -> str:
    """", opt from ..." for the profile line, from the manifest's profile_source."""
    how = source.get("opt_from")
    if how == "data":
        return f"; opt from the data: most common of {source['images']} images"
    return f"; opt from {how}" if how else ""


def _print_verification(verification: dict) -> None:
    w = click.echo
    w("  verification  (ONNX Runtime CPU vs PyTorch)")
    if verification.get("corner_verified") is False:
        w(f"    plan: {verification['plan']}")
    w(f"    {'shape':<10}{'NxCxHxW':<18}{'max|err|':>10}{'tol':>10}{'argmax':>9}  result")
    for s in verification["shapes"]:
        shape = "x".join(map(str, s["shape"]))
        res_txt = "ok" if s["passed"] else f"FAIL: {s['error']}"
        w(f"    {s['label']:<10}{shape:<18}{s['max_abs_err']:>10.2e}{s['tolerance']:>10.2e}{s['argmax_agreement'] * 100:>8.2f}%  {res_txt}")
