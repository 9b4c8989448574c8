"""The calibration stage in one call: calibration set -> statistics (cached) -> ranges.

Contract: ``run(txn, options, progress) -> CalibrationResult`` is the stage (the contract of
:mod:`segdeploy.pipeline`): ranges of the staged ``model.onnx`` -> ``ranges.json`` + ``model.calib.cache`` and the
manifest's ``calibration`` section. :func:`calibrate` is the library call underneath: it samples and checks the
set (DataError listing bad files), opens the statistics cache first when one is asked for (ArtifactError for an
unwritable directory, before the model runs), reuses cached statistics only for the identical (model bytes, sampled files' bytes, preprocessing, profile,
size, seed, grayscale policy, tensors) and a statistic that serves ``method`` (histograms, with the same bins,
serve every method; the absmax-only statistic serves ``max``), else streams the set through ONNX Runtime
collecting only what ``method`` needs (``max``: the exact max |x|, reduced inside ONNX Runtime; the others:
histograms) and stores the statistics atomically; then computes one amax per tensor with ``method`` (the default,
``auto``, picks entropy or percentile per tensor from the same histograms: :mod:`.tail_rule`; the kind chosen
per tensor is ``CalibrationResult.chosen``, recorded in ``ranges.json``'s meta ``per_tensor_method`` and counted
in the manifest's ``calibration.method.chosen``; :meth:`CalibrationResult.choice_line` is the printed line).
Nothing is written except the cache entry; use :mod:`segdeploy.calibration.ranges_file` /
:mod:`segdeploy.trt.calib_cache` to write ranges.json / the TensorRT cache.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from segdeploy.calibration.cache import StatsCache, key_fields, key_of, serving_statistics
from segdeploy.calibration.collect import CollectOptions, Statistics, collect_statistics
from segdeploy.calibration.methods import Method, compute_ranges_chosen
from segdeploy.calibration.reader import CalibrationSet, iter_batches, open_calibration_set
from segdeploy.trt.calib_cache import write_trt_cache
from segdeploy.calibration.ranges_file import write_ranges_json
from segdeploy.trt.versions import cache_header_code, resolve_target
from segdeploy.errors import ArtifactError
from segdeploy.fsutil import sha256_file
from segdeploy.progress import Progress, as_progress
from segdeploy.spec import Preprocess, ShapeProfile
from segdeploy.vocab import CalibMethod

if TYPE_CHECKING:
    from segdeploy.exportdir import Transaction


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
    files: dict[str, Path] = field(default_factory=dict)  # run(): "ranges", "trt_cache" in the export directory
    trt_cache_version: int | None = None  # run(): the TensorRT version code in the cache header
    chosen: dict[str, str] = field(default_factory=dict)  # tensor -> method kind that chose its amax

    def chosen_counts(self) -> dict[str, int]:
        """How many tensors each method kind chose (one kind unless the method is ``auto``)."""
        counts: dict[str, int] = {}
        for kind in self.chosen.values():
            counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items()))

    def choice_line(self) -> str:
        """One line: the method, and for ``auto`` what its rule chose."""
        if self.method.kind != CalibMethod.AUTO:
            return f"calibrate: method {self.method.label} on {len(self.ranges)} tensors"
        parts = ", ".join(f"{kind} on {n}" for kind, n in self.chosen_counts().items())
        return (f"calibrate: default method auto ({parts} tensors; percentile {self.method.percentile:g} where entropy "
                "would clip > 0.01% of the values)")

    def method_record(self) -> dict[str, Any]:
        """The method's parameters, plus for ``auto`` the count of tensors per chosen kind."""
        doc = self.method.to_dict()
        if self.method.kind == CalibMethod.AUTO:
            doc["chosen"] = self.chosen_counts()
        return doc

    @property
    def absmax(self) -> dict[str, float]:
        return self.statistics.absmax()

    def summary(self) -> dict[str, Any]:
        """The stage's entry in the JSON result document."""
        files = {k: str(v) for k, v in self.files.items()}
        return {"ranges": files.get("ranges"), "trt_cache": files.get("trt_cache"),
                "trt_cache_version": self.trt_cache_version, "method": self.method_record(),
                "images": self.calib_set.size, "tensors": len(self.ranges), "statistics_cached": self.cache_hit,
                "seconds": round(self.seconds, 2), "data_sha256": self.data_sha256}

    def to_manifest(self) -> dict:
        """The manifest's ``calibration`` section."""
        doc = {
            "method": self.method_record(),
            "set": self.calib_set.to_dict(),
            "model_sha256": self.model_sha256,
            "statistic": self.statistics.statistic,
            "tensors": len(self.ranges),
            "notes": list(self.notes),
        }
        if self.statistics.histograms:
            doc["num_bins"] = self.statistics.num_bins
        return doc


@dataclass(frozen=True)
class _StatsKey:
    """What identifies a run's statistics in the cache, but the statistic (:func:`~segdeploy.calibration.cache.key_fields`)."""

    model_sha256: str
    data_sha256: str
    preprocess: dict[str, Any]
    size: int
    seed: int
    num_bins: int
    tensors: tuple[str, ...] | None
    profile: dict[str, Any]
    gray: str

    def fields(self, statistic: str) -> dict[str, Any]:
        return key_fields(self.model_sha256, self.data_sha256, self.preprocess, self.size, self.seed, self.num_bins,
                          self.tensors, self.profile, self.gray, statistic)


