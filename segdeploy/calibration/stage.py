"""The calibration stage in one call: calibration set -> statistics (cached) -> ranges.

Contract: :func:`calibrate` samples and checks the set (DataError listing bad files), opens the statistics
cache first when one is asked for (ArtifactError for an unwritable directory, before the model runs),
reuses cached statistics only for the identical (model bytes, sampled files' bytes, preprocessing, profile,
size, seed, grayscale policy, tensors) and a statistic that serves ``method`` (histograms, with the same bins,
serve every method; the absmax-only statistic serves ``max``), else streams the set through ONNX Runtime
collecting only what ``method`` needs (``max``: the exact max |x|, reduced inside ONNX Runtime; the others:
histograms) and stores the statistics atomically; then computes one amax per tensor with ``method``.
Nothing is written except the cache entry; use :mod:`segdeploy.calibration.ranges_file` /
:mod:`segdeploy.trt.calib_cache` to write ranges.json / the TensorRT cache.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from segdeploy.calibration.cache import StatsCache, key_fields, key_of, serving_statistics
from segdeploy.calibration.collect import CollectOptions, Statistics, collect_statistics
from segdeploy.calibration.methods import Method, compute_ranges
from segdeploy.calibration.reader import CalibrationSet, iter_batches, open_calibration_set
from segdeploy.trt.calib_cache import write_trt_cache
from segdeploy.calibration.ranges_file import write_ranges_json
from segdeploy.trt.versions import DEFAULT_CALIB_CACHE_VERSION, trt_version_code
from segdeploy.errors import ArtifactError
from segdeploy.fsutil import sha256_file
from segdeploy.spec import Preprocess, ShapeProfile


@dataclass
class CalibrationResult:
    ranges: dict[str, float]
    statistics: Statistics
    method: Method
    calib_set: CalibrationSet
    cache_hit: bool
    model_sha256: str
    data_sha256: str
    cache_file: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def absmax(self) -> dict[str, float]:
        return self.statistics.absmax()

    def to_manifest(self) -> dict:
        """The manifest's ``calibration`` section."""
        doc = {
            "method": self.method.to_dict(),
            "set": self.calib_set.to_dict(),
            "model_sha256": self.model_sha256,
            "statistic": self.statistics.statistic,
            "tensors": len(self.ranges),
            "notes": list(self.notes),
        }
        if self.statistics.histograms:
            doc["num_bins"] = self.statistics.num_bins
        return doc


