"""`segdeploy bundle EXPORT_DIR --out DIR`: the on-device bundle (see :mod:`segdeploy.bundle.stage`), with
``--deepstream`` also its DeepStream files; ``--target triton``: a Triton model repository instead."""

from __future__ import annotations

import click

from segdeploy.cli_options import output_options
from segdeploy.errors import SegdeployError
from segdeploy.progress import Progress
from segdeploy.result import echo_json, result_doc
from segdeploy.trt.cli_options import TARGET_HELP, trt_target_option


@click.command("bundle")
@click.argument("export_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--out", "out_dir", required=True, help="Bundle directory (published atomically; <out>.tar.gz beside it).")
@click.option("--target", type=click.Choice(["orin", "thor", "x86", "triton"]), default="orin", show_default=True,
              help="Device the bundle is built on (CUDA architecture, TensorRT lines); triton: a Triton Inference "
                   "Server model repository instead (onnxruntime model + a tensorrt_plan model built on the server).")
@trt_target_option(f"TensorRT of the README's commands and the calibration cache's header: {TARGET_HELP} "
                   "(when the device can have it; thor: JetPack 7.1's 10.13). build.sh detects the device's anyway.",
                   legacy_alias=True)
@click.option("--precision", default=None, help="Engines to build on the device: comma list of fp32, fp16, int8, "
                                                "int8-implicit (default: every ONNX variant the export holds).")
@click.option("--samples", default=None, type=click.Path(file_okay=False, path_type=str),
              help="Sample images for the smoke test (default: the validation images of the precision stage).")
@click.option("--num-samples", type=int, default=4, show_default=True, help="How many sample images to bundle.")
@click.option("--no-archive", is_flag=True, help="Do not write <out>.tar.gz.")
@click.option("--version-compatible", is_flag=True,
              help="build.sh builds version-compatible engines (they load on a newer TensorRT after a JetPack upgrade; "
                   "they carry host code, so its smoke test runs segdeploy_infer with --trust-host-code).")
@click.option("--deepstream", is_flag=True,
              help="Also write deepstream/: an nvinfer configuration (config_infer_primary_segdeploy.txt), the "
                   "DeepStream variant of the model (per-channel std folded in, softmax) and labels.txt.")
@output_options
def bundle_command(export_dir, out_dir, target, trt_target, precision, samples, num_samples, no_archive,
                   version_compatible, deepstream, as_json, quiet):
    """Bundle EXPORT_DIR for building and running its engine on a Jetson (or any TensorRT host)."""
    from segdeploy.bundle.stage import BundleOptions, make_bundle

    try:
        opts = BundleOptions(target=target, trt_target=trt_target,
                             precisions=tuple(p.strip() for p in precision.split(",")) if precision else None,
                             samples=samples, num_samples=num_samples, archive=not no_archive,
                             version_compatible=version_compatible, deepstream=deepstream)
        res = make_bundle(export_dir, out_dir, opts, progress=Progress(not quiet and not as_json))
    except SegdeployError as e:
        if as_json:
            echo_json(result_doc("bundle", error=e))
        raise
    if as_json:
        echo_json(result_doc("bundle", stages={"bundle": res.summary()}, notes=res.notes))
        return
    s = res.summary()
    if "triton" in s:
        _print_triton(s)
        return
    click.echo(f"bundle {s['bundle']} for {s['target']['label']} ({', '.join(s['precisions'])}; {s['files']} files, "
               f"{s['samples']} sample images)")
    if s["archive"]:
        click.echo(f"  archive   {s['archive']}")
    click.echo(f"  smoke     {', '.join(f'{p} >= {v}%' for p, v in s['thresholds'].items())} pixel agreement")
    if s["deepstream"]:
        _print_deepstream(s["deepstream"])
    click.echo("  on the device: tar xzf the archive, cd into it, ./build.sh")
    for n in res.notes:
        click.echo(f"note: {n}")


def _print_deepstream(ds: dict) -> None:
    chk = ds["check"]
    click.echo(f"  deepstream {ds['directory']}/{ds['config']} ({ds['precision']}, {ds['onnx']}; {ds['releases']})")
    click.echo(f"             nvinfer formula + variant vs preprocessing + {ds['source_onnx']}: max |diff| "
               f"{chk['max_abs_diff']:.2e}, class agreement {100 * chk['class_agreement']:.2f}%")


def _print_triton(s: dict) -> None:
    t = s["triton"]
    click.echo(f"Triton model repository {s['bundle']} ({s['files']} files)")
    for name, served in t["models"].items():
        kind = served.get("backend") or served.get("platform")
        click.echo(f"  {name:<24} {kind:<14} {served['onnx']}{'  (end-to-end)' if served['end_to_end'] else ''}")
    from segdeploy.bundle.triton import BUILD_SCRIPT

    def tensors(specs: list) -> str:
        return ", ".join(f"{v['name']} {v['data_type']} {list(v['dims'])}" for v in specs)

    click.echo(f"  inputs   {tensors(t['inputs'])}")
    click.echo(f"  outputs  {tensors(t['outputs'])}")
    click.echo(f"  max_batch_size {t['max_batch_size']}; the plan: run {BUILD_SCRIPT} in the Triton container")
    if s["archive"]:
        click.echo(f"  archive  {s['archive']}")
    for n in s["notes"]:
        click.echo(f"note: {n}")
