"""Implicit INT8 from segdeploy's calibration cache: read its header, serve it with the recipe's header.

TensorRT <= 10.x reads ``model.calib.cache`` (``TRT-<code>-EntropyCalibration2`` + one ``<tensor>: <hex scale>``
line per tensor) through an ``IInt8EntropyCalibrator2``. It skips a cache whose header names another version or
algorithm and then tries to calibrate -- with no data, so the build fails late and obscurely. Whether the header
fits is decided by :func:`segdeploy.trt.recipe.make_recipe` (the one rule engine) *before* building; this module
reads the header for it and renders its decision.

Contract:
    ``read_cache_header(path) -> CacheHeader``: parses the cache (:func:`segdeploy.trt.calib_cache.read_trt_cache`;
    ArtifactError for a missing or malformed file) and refuses another algorithm with
    :class:`~segdeploy.trt.recipe.CalibrationCacheMismatch`.
    ``load_calibration_cache(path, header_code) -> CalibrationCache``: the bytes TensorRT reads, with the header
    ``TRT-<header_code>`` (``Recipe.calib_cache_code``) -- the file's own bytes when its header already says so,
    else a copy with that header (the file on disk is never modified; ``.rewritten_from`` says so).
    ``make_cache_calibrator(trt, cache_bytes)`` -> an instance of a ``trt.IInt8EntropyCalibrator2`` subclass
    (created lazily from the module) that serves the bytes from ``read_calibration_cache`` and never provides a
    batch (``get_batch`` -> None). ``batches_requested`` > 0 after a build means TensorRT rejected the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from segdeploy.errors import ArtifactError
from segdeploy.trt.calib_cache import ALGORITHM, read_trt_cache
from segdeploy.trt.recipe import REWRITE_OPTION, CacheHeader, CalibrationCacheMismatch

__all__ = ["REWRITE_OPTION", "CalibrationCache", "CalibrationCacheMismatch", "load_calibration_cache",
           "make_cache_calibrator", "read_cache_header"]


@dataclass(frozen=True)
class CalibrationCache:
    path: str
    data: bytes  # what TensorRT reads (header rewritten when the recipe says so)
    version_code: int  # the code TensorRT reads (after any rewrite)
    file_version_code: int  # the code in the file
    tensors: int
    rewritten_from: int | None  # the file's code when the header was rewritten

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": os.path.basename(self.path), "version_code": self.version_code,
            "file_version_code": self.file_version_code, "tensors": self.tensors,
            "header_rewritten_from": self.rewritten_from,
        }


def read_cache_header(path: str | os.PathLike) -> CacheHeader:
    """The header of the cache at ``path`` (see the module docstring)."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise ArtifactError(f"calibration cache {p} not found; run `segdeploy calibrate` first or fix the path")
    cache = read_trt_cache(p)  # ArtifactError for a malformed file
    if cache.algorithm != ALGORITHM:
        raise CalibrationCacheMismatch(
            f"calibration cache {os.path.basename(p)} is for algorithm {cache.algorithm}, segdeploy's calibrator is "
            f"{ALGORITHM}; re-run `segdeploy calibrate`"
        )
    return CacheHeader(code=cache.version_code)


def load_calibration_cache(path: str | os.PathLike, header_code: int) -> CalibrationCache:
    """The cache as TensorRT reads it, with header ``TRT-<header_code>`` (see the module docstring)."""
    p = os.fspath(path)
    file_code = read_cache_header(p).code
    with open(p, "rb") as f:
        raw = f.read()
    tensors = len(read_trt_cache(p).scales)
    if file_code == header_code:
        return CalibrationCache(p, raw, header_code, header_code, tensors, None)
    _first, sep, rest = raw.partition(b"\n")
    data = f"TRT-{header_code}-{ALGORITHM}".encode() + sep + rest
    return CalibrationCache(p, data, header_code, file_code, tensors, file_code)  # type: ignore[arg-type]


_CLASSES: dict[int, tuple[type, type]] = {}


def make_cache_calibrator(trt: Any, cache_bytes: bytes) -> Any:
    """A cache-only ``trt.IInt8EntropyCalibrator2`` instance (see the module docstring)."""
    base = trt.IInt8EntropyCalibrator2
    cached = _CLASSES.get(id(base))
    cls = cached[1] if cached is not None and cached[0] is base else None
    if cls is None:

        def __init__(self: Any, data: bytes) -> None:
            base.__init__(self)  # mandatory for pybind11 trampolines
            self._cache = bytes(data)  # TensorRT copies it, but keep a reference anyway
            self.cache_reads = 0
            self.batches_requested = 0
            self.cache_writes = 0

        def get_batch_size(self: Any) -> int:
            return 1

        def get_batch(self: Any, names: Any, *args: Any) -> None:
            self.batches_requested += 1
            return None  # no data: segdeploy only serves the cache

        def read_calibration_cache(self: Any) -> bytes:
            self.cache_reads += 1
            return self._cache

        def write_calibration_cache(self: Any, cache: Any) -> None:
            self.cache_writes += 1  # the cache file is segdeploy's artifact; never overwritten here

        cls = type("SegdeployCacheCalibrator", (base,), {
            "__init__": __init__, "get_batch_size": get_batch_size, "get_batch": get_batch,
            "read_calibration_cache": read_calibration_cache, "write_calibration_cache": write_calibration_cache,
        })
        _CLASSES[id(base)] = (base, cls)
    return cls(cache_bytes)
