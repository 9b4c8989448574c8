"""`segdeploy calibrate`: export dir (manifest + FP32 ONNX) + image folder -> ranges.json + TensorRT cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from segdeploy.errors import UsageError


def _resolve(target: str, manifest: str | None) -> tuple[Path, Path]:
    """(onnx path, manifest path) from an export dir or an .onnx file (+ optional --manifest)."""
    from segdeploy.manifest import MANIFEST_FILENAME, read_manifest

    t = Path(target)
    if t.is_dir():
        mpath = Path(manifest) if manifest else t / MANIFEST_FILENAME
        doc = read_manifest(mpath)
        return t / doc["onnx"]["file"], mpath
    mpath = Path(manifest) if manifest else t.parent / MANIFEST_FILENAME
    if not mpath.is_file():
        raise UsageError(
            f"no manifest for {t} (looked for {mpath}); pass the `segdeploy export` directory or --manifest"
        )
    return t, mpath


@click.command("calibrate")
@click.argument("target", type=click.Path(exists=True, path_type=str))
@click.option("--calib", "calib", required=True, type=click.Path(path_type=str), help="Folder of calibration images, or a list file.")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=str), help="Manifest (default: beside the ONNX / in the export dir).")
@click.option("--calib-size", type=int, help="Sample this many images (default: all).")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option("--calib-method", type=click.Choice(["entropy", "max", "percentile", "mse"]), default="entropy", show_default=True)
@click.option("--percentile", type=float, default=99.99, show_default=True, help="For --calib-method percentile.")
@click.option("--calib-gray", type=click.Choice(["refuse", "replicate"]), default="refuse", show_default=True,
              help="Grayscale images for a 3-channel model: refuse (error) or replicate to RGB.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=str),
              help="Statistics cache (default: <out>/.calib_cache); another method then does not re-run the model.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the statistics cache.")
@click.option("--trt-version", default="10.3", show_default=True, help="TensorRT version the cache header is for (8.6.2, 10.3, ...).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=str), help="Output directory (default: the ONNX's directory).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def calibrate_command(target, calib, manifest, calib_size, seed, calib_method, percentile, calib_gray, batch_size,
                      cache_dir, no_cache, trt_version, out_dir, as_json, quiet):
    """Calibrate the FP32 ONNX of TARGET (an export directory or its model.onnx) on --calib images.

    Writes ranges.json and model.calib.cache (TRT-<version>-EntropyCalibration2) and, when the output
    directory holds the manifest, records the run in its "calibration" section.
    """
    from segdeploy.calibration.methods import Method
    from segdeploy.calibration.stage import calibrate, save_outputs
    from segdeploy.calibration.trt_cache import trt_version_code
    from segdeploy.manifest import onnx_profile_of, preprocess_of, read_manifest, update_manifest

    trt_version_code(trt_version)  # fail on a bad version before any work
    onnx_path, mpath = _resolve(target, manifest)
    doc = read_manifest(mpath)
    out = Path(out_dir) if out_dir else onnx_path.parent
    cache = None if no_cache else (cache_dir or str(out / ".calib_cache"))
    method = Method(calib_method, percentile=percentile)
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
        res = calibrate(onnx_path, calib, preprocess=preprocess_of(doc), profile=onnx_profile_of(doc), size=calib_size,
                        seed=seed, method=method, cache_dir=cache, batch_size=batch_size, gray=calib_gray,
                        progress=progress)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    section = save_outputs(res, out, trt_version)
    if os.path.abspath(mpath.parent) == os.path.abspath(out):
        update_manifest(mpath, "calibration", section)
    summary = {
        "ranges": str(out / section["ranges_file"]),
        "trt_cache": str(out / section["trt_cache_file"]),
        "trt_cache_version": section["trt_cache_version"],
        "method": method.to_dict(),
        "images": res.calib_set.size,
        "tensors": len(res.ranges),
        "cache_hit": res.cache_hit,
        "seconds": round(res.seconds, 2),
        "data_sha256": res.data_sha256,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    click.echo(f"calibrated {summary['tensors']} tensors on {summary['images']} images with {method.label}"
               f"{' (statistics from cache)' if res.cache_hit else ''} in {summary['seconds']} s")
    click.echo(f"  ranges:    {summary['ranges']}")
    click.echo(f"  TRT cache: {summary['trt_cache']} (TRT-{summary['trt_cache_version']}-EntropyCalibration2)")
