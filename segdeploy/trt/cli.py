"""``segdeploy inspect PATH [--json]``: what an export directory, ONNX model, PyTorch file or TensorRT engine is.

The command only parses and prints; :mod:`segdeploy.inspect` decides what PATH is and reads it (nothing is
unpickled, executed or waited on). Exit 0 with the report; exit 1 with one ``error:`` line when PATH is missing,
a link loop, a FIFO or device, a directory that is not an export directory, a file of another kind, or truncated.
With ``--json`` the report is ``stages.inspect`` of the :mod:`segdeploy.result` document (on failure, what the file
is when that could be said).
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("inspect")
@click.argument("path", metavar="PATH", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the segdeploy.result document (the report is stages.inspect).")
def inspect_command(path: Path, as_json: bool) -> None:
    """Show what PATH is, without running it: an export directory (model, profile, precisions, engines, files and
    whether they are intact), an ONNX model (inputs/outputs and dynamic axes, opset, ops, Q/DQ, plugin nodes,
    external data), a .pt/.pt2/TorchScript file (format, safe to load or not, example input, weights) or a
    TensorRT engine (the TensorRT that built it, its manifest entry; no TensorRT needed).

    Exits 1 with one line when PATH is none of these (it says what the file is).
    """
    from segdeploy.inspect import NotInspectable, inspect_path, render_text
    from segdeploy.result import echo_json, result_doc

    try:
        report = inspect_path(path)
    except NotInspectable as e:
        if as_json:
            echo_json(result_doc("inspect", stages={"inspect": e.description}, error=e))
        raise
    if as_json:
        echo_json(result_doc("inspect", stages={"inspect": report}))
    else:
        click.echo(render_text(report))