def _cached(cache: StatsCache, key: _StatsKey, method: Method) -> tuple[Statistics | None, str | None]:
    """(statistics, cache file) of the cheapest cached statistic that serves ``method``, or (None, None)."""
    for statistic in serving_statistics(method.needs_histogram):
        fields = key.fields(statistic)
        stats = cache.load(key_of(fields), fields)
        if stats is not None:
            return stats, str(cache.path(key_of(fields)))
    return None, None


def _store(cache: StatsCache, key: _StatsKey, stats: Statistics, notes: list[str]) -> str | None:
    """Save ``stats`` atomically; a cache never fails the stage (a note says why it was not written)."""
    fields = key.fields(stats.statistic)
    try:
        return str(cache.save(key_of(fields), fields, stats))
    except ArtifactError as e:
        notes.append(f"statistics cache not written ({e.message})")
        return None


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
    progress: Progress | None = None,
) -> CalibrationResult:
    """Calibrate ``onnx_path`` on images from ``source``. See the package docstring for the fields.
    ``progress``: the images streamed through the model are a counted task (``calibrate``)."""
    t0 = time.perf_counter()
    progress = as_progress(progress)
    cache = StatsCache(cache_dir) if cache_dir is not None else None
    if not os.path.isfile(onnx_path):
        raise ArtifactError(f"ONNX model {onnx_path} not found; run `segdeploy export` first")
    cset = open_calibration_set(
        source, size=size, seed=seed, channels=profile.channels, gray=gray, profile=profile, preprocess=preprocess
    )
    tens = None if tensors is None else tuple(tensors)
    key = _StatsKey(sha256_file(onnx_path), cset.data_sha256, preprocess.to_dict(), cset.size, seed, num_bins, tens,
                    profile.to_dict(), gray)
    stats, cache_file = _cached(cache, key, method) if cache else (None, None)
    hit = stats is not None
    notes = ["grayscale calibration images were replicated to 3 channels"] if gray == "replicate" else []
    if stats is None:
        opts = CollectOptions(num_bins=num_bins, tensors=tens, intra_op_threads=intra_op_threads,
                              histograms=method.needs_histogram)
        with progress.task("calibrate", total=cset.size, unit="image") as task:
            stats = collect_statistics(onnx_path, iter_batches(cset, preprocess, profile, batch_size), opts, task.update)
        if cache:
            cache_file = _store(cache, key, stats, notes)
    else:
        progress.step(f"calibrate: statistics of {cset.size} images from the cache")
    ranges, chosen = compute_ranges_chosen(stats, method)
    return CalibrationResult(ranges=ranges, statistics=stats, method=method, calib_set=cset, cache_hit=hit,
                             model_sha256=key.model_sha256, data_sha256=cset.data_sha256, cache_file=cache_file,
                             seconds=time.perf_counter() - t0, notes=notes, chosen=chosen)


@dataclass(frozen=True)
class CalibrateOptions:
    """What the calibration stage is asked (CLI: ``segdeploy calibrate`` and ``export/precision --calib``)."""

    calib: str
    size: int | None = None
    seed: int = 0
    method: Method = field(default_factory=Method)
    gray: str = "refuse"
    batch_size: int = 8
    trt_target: str | None = None  # the TensorRT of the cache header (None: the default target); --trt-target
    cache_dir: str | None = None  # statistics cache; None: segdeploy's cache directory
    use_cache: bool = True

    def __post_init__(self) -> None:
        from segdeploy.errors import UsageError

        resolve_target(self.trt_target)  # UsageError naming the forms (before any image is read)
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


def run(txn: Transaction, options: CalibrateOptions, progress: Progress) -> CalibrationResult:
    """The calibration stage in a transaction: ranges of the staged FP32 ONNX -> ``ranges.json`` + ``model.calib.cache``.

    The one writer of both files and of the manifest's ``calibration`` section (one shape, whichever command
    runs it). Both files are derived from ``model.onnx``; a different result retires the INT8 model and
    engines made from the previous ranges (the transaction's file table does that at commit).
    """
    from segdeploy.usercache import cache_subdir
    from segdeploy.vocab import CALIB_CACHE, MODEL_ONNX, RANGES

    notes: list[str] = []
    cache_dir = None
    if options.use_cache:
        cache_dir, why = cache_subdir("calib_stats", options.cache_dir)
        if why:
            notes.append(why)
    res = calibrate(txn.staged(MODEL_ONNX), options.calib, preprocess=txn.preprocess, profile=txn.profile,
                    size=options.size, seed=options.seed, method=options.method, cache_dir=cache_dir,
                    batch_size=options.batch_size, gray=options.gray, progress=progress)
    res.notes.extend(notes)
    code, note = cache_header_code(resolve_target(options.trt_target))
    if note:
        res.notes.append(note)
    progress.step(res.choice_line())
    section = res.to_manifest()
    section.update({"ranges_file": RANGES, "trt_cache_file": CALIB_CACHE, "trt_cache_version": code})
    meta = {k: v for k, v in section.items() if k not in ("ranges_file", "trt_cache_file", "notes")}
    if res.method.kind == CalibMethod.AUTO:
        meta["per_tensor_method"] = dict(res.chosen)
    write_ranges_json(txn.path(RANGES), res.ranges, meta)
    txn.add(RANGES, "ranges", derived_from=(MODEL_ONNX,))
    write_trt_cache(txn.path(CALIB_CACHE), res.ranges, code)
    txn.add(CALIB_CACHE, "calib-cache", derived_from=(MODEL_ONNX,))
    txn.set_section("calibration", section)
    res.files = {"ranges": txn.target / RANGES, "trt_cache": txn.target / CALIB_CACHE}
    res.trt_cache_version = code
    return res
