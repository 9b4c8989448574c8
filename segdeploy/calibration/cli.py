"""`segdeploy calibrate EXPORT_DIR --calib DIR`: ranges.json + the TensorRT calibration cache for an export.

Runs the calibration stage (:func:`segdeploy.calibration.stage.run`) in a transaction on EXPORT_DIR: the
new ``ranges.json``, ``model.calib.cache`` and manifest ``calibration`` section are published together.
When the new ranges differ from the ones an existing ``model.int8.onnx`` was made from, that model (and
any engine built from it) is removed in the same step and the output says so.
"""

from __future__ import annotations

import click

from segdeploy.cli_options import output_options
from segdeploy.errors import SegdeployError
from segdeploy.result import echo_json, result_doc
from segdeploy.vocab import DEFAULT_CALIB_METHOD, DEFAULT_PERCENTILE, CalibMethod
from segdeploy.trt.versions import DEFAULT_CALIB_CACHE_VERSION


@click.command("calibrate")
@click.argument("export_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--calib", "calib", required=True, type=click.Path(path_type=str), help="Folder of calibration images, or a list file.")
@click.option("--calib-size", type=int, help="Sample this many images (default: all).")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option("--calib-method", type=click.Choice(CalibMethod.values()), default=DEFAULT_CALIB_METHOD.value, show_default=True)
@click.option("--percentile", type=float, default=DEFAULT_PERCENTILE, show_default=True, help="For --calib-method percentile.")
@click.option("--calib-gray", type=click.Choice(["refuse", "replicate"]), default="refuse", show_default=True,
              help="Grayscale images for a 3-channel model: refuse (error) or replicate to RGB.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=str),
              help="Statistics cache (default: segdeploy's cache directory); another method then does not re-run the model.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the statistics cache.")
@click.option("--trt-version", default=DEFAULT_CALIB_CACHE_VERSION, show_default=True, help="TensorRT version the cache header is for (8.6.2, 10.3, ...).")
@output_options
def calibrate_command(export_dir, calib, calib_size, seed, calib_method, percentile, calib_gray, batch_size,
                      cache_dir, no_cache, trt_version, as_json, quiet):
    """Calibrate the FP32 ONNX of EXPORT_DIR on --calib images.

    Publishes ranges.json and model.calib.cache (TRT-<version>-EntropyCalibration2) with the manifest's
    "calibration" section.
    """
    from segdeploy.calibration.methods import Method
    from segdeploy.calibration.stage import CalibrateOptions, check_calibration_source, run
    from segdeploy.exportdir import Transaction

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if quiet or as_json:
            return
        if bar is None:
            bar = click.progressbar(length=total, label="calibrating", file=click.get_text_stream("stderr"))
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        opts = CalibrateOptions(calib=calib, size=calib_size, seed=seed, method=Method(calib_method, percentile=percentile),
                                gray=calib_gray, batch_size=batch_size, trt_version=trt_version, cache_dir=cache_dir,
                                use_cache=not no_cache)
        check_calibration_source(calib, calib_size)
        try:
            with Transaction(export_dir, fresh=False, command="calibrate") as txn:
                res = run(txn, opts, progress=progress)
                published = txn.commit()
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
    except SegdeployError as e:
        if as_json:
            echo_json(result_doc("calibrate", export_dir=export_dir, error=e))
        raise
    section = published.manifest["calibration"]
    summary = {
        "ranges": str(published.path / section["ranges_file"]),
        "trt_cache": str(published.path / section["trt_cache_file"]),
        "trt_cache_version": section["trt_cache_version"],
        "method": opts.method.to_dict(),
        "images": res.calib_set.size,
        "tensors": len(res.ranges),
        "statistics_cached": res.cache_hit,
        "seconds": round(res.seconds, 2),
        "data_sha256": res.data_sha256,
    }
    notes = list(res.notes) + list(txn.notes)
    if as_json:
        echo_json(result_doc("calibrate", stages={"calibrate": summary}, export_dir=published.path, published=True,
                             files=published.manifest["files"], notes=notes))
        return
    click.echo(f"calibrated {summary['tensors']} tensors on {summary['images']} images with {opts.method.label}"
               f"{' (statistics from cache)' if res.cache_hit else ''} in {summary['seconds']} s")
    click.echo(f"  ranges:    {summary['ranges']}")
    click.echo(f"  TRT cache: {summary['trt_cache']} (TRT-{summary['trt_cache_version']}-EntropyCalibration2)")
    for n in notes:
        click.echo(f"note: {n}")
