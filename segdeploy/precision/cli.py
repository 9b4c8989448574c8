"""`segdeploy precision EXPORT_DIR MODEL --int8|--fp16 ...`: lower an existing export without re-exporting.

The same stage `segdeploy export MODEL --int8 ...` runs after exporting; this command is for trying another
calibration method, set or budget on a directory that is already exported. MODEL is the PyTorch reference
(the model given to `segdeploy export`); it must be the model the manifest was made from (its hash is
compared with the manifest's ``source.sha256``), so the accuracy is measured against the right network.
The directory is updated in one transaction: published only when every check passed.
Exit codes: 0 ok, 1 error, 2 usage, 3 the accuracy budget was not met (nothing published).
"""

from __future__ import annotations

import click

from segdeploy.cli_options import model_options, output_options
from segdeploy.errors import SegdeployError, UsageError
from segdeploy.precision.cli_options import options_from_cli, precision_options, print_precision_summary
from segdeploy.progress import Progress
from segdeploy.result import echo_json, result_doc


@click.command("precision")
@click.argument("export_dir", type=click.Path(file_okay=False, path_type=str))
@model_options()
@precision_options
@output_options
def precision_command(export_dir, model, precision, as_json, quiet):
    """Calibrate, lower to INT8 Q/DQ and/or FP16, and check accuracy on the CPU, for EXPORT_DIR."""
    from segdeploy.exportdir import ExportDir
    from segdeploy.precision.stage import check_labels, check_preconditions, lower

    try:
        model.validate()
        popts = options_from_cli(**precision)
        if popts is None:
            raise UsageError("nothing to do: give --int8 and/or --fp16")
        ed = ExportDir.open(export_dir)  # validates the manifest and every file's hash before any work
        check_preconditions(popts)
        check_labels(popts, ed.num_classes)
        lm = model.load()
        if lm.source_sha256 != ed.source_sha256:
            raise UsageError(f"{model.source} is not the model {export_dir} was exported from (its hash differs from the "
                             "manifest's source.sha256); pass the same model, or re-export")
        lm.select_output_at((1,) + tuple(ed.profile.opt[1:]))  # the reference returns the logits the export chose
        res = lower(export_dir, lm.module, popts, progress=Progress(not quiet), checked=True)
    except SegdeployError as e:
        if as_json:
            echo_json(result_doc("precision", stages=e.stages, export_dir=export_dir, error=e))
        raise
    if as_json:
        published = ExportDir.open(export_dir, verify=False)
        echo_json(result_doc("precision", stages={"precision": res.summary()}, export_dir=export_dir, published=True,
                             files=published.manifest["files"], notes=res.notes))
        return
    print_precision_summary(res)
    for n in res.notes:
        click.echo(f"note: {n}")
