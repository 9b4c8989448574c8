"""TensorRT's calibration cache format: writer and reader.

The cache (read by TensorRT <= 10.x implicit INT8 and by ModelOpt to place Q/DQ)::

    TRT-<version>-EntropyCalibration2
    <tensor name>: <8 hex digits>

``<version>`` is 8.x ``major*1000 + minor*100 + patch`` (8.6.2 -> 8602) and 10+ ``major*10000 + minor*100 +
patch`` (10.3 -> 100300); the value is the per-tensor scale ``amax / 127`` as big-endian IEEE-754 float32 bits
(``struct.pack('!f', scale).hex()``). Tensor names are the ONNX tensor names. A tensor with amax 0 gets the
smallest positive normal float32 scale (TensorRT divides by the scale). TensorRT rejects a cache whose
header does not match its version and algorithm, so pick ``trt_version`` for the target device.
Calibration (:mod:`segdeploy.calibration`) writes it; the implicit-INT8 calibrator and the trtexec renderer read it.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

import numpy as np

from segdeploy.errors import ArtifactError, UsageError
from segdeploy.fsutil import atomic_write_text
from segdeploy.trt.versions import DEFAULT_CALIB_CACHE_VERSION, trt_version_code

ALGORITHM = "EntropyCalibration2"
QMAX = 127.0
_MIN_SCALE = float(np.finfo(np.float32).tiny)
_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")


def scale_hex(amax: float) -> str:
    scale = float(amax) / QMAX
    if not np.isfinite(scale) or scale < 0:
        raise UsageError(f"amax {amax} is not a finite non-negative number")
    scale = max(scale, _MIN_SCALE)
    return struct.pack("!f", scale).hex()


def trt_cache_text(ranges: dict[str, float], trt_version: str | int = DEFAULT_CALIB_CACHE_VERSION) -> str:
    lines = [f"TRT-{trt_version_code(trt_version)}-{ALGORITHM}"]
    for name, amax in ranges.items():
        if "\n" in name:
            raise UsageError(f"tensor name {name!r} contains a newline; it cannot go in a TensorRT cache")
        lines.append(f"{name}: {scale_hex(amax)}")
    return "\n".join(lines) + "\n"


def write_trt_cache(path: str | os.PathLike, ranges: dict[str, float], trt_version: str | int = DEFAULT_CALIB_CACHE_VERSION) -> None:
    """Atomically write a TensorRT calibration cache for ``ranges`` (tensor name -> amax)."""
    atomic_write_text(path, trt_cache_text(ranges, trt_version))


@dataclass(frozen=True)
class TrtCache:
    version_code: int
    algorithm: str
    ranges: dict[str, float]  # name -> amax (= scale * 127)
    scales: dict[str, float]


def read_trt_cache(path: str | os.PathLike) -> TrtCache:
    """Parse a TensorRT calibration cache. Raises ArtifactError naming the bad line."""
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as e:
        raise ArtifactError(f"cannot read calibration cache {path}: {e}") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ArtifactError(f"calibration cache {path} is empty; re-run calibration")
    m = _HEADER.match(lines[0].strip())
    if not m:
        raise ArtifactError(f"calibration cache {path} has no TRT-<version>-<algorithm> header (got {lines[0][:60]!r})")
    scales: dict[str, float] = {}
    for no, ln in enumerate(lines[1:], start=2):
        name, sep, hx = ln.rpartition(":")
        hx = hx.strip()
        if not sep or not re.fullmatch(r"[0-9a-fA-F]{8}", hx):
            raise ArtifactError(f"calibration cache {path} line {no} is not '<tensor>: <8 hex digits>': {ln[:80]!r}")
        scales[name] = struct.unpack("!f", bytes.fromhex(hx))[0]
    return TrtCache(int(m.group(1)), m.group(2), {k: v * QMAX for k, v in scales.items()}, scales)
