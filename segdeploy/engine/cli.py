"""`segdeploy build EXPORT_DIR`: TensorRT engines for an export directory, or the trtexec commands to build them.

Where TensorRT is importable the engines are built and published with the manifest's ``engines`` entries (exit 0).
Where it is not, the trtexec command(s) for ``--trt-target`` are printed on stdout (and carried in the ``--json``
document), the directory is left untouched, and the command exits 1 with one ``error:`` line naming what is
missing. Library: :func:`segdeploy.engine.stage.build_directory`.
"""

from __future__ import annotations

import click

from segdeploy.cli_options import output_options
from segdeploy.errors import MissingDependencyError, SegdeployError
from segdeploy.result import echo_json, result_doc


@click.command("build")
@click.argument("export_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--precision", default=None, metavar="LIST",
              help="Engines to build, comma-separated: fp32, fp16, int8, int8-implicit "
                   "(default: fp32 + every fp16/int8 ONNX the directory holds).")
@click.option("--int8-implicit", is_flag=True,
              help="Also build int8-implicit: model.onnx + model.calib.cache (TensorRT 8.6/10.x; removed in 11).")
@click.option("--trt-target", default=None, metavar="V",
              help="Without TensorRT here: the TensorRT version of the printed trtexec commands "
                   "(8.6, 10.3, 10.x, 11.x, or e.g. 10.13.3; default 11.x).")
@click.option("--plugins", "plugin_library", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="segdeploy's TensorRT plugin library (default: `segdeploy plugins build` output, when the model needs it).")
@click.option("--workspace", type=int, default=None, metavar="MiB", help="Builder workspace limit in MiB.")
@click.option("--opt-level", type=int, default=None, metavar="N", help="Builder optimization level 0-5 (TensorRT default 3).")
@click.option("--dla-core", type=int, default=None, metavar="N", help="Build for DLA core N (Jetson Orin; fp16/int8 only).")
@click.option("--no-gpu-fallback", is_flag=True, help="With --dla-core: fail instead of running DLA-incapable layers on the GPU.")
@click.option("--hardware-compat", default=None, type=click.Choice(["none", "ampere+", "same-cc"]),
              help="Hardware compatibility level of the engine.")
@click.option("--version-compatible", is_flag=True,
              help="Version-compatible engine (loads on newer TensorRT; carries code: load only trusted plans).")
@click.option("--rewrite-calib-header", is_flag=True,
              help="int8-implicit: accept a calibration cache written for another TensorRT version.")
@click.option("--timing-cache", default=None, type=click.Path(file_okay=False, path_type=str),
              help="Timing-cache directory (default: segdeploy's cache directory).")
@click.option("--no-timing-cache", is_flag=True, help="Build without a timing cache.")
@click.option("--verbose", is_flag=True, help="Keep TensorRT's full log (printed on stderr).")
@output_options
def build_command(export_dir, precision, int8_implicit, trt_target, plugin_library, workspace, opt_level, dla_core,
                  no_gpu_fallback, hardware_compat, version_compatible, rewrite_calib_header, timing_cache,
                  no_timing_cache, verbose, as_json, quiet):
    """Build TensorRT engines for EXPORT_DIR (written by `segdeploy export`).

    Without TensorRT on this machine: print the equivalent trtexec command(s) for --trt-target, change
    nothing, and exit 1. Exit codes: 0 built, 1 error (or no TensorRT), 2 usage error.
    """
    from segdeploy.engine.request import BuildRequest
    from segdeploy.engine.stage import NO_TENSORRT_FIX, build_directory
    from segdeploy.progress import Progress

    res = None
    try:
        request = BuildRequest.from_cli(
            precision=precision, int8_implicit=int8_implicit, workspace=workspace, opt_level=opt_level,
            dla_core=dla_core, no_gpu_fallback=no_gpu_fallback, hardware_compat=hardware_compat,
            version_compatible=version_compatible, rewrite_calib_header=rewrite_calib_header,
            timing_cache=timing_cache, no_timing_cache=no_timing_cache, plugin_library=plugin_library,
            trt_target=trt_target, verbose=verbose)
        res = build_directory(export_dir, request, progress=Progress(not quiet and not as_json))
        if not res.built:
            raise MissingDependencyError(f"{res.reason}, so no engine was built; {NO_TENSORRT_FIX}")
    except SegdeployError as e:
        logs = e.logs or (res.logs if res is not None else {})
        if verbose:
            for prec, log in logs.items():
                click.echo(f"--- TensorRT log ({prec}) ---\n{log}", err=True)
        if as_json:
            stages = {"build": res.summary()} if res is not None else {}
            echo_json(result_doc("build", stages=stages, export_dir=export_dir, error=e))
        elif res is not None and not res.built:
            res.print_summary()
        raise
    if verbose:
        for prec, log in res.logs.items():
            click.echo(f"--- TensorRT log ({prec}) ---\n{log}", err=True)
    if as_json:
        from segdeploy.exportdir import ExportDir

        files = ExportDir.open(res.export_dir, verify=False).manifest["files"]
        echo_json(result_doc("build", stages={"build": res.summary()}, export_dir=res.export_dir, published=True,
                             files=files, notes=res.notes))
        return
    res.print_summary()