def calibrate(
    onnx_path: str | os.PathLike,
    source: str | os.PathLike,
    *,
    preprocess: Preprocess,
    profile: ShapeProfile,
    size: int | None = None,
    seed: int = 0,
    method: Method = Method(),
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    tensors: Sequence[str] | None = None,
    gray: str = "refuse",
    num_bins: int = 2048,
    intra_op_threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CalibrationResult:
    """Calibrate ``onnx_path`` on images from ``source``. See the package docstring for the fields."""
    t0 = time.perf_counter()
    cache = StatsCache(cache_dir) if cache_dir is not None else None
    if not os.path.isfile(onnx_path):
        raise ArtifactError(f"ONNX model {onnx_path} not found; run `segdeploy export` first")
    cset = open_calibration_set(
        source, size=size, seed=seed, channels=profile.channels, gray=gray, profile=profile, preprocess=preprocess
    )
    model_sha = sha256_file(onnx_path)
    tens = None if tensors is None else tuple(tensors)

    def fields_for(statistic: str) -> dict:
        return key_fields(model_sha, cset.data_sha256, preprocess.to_dict(), cset.size, seed, num_bins, tens,
                          profile.to_dict(), gray, statistic)

    stats, cache_file = None, None
    for statistic in (serving_statistics(method.needs_histogram) if cache else ()):
        fields = fields_for(statistic)
        stats = cache.load(key_of(fields), fields)
        if stats is not None:
            cache_file = str(cache.path(key_of(fields)))
            break
    hit = stats is not None
    notes: list[str] = []
    if gray == "replicate":
        notes.append("grayscale calibration images were replicated to 3 channels")
    if stats is None:
        opts = CollectOptions(num_bins=num_bins, tensors=tens, intra_op_threads=intra_op_threads,
                              histograms=method.needs_histogram)
        total = cset.size
        cb = (lambda n: progress(n, total)) if progress else None
        stats = collect_statistics(onnx_path, iter_batches(cset, preprocess, profile, batch_size), opts, cb)
        if cache:
            fields = fields_for(stats.statistic)
            try:
                cache_file = str(cache.save(key_of(fields), fields, stats))
            except ArtifactError as e:  # a cache never fails the stage
                notes.append(f"statistics cache not written ({e.message})")
    elif progress:
        progress(cset.size, cset.size)
    ranges = compute_ranges(stats, method)
    return CalibrationResult(
        ranges=ranges,
        statistics=stats,
        method=method,
        calib_set=cset,
        cache_hit=hit,
        model_sha256=model_sha,
        data_sha256=cset.data_sha256,
        cache_file=cache_file,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )


@dataclass(frozen=True)
class CalibrateOptions:
    """What the calibration stage is asked (CLI: ``segdeploy calibrate`` and ``export/precision --calib``)."""

    calib: str
    size: int | None = None
    seed: int = 0
    method: Method = field(default_factory=Method)
    gray: str = "refuse"
    batch_size: int = 8
    trt_version: str = DEFAULT_CALIB_CACHE_VERSION
    cache_dir: str | None = None  # statistics cache; None: segdeploy's cache directory
    use_cache: bool = True

    def __post_init__(self) -> None:
        from segdeploy.errors import UsageError

        trt_version_code(self.trt_version)  # UsageError for a malformed version
        if self.size is not None and self.size < 1:
            raise UsageError(f"--calib-size must be >= 1, got {self.size}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.gray not in ("refuse", "replicate"):
            raise UsageError(f"--calib-gray must be refuse or replicate, got {self.gray!r}")


def check_calibration_source(source: str, size: int | None = None) -> int:
    """Cheap precondition (listing only, no decoding): the calibration folder or list file names images, and at
    least ``size`` of them. Returns the count. Raises DataError naming the fix."""
    from segdeploy.calibration.reader import list_images
    from segdeploy.errors import DataError

    n = len(list_images(source))
    if size is not None and size > n:
        raise DataError(f"--calib-size {size} but --calib {source} holds only {n} images; lower --calib-size or add images")
    return n


def run(txn, options: CalibrateOptions, progress: Callable[[int, int], None] | None = None) -> CalibrationResult:
    """The calibration stage in a transaction: ranges of the staged FP32 ONNX -> ``ranges.json`` + ``model.calib.cache``.

    The one writer of both files and of the manifest's ``calibration`` section (one shape, whichever command
    runs it). Both files are derived from ``model.onnx``; a different result retires the INT8 model and
    engines made from the previous ranges (the transaction's file table does that at commit).
    """
    from segdeploy.vocab import CALIB_CACHE, MODEL_ONNX, RANGES
    from segdeploy.manifest import onnx_profile_of, preprocess_of
    from segdeploy.usercache import cache_subdir

    notes: list[str] = []
    cache_dir = None
    if options.use_cache:
        cache_dir, why = cache_subdir("calib_stats", options.cache_dir)
        if why:
            notes.append(why)
    doc = txn.manifest
    res = calibrate(txn.staged(MODEL_ONNX), options.calib, preprocess=preprocess_of(doc), profile=onnx_profile_of(doc),
                    size=options.size, seed=options.seed, method=options.method, cache_dir=cache_dir,
                    batch_size=options.batch_size, gray=options.gray, progress=progress)
    res.notes.extend(notes)
    code = trt_version_code(options.trt_version)
    section = res.to_manifest()
    section.update({"ranges_file": RANGES, "trt_cache_file": CALIB_CACHE, "trt_cache_version": code})
    write_ranges_json(txn.path(RANGES), res.ranges, {k: v for k, v in section.items()
                                                     if k not in ("ranges_file", "trt_cache_file", "notes")})
    txn.add(RANGES, "ranges", derived_from=(MODEL_ONNX,))
    write_trt_cache(txn.path(CALIB_CACHE), res.ranges, code)
    txn.add(CALIB_CACHE, "calib-cache", derived_from=(MODEL_ONNX,))
    doc["calibration"] = section
    return res
