"""Statistics cache: collected statistics keyed by everything that determines them.

Contract
--------
:func:`statistics_key` hashes (format version, model SHA-256, data SHA-256 = hash of the sampled files'
bytes in feed order, the preprocessing dict, the shape profile, calibration size, seed, grayscale policy,
what was collected (``statistic``: "histogram" with its bin count, or "absmax" -- the max |x| only, for the
``max`` method), tensor selection). :class:`StatsCache` stores one ``<key>.npz`` per key with the key's
fields inside; :meth:`StatsCache.load` returns the statistics only when the stored fields equal the
requested ones (a renamed or hand-copied file is never reused for another model, data set or statistic),
``None`` otherwise (miss, corrupt or foreign file -- or an entry that is not a regular file reached without a link: a
FIFO or a planted link is a miss, never a hang). Reads and saves go through :mod:`segdeploy.usercache` (safefs:
``O_NOFOLLOW``, regular files only, new file + rename). An unwritable cache
directory raises :class:`~segdeploy.errors.ArtifactError` at construction, before any work is done.
Another method or exclusion list only recomputes ranges from the cached statistics; which statistics serve
a method is decided by :func:`serving_statistics` (histograms serve every method, absmax only ``max``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from segdeploy.calibration.histogram import TensorHistogram, TensorRange
from segdeploy.errors import ArtifactError
from segdeploy.fsutil import ensure_writable_dir
from segdeploy.usercache import read_entry, write_entry

CACHE_FORMAT = 3  # 2: entries say which statistic they hold; 3: the default tensor selection includes tensors after a
# Resize whose sizes are computed (format-2 entries lack them)
MAX_ENTRY_BYTES = 1 << 30  # histograms of every tensor; far above any real entry
STATISTICS = (TensorHistogram.statistic, TensorRange.statistic)


def serving_statistics(needs_histogram: bool) -> tuple[str, ...]:
    """The statistics that can serve a method, cheapest to collect first: a histogram method needs histograms;
    ``max`` is served by the absmax-only statistic or by histograms (they hold the same exact max)."""
    if needs_histogram:
        return (TensorHistogram.statistic,)
    return (TensorRange.statistic, TensorHistogram.statistic)


def key_fields(
    model_sha256: str,
    data_sha256: str,
    preprocess: dict,
    size: int,
    seed: int,
    num_bins: int,
    tensors: list[str] | tuple[str, ...] | None,
    profile: dict | None = None,
    gray: str = "refuse",
    statistic: str = TensorHistogram.statistic,
) -> dict[str, Any]:
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    pre = {k: v for k, v in preprocess.items() if k != "formula"}
    return {
        "format": CACHE_FORMAT,
        "model_sha256": model_sha256,
        "data_sha256": data_sha256,
        "preprocess": pre,
        "profile": profile,
        "size": int(size),
        "seed": int(seed),
        "gray": gray,
        "statistic": statistic,
        "num_bins": int(num_bins) if statistic == TensorHistogram.statistic else None,
        "tensors": None if tensors is None else list(tensors),
    }


def statistics_key(model_sha256: str, data_sha256: str, preprocess: dict, size: int, seed: int, num_bins: int,
                   tensors=None, profile: dict | None = None, gray: str = "refuse",
                   statistic: str = TensorHistogram.statistic) -> str:
    """Hex key of the statistics cache entry."""
    fields = key_fields(model_sha256, data_sha256, preprocess, size, seed, num_bins, tensors, profile, gray, statistic)
    return key_of(fields)


def key_of(fields: dict[str, Any]) -> str:
    """Hex key of :func:`key_fields`' result."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class StatsCache:
    """A directory of cached :class:`~segdeploy.calibration.collect.Statistics`."""

    def __init__(self, cache_dir: str | os.PathLike):
        try:
            self.dir = ensure_writable_dir(cache_dir)
        except ArtifactError:
            raise ArtifactError(
                f"calibration cache directory {cache_dir} cannot be created or written; "
                "fix its permissions or pass another --cache-dir"
            ) from None

    def path(self, key: str) -> Path:
        return self.dir / f"stats-{key[:32]}.npz"

    def load(self, key: str, fields: dict[str, Any]):
        """The cached Statistics for ``key`` when its stored fields equal ``fields``; else None."""
        from segdeploy.calibration.collect import Statistics

        try:
            raw = read_entry(self.dir, self.path(key).name, limit=MAX_ENTRY_BYTES)
        except (OSError, ArtifactError):
            return None  # unreadable, or not a regular file: a miss (the save replaces it)
        if raw is None:
            return None
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                hist = fields.get("statistic") == TensorHistogram.statistic
                names = ("names", "absmax", "count") + (("hist", "range_max") if hist else ())
                arrs = {k: z[k] for k in names}
        except Exception:
            return None  # corrupt or foreign: treated as a miss and overwritten on save
        if meta.get("key") != key or meta.get("fields") != json.loads(json.dumps(fields)):
            return None
        return Statistics.from_arrays(arrs, images=int(meta.get("images", 0)), meta=meta)

    def save(self, key: str, fields: dict[str, Any], stats) -> Path:
        """Atomically write ``stats`` under ``key``; returns the file path."""
        meta = {"key": key, "fields": fields, "images": stats.images}
        buf = io.BytesIO()
        np.savez_compressed(buf, meta=np.array(json.dumps(meta, sort_keys=True)), **stats.to_arrays())
        return write_entry(self.dir, self.path(key).name, buf.getvalue())
