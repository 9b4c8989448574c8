"""`segdeploy export`: options -> :func:`segdeploy.export.export_model` -> summary (or JSON)."""

from __future__ import annotations

import json
import sys

import click

from segdeploy.errors import UsageError
from segdeploy.progress import StepProgress
from segdeploy.precision.cli_options import options_from_cli, precision_options, run_from_cli


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


def parse_model_args(items: tuple[str, ...]) -> dict:
    """``KEY=VALUE`` strings -> kwargs; VALUE is int, float, true/false, none, else the string itself."""
    out: dict = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(f"--model-arg {item!r} must be KEY=VALUE with KEY a Python identifier")
        v: object = val
        low = val.lower()
        if low in ("true", "false"):
            v = low == "true"
        elif low in ("none", "null"):
            v = None
        else:
            for conv in (int, float):
                try:
                    v = conv(val)
                    break
                except ValueError:
                    pass
        out[key.strip()] = v
    return out


@click.command("export")
@click.argument("model_file", required=False, type=click.Path(dir_okay=False, path_type=str))
@click.option("--model", "factory", metavar="PKG.MODULE:FACTORY", help="Importable factory returning an nn.Module (instead of MODEL_FILE).")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Keyword argument for --model's factory (repeatable; VALUE parsed as int/float/bool/None, else string).")
@click.option("--weights", type=click.Path(path_type=str), help="State dict (.pt/.pth, loaded weights-only) or .safetensors for --model.")
@click.option("--trust-pickle", is_flag=True, help="Allow a pickled nn.Module (torch.save(model)); unpickling runs code from the file.")
@click.option("--output", "output_sel", metavar="NAME|INDEX", help="Which model output is the score map (dict key or tuple index).")
@click.option("--out", "out_dir", required=True, type=str, help="Output directory (model.onnx + manifest.json).")
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
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@precision_options
def export_command(model_file, factory, model_args, weights, trust_pickle, output_sel, out_dir, shape, min_shape, max_shape, max_batch,
                   spatial_multiple, opset, exporter, cleanup, no_rewrites, no_trt_plugins, rtol, mean, std, scale, channel_order, resize,
                   class_names, as_json, quiet, precision):
    """Export MODEL_FILE (or --model) to a verified ONNX with dynamic batch/height/width.

    MODEL_FILE: a torch.export program (.pt2), a TorchScript archive, or (with --trust-pickle) a pickled module.
    """
    from segdeploy.export import ExportOptions, export_model
    from segdeploy.spec import Preprocess

    if (model_file is None) == (factory is None):
        raise UsageError("give exactly one of MODEL_FILE or --model PKG.MODULE:FACTORY")
    if opset < 13:
        raise UsageError(f"--opset {opset} is too old; use 13 or newer (default 18)")
    if max_batch < 1:
        raise UsageError("--max-batch must be >= 1")
    if spatial_multiple is not None and spatial_multiple < 1:
        raise UsageError("--spatial-multiple must be >= 1")
    pre = Preprocess(
        mean=_floats(mean, "--mean") or Preprocess().mean,
        std=_floats(std, "--std") or Preprocess().std,
        scale=scale,
        channel_order=channel_order,
        resize=resize,
    )
    opts = ExportOptions(
        shape=shape, min_shape=min_shape, max_shape=max_shape, spatial_multiple=spatial_multiple, max_batch=max_batch,
        opset=opset, exporter=exporter, cleanup=cleanup, rewrites=() if no_rewrites else None, rtol=rtol, tensorrt_plugins=not no_trt_plugins,
        preprocess=pre, class_names=tuple(n.strip() for n in class_names.split(",")) if class_names else (),
    )
    if model_args and factory is None:
        raise UsageError("--model-arg applies only with --model PKG.MODULE:FACTORY")
    res = export_model(None if factory else model_file, out_dir, opts, progress=StepProgress(not quiet),
                       factory=factory, weights=weights, trust_pickle=trust_pickle, output=output_sel,
                       factory_kwargs=parse_model_args(model_args))
    # --int8 / --fp16: calibrate -> lower -> check (no-op otherwise); exit 3 when the budget trips
    if as_json:  # one JSON document for pipelines
        doc = summary_dict(res)
        popts = options_from_cli(**precision)
        if popts is not None:
            from segdeploy.precision.pipeline import lower

            pres = lower(res.manifest_path.parent, res.loaded.module, popts, progress=StepProgress(not quiet))
            doc["precision"] = pres.section
            doc["precision_files"] = {k: str(v) for k, v in pres.files.items()}
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print_summary(res)
        run_from_cli(res, res.loaded, quiet=quiet, **precision)


def summary_dict(res) -> dict:
    m = res.manifest
    return {
        "onnx": str(res.onnx_path),
        "manifest": str(res.manifest_path),
        "exporter": res.exporter,
        "exporter_reason": m["onnx"]["exporter_reason"],
        "attempts": m["onnx"]["exporter_attempts"],
        "rewrites": m["rewrites"],
        "dynamic_axes": m["inputs"][0]["profile"]["dynamic_axes"],
        "static_axes": m["static_axes"],
        "profile": m["inputs"][0]["profile"],
        "num_classes": m["model"]["num_classes"],
        "verification": m["verification"],
        "seconds": round(res.seconds, 2),
    }


def print_summary(res) -> None:
    m = res.manifest
    p = m["inputs"][0]["profile"]
    w = click.echo
    w(f"exported {res.onnx_path} ({m['onnx']['bytes'] / 1e6:.1f} MB, opset {m['onnx']['opset']}) and {res.manifest_path}")
    w(f"  exporter      {res.exporter} ({m['onnx']['exporter_reason']})")
    w(f"  classes       {m['model']['num_classes']}   output rule: {m['model']['output_selection']}")
    w(f"  profile       min {'x'.join(map(str, p['min']))}  opt {'x'.join(map(str, p['opt']))}  max {'x'.join(map(str, p['max']))}"
      f"  (H/W multiple of {p['spatial_multiple']})")
    w(f"  dynamic axes  {', '.join(p['dynamic_axes']) or 'none'}")
    for s in m["static_axes"]:
        w(f"  static axis   {s['axis']}: {s['reason']}")
    w(f"  rewrites      {', '.join(r['rewrite'] + ' @ ' + r['target'] for r in m['rewrites']) or 'none'}")
    if "tensorrt_plugins" in m:
        tp = m["tensorrt_plugins"]
        w(f"  TensorRT      {tp['file']}: {len(tp['nodes'])} plugin node(s) "
          f"({', '.join(sorted({n['plugin'] for n in tp['nodes']}))}), CPU-checked max|err| {tp['cpu_check']['max_abs_err']:.2e}")
    w("  verification  (ONNX Runtime CPU vs PyTorch)")
    w(f"    {'shape':<10}{'NxCxHxW':<18}{'max|err|':>10}{'tol':>10}{'argmax':>9}  result")
    for s in m["verification"]["shapes"]:
        shape = "x".join(map(str, s["shape"]))
        res_txt = "ok" if s["passed"] else f"FAIL: {s['error']}"
        w(f"    {s['label']:<10}{shape:<18}{s['max_abs_err']:>10.2e}{s['tolerance']:>10.2e}{s['argmax_agreement'] * 100:>8.2f}%  {res_txt}")
    w(f"  done in {res.seconds:.1f}s")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(export_command())
