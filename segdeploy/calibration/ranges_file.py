"""``ranges.json``: the per-tensor INT8 ranges calibration measured, as segdeploy's own JSON.

``{"format": "segdeploy.ranges", "version": 1, "meta": {...}, "tensors": {name: {"amax": float, "scale": amax/127}}}``.
Raises ArtifactError (one line) for a missing or malformed file.
"""

from __future__ import annotations

import os
from typing import Any

from segdeploy.errors import ArtifactError
from segdeploy.fsutil import atomic_write_json
from segdeploy.trt.calib_cache import QMAX

RANGES_FORMAT = "segdeploy.ranges"


def write_ranges_json(path: str | os.PathLike, ranges: dict[str, float], meta: dict[str, Any] | None = None) -> None:
    """Atomically write ranges as JSON (amax and scale per tensor, plus ``meta``)."""
    doc = {
        "format": RANGES_FORMAT,
        "version": 1,
        "meta": meta or {},
        "tensors": {k: {"amax": float(v), "scale": float(v) / QMAX} for k, v in ranges.items()},
    }
    atomic_write_json(path, doc)


MAX_RANGES_BYTES = 64 << 20  # one entry per tensor: a few hundred KiB for the largest models


def read_ranges_json(path: str | os.PathLike) -> tuple[dict[str, float], dict[str, Any]]:
    """(ranges name -> amax, meta). Raises ArtifactError for a missing or malformed file."""
    from segdeploy.jsonio import read_file

    doc = read_file(path, "ranges file", max_bytes=MAX_RANGES_BYTES, fix="re-run calibration")
    if not isinstance(doc, dict) or doc.get("format") != RANGES_FORMAT or not isinstance(doc.get("tensors"), dict):
        raise ArtifactError(f"{path} is not a segdeploy ranges file; re-run calibration")
    try:
        ranges = {k: float(v["amax"]) for k, v in doc["tensors"].items()}
    except (TypeError, KeyError, ValueError):
        raise ArtifactError(f"{path} has a tensor entry without a numeric amax; re-run calibration") from None
    return ranges, doc.get("meta", {})
