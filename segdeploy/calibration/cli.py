"""`segdeploy calibrate EXPORT_DIR --calib DIR`: ranges.json + the TensorRT calibration cache for an export.

Parses the calibration group (:func:`segdeploy.cli_options.calibration_options`), runs the calibration stage
(:func:`segdeploy.calibration.stage.run`) on EXPORT_DIR through :func:`segdeploy.pipeline.run_stage` (the new
``ranges.json``, ``model.calib.cache`` and manifest ``calibration`` section are published together), prints.
When the new ranges differ from the ones an existing ``model.int8.onnx`` was made from, that model (and
any engine built from it) is removed in the same step and the output says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from segdeploy.cli_options import CalibrationArgs, calibration_options, output_options, progress_for
from segdeploy.errors import SegdeployError
from segdeploy.result import echo_json, result_doc

if TYPE_CHECKING:
    from segdeploy.calibration.stage import CalibrationResult
    from segdeploy.exportdir import ExportDir
    from segdeploy.progress import Progress


def _calibrate(export_dir: str, calibration: CalibrationArgs, progress: Progress) -> tuple[CalibrationResult, ExportDir]:
    """Parse, check the calibration source (listing only), run the stage on the directory and publish."""
    from segdeploy.calibration.stage import check_calibration_source, run
    from segdeploy.pipeline import run_stage

    options = calibration.parse(progress)
    check_calibration_source(options.calib, options.size)
    return run_stage(export_dir, run, options, progress, command="calibrate")


def _print(res: CalibrationResult) -> None:
    s = res.summary()
    click.echo(f"calibrated {s['tensors']} tensors on {s['images']} images with {res.method.label}"
               f"{' (statistics from cache)' if res.cache_hit else ''} in {s['seconds']} s")
    click.echo(f"  ranges:    {s['ranges']}")
    click.echo(f"  TRT cache: {s['trt_cache']} (TRT-{s['trt_cache_version']}-EntropyCalibration2)")
    for n in res.notes:
        click.echo(f"note: {n}")


@click.command("calibrate")
@click.argument("export_dir", type=click.Path(file_okay=False, path_type=str))
@calibration_options
@output_options
def calibrate_command(export_dir, calibration, as_json, quiet):
    """Calibrate the FP32 ONNX of EXPORT_DIR on --calib images.

    Publishes ranges.json and model.calib.cache (TRT-<version>-EntropyCalibration2) with the manifest's
    "calibration" section.
    """
    try:
        res, published = _calibrate(export_dir, calibration, progress_for(quiet))
    except SegdeployError as e:
        if as_json:
            echo_json(result_doc("calibrate", export_dir=export_dir, error=e))
        raise
    if as_json:
        echo_json(result_doc("calibrate", stages={"calibrate": res.summary()}, export_dir=published.path, published=True,
                             files=published.file_table, notes=res.notes))
        return
    _print(res)
