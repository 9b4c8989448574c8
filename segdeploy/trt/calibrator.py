"""Implicit INT8 from segdeploy's calibration cache: validate the header, then a cache-only calibrator.

TensorRT <= 10.x reads ``model.calib.cache`` (``TRT-<code>-EntropyCalibration2`` + one ``<tensor>: <hex scale>``
line per tensor) through an ``IInt8EntropyCalibrator2``. It rejects a cache whose header names another version
or algorithm and then tries to calibrate -- with no data, so the build fails late and obscurely. segdeploy
therefore checks the header against the installed TensorRT *before* building.

Contract:
    ``load_calibration_cache(path, installed_version, rewrite_header=False) -> CalibrationCache``: parses the
    cache (:func:`segdeploy.trt.calib_cache.read_trt_cache`), refuses another algorithm, and refuses a
    version mismatch with :class:`CalibrationCacheMismatch` (one line: the cache's version, the installed one, and
    the two fixes) unless ``rewrite_header`` -- then the bytes handed to TensorRT carry the installed version's
    header (the file on disk is never modified) and ``.rewritten_from`` says so.
    ``make_cache_calibrator(trt, cache_bytes)`` -> an instance of a ``trt.IInt8EntropyCalibrator2`` subclass
    (created lazily from the module) that serves the bytes from ``read_calibration_cache`` and never provides a
    batch (``get_batch`` -> None). ``batches_requested`` > 0 after a build means TensorRT rejected the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from segdeploy.trt.calib_cache import ALGORITHM, read_trt_cache
from segdeploy.errors import ArtifactError
from segdeploy.trt.versions import trt_version_code, version_from_code

# The option a user passes to accept a cache written for another version (the CLI wires it under this name).
REWRITE_OPTION = "--rewrite-calib-header"


class CalibrationCacheMismatch(ArtifactError):
    """The calibration cache was written for another TensorRT version (or algorithm)."""


@dataclass(frozen=True)
class CalibrationCache:
    path: str
    data: bytes  # what TensorRT reads (header rewritten when asked)
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


def load_calibration_cache(path: str | os.PathLike, installed_version: str, *,
                           rewrite_header: bool = False) -> CalibrationCache:
    """Validate ``path`` against ``installed_version`` (``trt.__version__``); see the module docstring."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise ArtifactError(f"calibration cache {p} not found; run `segdeploy calibrate` first or fix the path")
    cache = read_trt_cache(p)  # ArtifactError for a malformed file
    name = os.path.basename(p)
    if cache.algorithm != ALGORITHM:
        raise CalibrationCacheMismatch(
            f"calibration cache {name} is for algorithm {cache.algorithm}, segdeploy's calibrator is {ALGORITHM}; "
            "re-run `segdeploy calibrate`"
        )
    want = trt_version_code(".".join(installed_version.split(".")[:3]))
    raw = open(p, "rb").read()
    if cache.version_code == want:
        return CalibrationCache(p, raw, want, want, len(cache.scales), None)
    if not rewrite_header:
        raise CalibrationCacheMismatch(
            f"calibration cache {name} was written for TensorRT {version_from_code(cache.version_code)} "
            f"(TRT-{cache.version_code}) but TensorRT {installed_version} is installed (TRT-{want}), which would reject "
            f"it; re-run `segdeploy calibrate --trt-version {'.'.join(installed_version.split('.')[:3])}`, or pass "
            f"{REWRITE_OPTION} to rewrite its header for this build (tensor names must match this TensorRT's parser)"
        )
    first, sep, rest = raw.partition(b"\n")
    data = f"TRT-{want}-{ALGORITHM}".encode() + sep + rest
    return CalibrationCache(p, data, want, cache.version_code, len(cache.scales), cache.version_code)


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
