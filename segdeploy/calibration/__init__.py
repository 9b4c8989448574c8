"""Calibration: calibration sets, streaming range collection, range methods, statistics and TensorRT caches.

Stable API (other stages code against these names; keep them stable)
=====================================================================

One call (``segdeploy.calibration.calibrate``, in stage.py)::

    from segdeploy.calibration import calibrate, Method
    res = calibrate(
        onnx_path,                     # FP32 ONNX from `segdeploy export` (input NCHW float32)
        source,                        # image folder, or a list file (one image path per line, relative to the file)
        preprocess=preprocess,         # segdeploy.spec.Preprocess (manifest: segdeploy.manifest.preprocess_of)
        profile=profile,               # segdeploy.spec.ShapeProfile (manifest: segdeploy.manifest.onnx_profile_of)
        size=None,                     # --calib-size: sample this many images (None: all); fewer available -> DataError
        seed=0,                        # --seed: reproducible sampling
        method=Method(),               # default "auto" (entropy per tensor, percentile on long tails: tail_rule.py) |
                                       # Method("max") | Method("percentile", percentile=99.99) | Method("entropy") | Method("mse")
        cache_dir=None,                # statistics cache dir (None: no cache); unwritable -> ArtifactError before any work
        batch_size=8,
        tensors=None,                  # None: every float activation (graph inputs + float node outputs); or a list of names
        gray="refuse",                 # grayscale images for a 3-channel model: "refuse" (DataError) or "replicate"
        progress=None,                 # optional segdeploy.progress.Progress (images streamed: a "calibrate" task)
    )
    res.ranges            # dict[str, float]: tensor name -> amax (>= 0; symmetric range [-amax, amax]; scale = amax / 127)
    res.statistics        # Statistics: what the method needed -- histograms (serve every method) for percentile /
                          # entropy / mse, only the exact max |x| per tensor for max (statistics.statistic says which)
    res.absmax            # dict[str, float]: observed max |x| per tensor (FP16 overflow check: > 65504)
    res.method            # Method used
    res.chosen            # dict[str, str]: tensor -> the method kind that chose its range (all method.kind but for auto)
    res.calib_set         # CalibrationSet (the sampled files, data hash)
    res.cache_hit         # bool: statistics came from the cache (model not run)
    res.model_sha256, res.data_sha256
    res.to_manifest()     # dict for the manifest "calibration" section (method, size, seed, hashes, statistic, tensor count)
    res.summary()         # the stage's entry in the JSON result document (file paths once run() wrote them)

The stage, ``run(txn, options, progress)`` (the stage contract of segdeploy.pipeline; the one writer of
ranges.json, model.calib.cache and the manifest's "calibration" section), on a published directory::

    from segdeploy.calibration.stage import CalibrateOptions, run
    from segdeploy.pipeline import run_stage
    res, published = run_stage(export_dir, run, CalibrateOptions(calib="calibration/shapes/calib", trt_target="10.3"),
                               Progress(), command="calibrate")

CLI: ``segdeploy calibrate EXPORT_DIR --calib DIR [--calib-size N] [--seed S] [--calib-method M]`` (cli.py).

Pieces (each usable alone)::

    # reader.py
    CalibrationSet                                   # frozen: files (tuple[str]), size, seed, data_sha256, source, gray
    open_calibration_set(source, *, size=None, seed=0, channels=3, gray="refuse", profile=None, preprocess=None,
                         max_pixels=64 Mpx, min_images=1)
    iter_batches(calib_set, preprocess, profile, batch_size=8) -> Iterator[Batch]
        # Batch: .array float32 NCHW (3-channel: segdeploy.datasets.preprocess.to_batch), .files tuple[str]
    # collect.py (+ probes.py: the in-graph reductions; histogram.py: the per-tensor statistics)
    CollectOptions(num_bins=2048, tensors=None, intra_op_threads=None, histograms=True, workers=None)
        # histograms=False: only the max |x| (ONNX Runtime reduces each activation in-graph; nothing materialised)
        # workers: histogram binning threads (None: intra_op_threads, else the CPUs this process may use)
    collect_statistics(onnx_path, batches, options=CollectOptions(), progress=None) -> Statistics
    calibratable_tensors(onnx_model) -> list[str]    # graph inputs + float node outputs (not Constant nodes)
    quantizable_inputs(onnx_model, op_types=QUANTIZABLE_OPS) -> list[str]  # activations feeding Conv/MatMul/pool/Add...
                                                     # (QUANTIZABLE_OPS: segdeploy.vocab, the Q/DQ placer's set)
    TensorRange                                      # exact running max |x| + element count (statistic "absmax")
    TensorHistogram                                  # a TensorRange + streaming |x| histogram, power-of-two range,
                                                     # exact re-binning (statistic "histogram")
    Statistics                                       # .tensors: dict[str, TensorHistogram | TensorRange] (graph order),
                                                     # .histograms, .statistic, .absmax() dict
    # methods.py
    Method(kind, percentile=99.99, num_quant_bins=128, start_bin=128)   # frozen; kind: a segdeploy.vocab.CalibMethod; .needs_histogram
    compute_amax(hist: TensorHistogram, method) -> float
    compute_ranges(stats: Statistics, method, names=None) -> dict[str, float]   # UsageError: histogram method, absmax stats
    compute_ranges_chosen(stats, method, names=None) -> (ranges, {tensor: kind})  # the kind each tensor got (auto)
    # tail_rule.py: the default's per-tensor rule (entropy unless it clips > 0.01 % of the values: percentile)
    tail_share(hist, edges, amax) -> float ; is_long_tailed(hist, edges, entropy_amax) -> bool ; TAIL_SHARE_LIMIT
    # cache.py
    key_fields(model_sha256, data_sha256, preprocess_dict, size, seed, num_bins, tensors, profile_dict, gray,
               statistic="histogram") -> dict       # num_bins is part of the key only for histograms
    statistics_key(same arguments) -> str            # sha256 of the fields (key_of(fields))
    serving_statistics(needs_histogram) -> tuple     # statistics that serve a method, cheapest first
    StatsCache(cache_dir).load(key, fields) -> Statistics | None ; .save(key, fields, stats) -> path (atomic)
    # segdeploy.trt.versions, segdeploy.trt.calib_cache, ranges_file.py
    trt_version_code("8.6.2") -> 8602 ; trt_version_code("10.3") -> 100300
    write_trt_cache(path, ranges, trt_version="10.3") ; read_trt_cache(path) -> TrtCache(version_code, algorithm, ranges)
    write_ranges_json(path, ranges, meta=None) ; read_ranges_json(path) -> (ranges, meta)

Errors: bad data -> segdeploy.errors.DataError (lists the offending files / names the tensor with NaN/Inf);
cache/file problems -> ArtifactError; bad options -> UsageError. Writes are atomic.

Policy decisions:
* Grayscale images for a 3-channel model are refused by default (the model was trained on colour; silently
  replicating changes the activation statistics); ``gray="replicate"`` converts and records it.
  Palette images are colour and converted to RGB; RGBA is accepted only when alpha is fully opaque.
* Images larger than the profile's max H/W in ``pad`` mode are refused (the engine could not take them);
  in ``resize`` mode they are resized to the profile's opt H/W like at inference. Images above
  ``max_pixels`` (default 64 Mpx) are refused before decoding.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "calibrate": "segdeploy.calibration.stage",
    "CalibrationResult": "segdeploy.calibration.stage",
    "run": "segdeploy.calibration.stage",
    "CalibrateOptions": "segdeploy.calibration.stage",
    "check_calibration_source": "segdeploy.calibration.stage",
    "CalibrationSet": "segdeploy.calibration.reader",
    "Batch": "segdeploy.calibration.reader",
    "open_calibration_set": "segdeploy.calibration.reader",
    "iter_batches": "segdeploy.calibration.reader",
    "CollectOptions": "segdeploy.calibration.collect",
    "collect_statistics": "segdeploy.calibration.collect",
    "calibratable_tensors": "segdeploy.calibration.collect",
    "quantizable_inputs": "segdeploy.calibration.collect",
    "QUANTIZABLE_OPS": "segdeploy.vocab",  # the placer's op set (segdeploy.precision.qdq places Q/DQ by it)
    "TensorHistogram": "segdeploy.calibration.collect",
    "TensorRange": "segdeploy.calibration.collect",
    "Statistics": "segdeploy.calibration.collect",
    "Method": "segdeploy.calibration.methods",
    "compute_amax": "segdeploy.calibration.methods",
    "compute_ranges": "segdeploy.calibration.methods",
    "compute_ranges_chosen": "segdeploy.calibration.methods",
    "statistics_key": "segdeploy.calibration.cache",
    "key_fields": "segdeploy.calibration.cache",
    "StatsCache": "segdeploy.calibration.cache",
    "serving_statistics": "segdeploy.calibration.cache",
    "trt_version_code": "segdeploy.trt.versions",
    "write_trt_cache": "segdeploy.trt.calib_cache",
    "read_trt_cache": "segdeploy.trt.calib_cache",
    "TrtCache": "segdeploy.trt.calib_cache",
    "write_ranges_json": "segdeploy.calibration.ranges_file",
    "read_ranges_json": "segdeploy.calibration.ranges_file",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # lazy: importing the package does not import onnxruntime
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'segdeploy.calibration' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)
