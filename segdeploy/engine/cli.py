"""`segdeploy build EXPORT_DIR`: TensorRT engines for an export directory, or the trtexec commands to build them.

Where TensorRT is importable the engines are built and published with the manifest's ``engines`` entries (exit 0).
Where it is not, the trtexec command(s) for ``--trt-target`` are printed on stdout (and carried in the ``--json``
document), the directory is left untouched, and the command exits 1 with one ``error:`` line naming what is
missing. Options: :func:`segdeploy.engine.cli_options.engine_build_options` (the engine-build group).
Library: :func:`segdeploy.pipeline.build_directory` (the build stage through :func:`segdeploy.pipeline.run_stage`).
"""

from __future__ import annotations

import click

from segdeploy.cli_options import output_options
from segdeploy.engine.cli_options import engine_build_options
from segdeploy.errors import MissingDependencyError, SegdeployError
from segdeploy.result import echo_json, result_doc


@click.command("build")
@click.argument("export_dir", type=click.Path(file_okay=False, path_type=str))
@engine_build_options()
@output_options
def build_command(export_dir, build, as_json, quiet):
    """Build TensorRT engines for EXPORT_DIR (written by `segdeploy export`).

    Without TensorRT on this machine: print the equivalent trtexec command(s) for --trt-target, change
    nothing, and exit 1. Exit codes: 0 built, 1 error (or no TensorRT), 2 usage error.
    """
    from segdeploy.engine.stage import NO_TENSORRT_FIX
    from segdeploy.pipeline import build_directory
    from segdeploy.progress import Progress

    res = None
    try:
        request = build.request()
        res = build_directory(export_dir, request, Progress(not quiet and not as_json))
        if not res.built:
            raise MissingDependencyError(f"{res.reason}, so no engine was built; {NO_TENSORRT_FIX}")
    except SegdeployError as e:
        if build.verbose:
            _print_logs(e.logs or (res.logs if res is not None else {}))
        if as_json:
            stages = {"build": res.summary()} if res is not None else {}
            echo_json(result_doc("build", stages=stages, export_dir=export_dir, error=e))
        elif res is not None and not res.built:
            res.print_summary()
        raise
    if build.verbose:
        _print_logs(res.logs)
    if as_json:
        from segdeploy.exportdir import ExportDir

        files = ExportDir.open(res.export_dir, verify=False).file_table
        echo_json(result_doc("build", stages={"build": res.summary()}, export_dir=res.export_dir, published=True,
                             files=files, notes=res.notes))
        return
    res.print_summary()


def _print_logs(logs: dict[str, str]) -> None:
    for prec, log in logs.items():
        click.echo(f"--- TensorRT log ({prec}) ---\n{log}", err=True)
