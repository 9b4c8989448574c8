"""`segdeploy precision EXPORT_DIR MODEL --int8|--fp16|--end-to-end ...`: lower an existing export without re-exporting.

The same stage `segdeploy export MODEL --int8 ...` runs after exporting; this command is for trying another
calibration method, set or budget on a directory that is already exported. ``--calib`` defaults to ./calibration/
(and its val/ split), as on `segdeploy export`. MODEL is the PyTorch reference
(the model given to `segdeploy export`); it must be the model the manifest was made from (its hash is
compared with the manifest's ``source.sha256``), so the accuracy is measured against the right network.
With ``--end-to-end`` the end-to-end variants of every ONNX precision the directory then holds are built and
verified after the precision stage, in the same transaction; alone, MODEL is optional (without it the variants are
verified against their source ONNX only, and the result says PyTorch was not compared).
The directory is updated in one transaction (:func:`segdeploy.pipeline.run_stage`): published only when every
check passed. Exit codes: 0 ok, 1 error, 2 usage, 3 the accuracy budget was not met (nothing published).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from segdeploy.cli_options import (
    E2EArgs,
    ModelArgs,
    PrecisionArgs,
    e2e_options,
    model_options,
    output_options,
    precision_options,
    progress_for,
)
from segdeploy.errors import SegdeployError, UsageError
from segdeploy.result import echo_json, result_doc

if TYPE_CHECKING:
    import torch

    from segdeploy.export.e2e_stage import E2EOptions, E2EResult
    from segdeploy.precision.stage import PrecisionOptions, PrecisionResult
    from segdeploy.progress import Progress


@dataclass
class _Results:
    """The precision and end-to-end stages run one after the other in one transaction."""

    precision: PrecisionResult | None = None
    end_to_end: E2EResult | None = None
    notes: list[str] = field(default_factory=list)

    def stages(self) -> dict[str, Any]:
        out = {} if self.precision is None else {"precision": self.precision.summary()}
        return out if self.end_to_end is None else {**out, "end_to_end": self.end_to_end.summary()}


def _run(txn, options: tuple[PrecisionOptions | None, E2EOptions | None], progress, *, reference) -> _Results:
    """The stage function :func:`segdeploy.pipeline.run_stage` runs: precision, then the end-to-end variants of every
    ONNX precision the transaction then holds."""
    from segdeploy.export import e2e_stage
    from segdeploy.precision import stage

    popts, e2e_opts = options
    res = _Results()
    if popts is not None:
        res.precision = stage.run(txn, popts, progress, reference=reference, checked=True)
        res.notes = res.precision.notes
    if e2e_opts is not None:
        res.end_to_end = e2e_stage.run(txn, e2e_opts, progress, reference=reference)
    return res


def _parse(export_dir: str, model: ModelArgs, precision: PrecisionArgs, e2e: E2EArgs,
           progress: Progress) -> tuple[tuple[PrecisionOptions | None, E2EOptions | None], str, tuple[int, int, int, int]]:
    """The options (``--calib`` defaulted to ./calibration/, said), and (cheap, before the model loads) the
    directory's validity and the data folders: returns the (precision, end-to-end) options, the manifest's source
    hash and the opt input shape at batch 1."""
    from segdeploy.export.e2e_stage import spec_of
    from segdeploy.exportdir import ExportDir
    from segdeploy.precision.stage import check_labels, check_preconditions, check_validation_fits

    popts = precision.with_default_calib(progress).parse()
    e2e_opts = e2e.parse()
    if popts is None and e2e_opts is None:
        raise UsageError("nothing to do: give --int8, --fp16 and/or --end-to-end")
    if popts is not None or model.file is not None or model.factory is not None:
        model.validate()  # MODEL is optional only for --end-to-end alone
    ed = ExportDir.open(export_dir)  # validates the manifest and every file's hash before any work
    if e2e_opts is not None:  # verification frames: tiles of the validation images
        e2e_opts = dataclasses.replace(e2e_opts, frames_from=popts.validation_dir()[0] if popts else ed.validation_source)
        spec_of(ed, e2e_opts)  # UsageError: the export cannot have an end-to-end variant
    if popts is not None:
        check_preconditions(popts)
        check_labels(popts, ed.num_classes)
        check_validation_fits(popts, ed.profile, ed.preprocess,
                              "re-export with a larger --max-shape (segdeploy export), or pass --val with smaller images")
    return (popts, e2e_opts), ed.source_sha256, (1,) + tuple(ed.profile.opt[1:])


def _reference(export_dir: str, model: ModelArgs, source_sha256: str,
               shape: tuple[int, int, int, int]) -> torch.nn.Module | None:
    """The PyTorch reference: the model the directory was exported from, returning the logits the export chose (None
    when no model was given: --end-to-end alone)."""
    if model.file is None and model.factory is None:
        return None
    lm = model.load()
    if lm.source_sha256 != source_sha256:
        raise UsageError(f"{model.source} is not the model {export_dir} was exported from (its hash differs from the "
                         "manifest's source.sha256); pass the same model, or re-export")
    return lm.select_output_at(shape)


@click.command("precision")
@click.argument("export_dir", type=click.Path(file_okay=False, path_type=str))
@model_options()
@precision_options
@e2e_options
@output_options
def precision_command(export_dir, model, precision, e2e, as_json, quiet):
    """Calibrate, lower to INT8 Q/DQ and/or FP16, and check accuracy on the CPU, for EXPORT_DIR; with --end-to-end
    also (or only) write its end-to-end variants."""
    from segdeploy.export.e2e_terminal import print_e2e_summary
    from segdeploy.pipeline import run_stage
    from segdeploy.precision.terminal import print_precision_summary

    progress = progress_for(quiet)
    try:
        options, source_sha256, shape = _parse(export_dir, model, precision, e2e, progress)
        reference = _reference(export_dir, model, source_sha256, shape)
        res, published = run_stage(export_dir, _run, options, progress, command="precision", reference=reference)
    except SegdeployError as e:
        if as_json:
            echo_json(result_doc("precision", stages=e.stages, export_dir=export_dir, error=e))
        raise
    if as_json:
        echo_json(result_doc("precision", stages=res.stages(), export_dir=export_dir, published=True,
                             files=published.file_table, notes=res.notes))
        return
    if res.precision is not None:
        print_precision_summary(res.precision)
    if res.end_to_end is not None:
        print_e2e_summary(res.end_to_end)
    for n in res.notes:
        click.echo(f"note: {n}")
