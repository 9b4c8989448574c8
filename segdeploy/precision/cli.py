"""`segdeploy precision EXPORT_DIR MODEL --int8|--fp16 ...`: lower an existing export without re-exporting.

The same stage `segdeploy export MODEL --int8 ...` runs after exporting; this command is for trying another
calibration method, set or budget on a directory that is already exported. ``--calib`` defaults to ./calibration/
(and its val/ split), as on `segdeploy export`. MODEL is the PyTorch reference
(the model given to `segdeploy export`); it must be the model the manifest was made from (its hash is
compared with the manifest's ``source.sha256``), so the accuracy is measured against the right network.
The directory is updated in one transaction (:func:`segdeploy.pipeline.run_stage`): published only when every
check passed. Exit codes: 0 ok, 1 error, 2 usage, 3 the accuracy budget was not met (nothing published).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from segdeploy.cli_options import ModelArgs, PrecisionArgs, model_options, output_options, precision_options, progress_for
from segdeploy.errors import SegdeployError, UsageError
from segdeploy.result import echo_json, result_doc

if TYPE_CHECKING:
    import torch

    from segdeploy.precision.stage import PrecisionOptions
    from segdeploy.progress import Progress


def _parse(export_dir: str, model: ModelArgs, precision: PrecisionArgs,
           progress: Progress) -> tuple[PrecisionOptions, str, tuple[int, int, int, int]]:
    """The options (``--calib`` defaulted to ./calibration/, said), and (cheap, before the model loads) the
    directory's validity and the data folders: returns the options, the manifest's source hash and the opt input
    shape at batch 1."""
    from segdeploy.exportdir import ExportDir
    from segdeploy.precision.stage import check_labels, check_preconditions, check_validation_fits

    model.validate()
    popts = precision.with_default_calib(progress).parse()
    if popts is None:
        raise UsageError("nothing to do: give --int8 and/or --fp16")
    ed = ExportDir.open(export_dir)  # validates the manifest and every file's hash before any work
    check_preconditions(popts)
    check_labels(popts, ed.num_classes)
    check_validation_fits(popts, ed.profile, ed.preprocess,
                          "re-export with a larger --max-shape (segdeploy export), or pass --val with smaller images")
    return popts, ed.source_sha256, (1,) + tuple(ed.profile.opt[1:])


def _reference(export_dir: str, model: ModelArgs, source_sha256: str,
               shape: tuple[int, int, int, int]) -> torch.nn.Module:
    """The PyTorch reference: the model the directory was exported from, returning the logits the export chose."""
    lm = model.load()
    if lm.source_sha256 != source_sha256:
        raise UsageError(f"{model.source} is not the model {export_dir} was exported from (its hash differs from the "
                         "manifest's source.sha256); pass the same model, or re-export")
    return lm.select_output_at(shape)


@click.command("precision")
@click.argument("export_dir", type=click.Path(file_okay=False, path_type=str))
@model_options()
@precision_options
@output_options
def precision_command(export_dir, model, precision, as_json, quiet):
    """Calibrate, lower to INT8 Q/DQ and/or FP16, and check accuracy on the CPU, for EXPORT_DIR."""
    from segdeploy.pipeline import run_stage
    from segdeploy.precision import stage
    from segdeploy.precision.terminal import print_precision_summary

    progress = progress_for(quiet)
    try:
        popts, source_sha256, shape = _parse(export_dir, model, precision, progress)
        reference = _reference(export_dir, model, source_sha256, shape)
        res, published = run_stage(export_dir, stage.run, popts, progress, command="precision",
                                   reference=reference, checked=True)
    except SegdeployError as e:
        if as_json:
            echo_json(result_doc("precision", stages=e.stages, export_dir=export_dir, error=e))
        raise
    if as_json:
        echo_json(result_doc("precision", stages={"precision": res.summary()}, export_dir=export_dir, published=True,
                             files=published.file_table, notes=res.notes))
        return
    print_precision_summary(res)
    for n in res.notes:
        click.echo(f"note: {n}")
