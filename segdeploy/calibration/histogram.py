"""Per-tensor streaming statistics: the exact running max of |x|, and the |x| histogram with exact re-binning.

Contract
--------
:class:`TensorRange` -- the exact running max of ``|x|`` (``absmax``, a float32 value as a Python float)
and the element count. Enough for the ``max`` method and the FP16 overflow check.

:class:`TensorHistogram` (a TensorRange) -- histogram of ``|x|`` over ``[0, R)`` with ``num_bins`` bins (2048
like TensorRT) where ``R`` is always a power of two strictly above the running max. When a batch exceeds
``R`` the range grows by ``2**k`` and every ``2**k`` adjacent bins merge into one: because bin index =
``floor(|x| * n / R)`` with power-of-two ``n / R`` (exact in float32), the merged histogram is bit-identical
to a one-shot histogram of all data over the final range (tested).

A batch is folded in two steps so the max can come from anywhere (ONNX Runtime's in-graph reductions, see
probes.py): :meth:`TensorRange.observe` (max and count, grows the range) then, for histograms,
:func:`count_bins` with :attr:`TensorHistogram.bin_scale` and :meth:`TensorHistogram.add_counts`.
:meth:`TensorRange.update` does both from an array (raises :class:`NonFiniteError`, nothing folded, for NaN/Inf).

:func:`count_bins` walks the array in cache-sized chunks with preallocated scratch (``|x|``, scale, truncate,
``bincount``: no array-sized temporaries); :class:`Binner` runs it on several threads (NumPy releases the
GIL in these loops) with one scratch per thread made up front, and folds the counts in the caller's thread.
"""

from __future__ import annotations

import math
import os
import queue
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from segdeploy.errors import UsageError

CHUNK = 1 << 18  # elements per inner step: 1 MiB of float32 + 2 MiB of indices stay in the CPU cache
PIECE = 4 * CHUNK  # elements per thread-pool task


class NonFiniteError(ValueError):
    """A NaN or Inf reached a statistic; ``args[0]`` is "NaN" or "Inf"."""


def batch_absmax(x: np.ndarray) -> float:
    """max |x| of a float32 array as a Python float; raises NonFiniteError for NaN/Inf (0.0 when empty)."""
    if x.size == 0:
        return 0.0
    hi, lo = float(x.max()), float(x.min())  # max/min propagate NaN
    if math.isnan(hi) or math.isnan(lo):
        raise NonFiniteError("NaN")
    m = max(hi, -lo)
    if not math.isfinite(m):
        raise NonFiniteError("Inf")
    return m


class TensorRange:
    """Running max of |x| and element count (see module docstring)."""

    __slots__ = ("absmax", "count")

    statistic = "absmax"  # the name of this statistic in the cache key and the manifest
    histogram = False

    def __init__(self) -> None:
        self.absmax = 0.0
        self.count = 0

    def observe(self, absmax: float, count: int) -> None:
        """Fold one batch's max |x| (finite, >= 0) and element count."""
        self.count += int(count)
        if absmax > self.absmax:
            self.absmax = float(absmax)

    def update(self, x: np.ndarray) -> None:
        """Fold one array in. Raises NonFiniteError (nothing folded) when it holds a NaN or Inf."""
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return
        self.observe(batch_absmax(x), x.size)

    def merge(self, other: "TensorRange") -> None:
        self.observe(other.absmax, other.count)

    def copy(self) -> "TensorRange":
        t = TensorRange()
        t.absmax, t.count = self.absmax, self.count
        return t


class TensorHistogram(TensorRange):
    """Streaming histogram of |x| with exact power-of-two re-binning (see module docstring)."""

    __slots__ = ("num_bins", "hist", "range_max")

    statistic = "histogram"
    histogram = True

    def __init__(self, num_bins: int = 2048):
        if num_bins < 2 or num_bins & (num_bins - 1):
            raise UsageError(f"histogram bins must be a power of two >= 2, got {num_bins}")
        super().__init__()
        self.num_bins = num_bins
        self.hist = np.zeros(num_bins, dtype=np.int64)
        self.range_max = 0.0  # R: power of two > absmax (0 while only zeros were seen)

    @property
    def bin_width(self) -> float:
        return self.range_max / self.num_bins if self.range_max else 0.0

    @property
    def edges(self) -> np.ndarray:
        return np.arange(self.num_bins + 1, dtype=np.float64) * self.bin_width

    @property
    def bin_scale(self) -> np.float32 | None:
        """``n / R`` in float32 (exact: a power of two); None while only zeros were seen (all go to bin 0)."""
        return np.float32(self.num_bins / self.range_max) if self.range_max else None

    @staticmethod
    def _range_for(m: float) -> float:
        # smallest power of two strictly greater than m (m > 0)
        return math.ldexp(1.0, math.frexp(m)[1])

    def _grow(self, new_range: float) -> None:
        if self.range_max == 0.0:
            self.range_max = new_range  # only zeros so far: they stay in bin 0
            return
        f = int(round(new_range / self.range_max))
        if f <= 1:
            return
        n = self.num_bins
        merged = np.zeros(n, dtype=np.int64)
        if f >= n:
            merged[0] = self.hist.sum()
        else:
            merged[: n // f] = self.hist.reshape(n // f, f).sum(axis=1)
        self.hist = merged
        self.range_max = new_range

    def observe(self, absmax: float, count: int) -> None:
        """Fold one batch's max and count; grows the range first. Then bin the batch with :attr:`bin_scale`
        (:func:`count_bins` + :meth:`add_counts`), or, while :attr:`bin_scale` is None, :meth:`add_zeros`."""
        super().observe(absmax, count)
        if absmax > 0.0 and absmax >= self.range_max:
            self._grow(self._range_for(absmax))

    def add_counts(self, counts: np.ndarray) -> None:
        self.hist += counts

    def add_zeros(self, count: int) -> None:
        self.hist[0] += int(count)

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return
        self.observe(batch_absmax(x), x.size)
        scale = self.bin_scale
        if scale is None:
            self.add_zeros(x.size)
        else:
            self.add_counts(count_bins(x, scale, self.num_bins))

    def merge(self, other: "TensorHistogram") -> None:
        """Add another histogram of the same bin count (exact)."""
        if not isinstance(other, TensorHistogram) or other.num_bins != self.num_bins:
            raise UsageError("cannot merge histograms with different bin counts")
        r = max(self.range_max, other.range_max)
        o = other.copy()
        if r:
            self._grow(r)
            o._grow(r)
        self.hist += o.hist
        self.absmax = max(self.absmax, other.absmax)
        self.count += other.count

    def copy(self) -> "TensorHistogram":
        t = TensorHistogram(self.num_bins)
        t.hist = self.hist.copy()
        t.range_max, t.absmax, t.count = self.range_max, self.absmax, self.count
        return t


class Scratch:
    """Buffers for :func:`count_bins`: ``size`` float32 values and their bin indices."""

    def __init__(self, size: int = CHUNK):
        self.values = np.empty(size, np.float32)
        self.index = np.empty(size, np.intp)


def count_bins(flat: np.ndarray, scale: np.float32, num_bins: int, scratch: Scratch | None = None) -> np.ndarray:
    """Counts of ``floor(|x| * scale)`` over a 1-D float32 array (every index must be < ``num_bins``)."""
    s = scratch or Scratch(min(CHUNK, flat.size))
    step = s.values.size
    counts = np.zeros(num_bins, np.int64)
    for start in range(0, flat.size, step):
        part = flat[start:start + step]
        v, i = s.values[: part.size], s.index[: part.size]
        np.abs(part, out=v)
        np.multiply(v, scale, out=v)  # exact: scale is a power of two
        np.copyto(i, v, casting="unsafe")  # truncation = floor for |x| >= 0
        counts += np.bincount(i, minlength=num_bins)
    return counts


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Binner:
    """Bins arrays into their histograms on ``workers`` threads; :meth:`finish` folds the counts.

    ``add(hist, flat)`` after ``hist.observe(...)`` for this batch (the scale is read then); ``finish()``
    before the next batch observes (a range may grow). Use as a context manager (the pool is shut down).
    """

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="segdeploy-bins") if self.workers > 1 else None
        self._pending: list[tuple[TensorHistogram, Future]] = []
        # one scratch per worker, made up front: memory does not depend on how tasks land on threads
        self._scratch: queue.SimpleQueue[Scratch] = queue.SimpleQueue()
        for _ in range(self.workers):
            self._scratch.put(Scratch())

    def _count(self, flat: np.ndarray, scale: np.float32, num_bins: int) -> np.ndarray:
        scratch = self._scratch.get()
        try:
            return count_bins(flat, scale, num_bins, scratch)
        finally:
            self._scratch.put(scratch)

    def add(self, hist: TensorHistogram, flat: np.ndarray) -> None:
        scale = hist.bin_scale
        if scale is None:
            hist.add_zeros(flat.size)
            return
        if self._pool is None:
            hist.add_counts(self._count(flat, scale, hist.num_bins))
            return
        for start in range(0, flat.size, PIECE):
            fut = self._pool.submit(self._count, flat[start:start + PIECE], scale, hist.num_bins)
            self._pending.append((hist, fut))

    def finish(self) -> None:
        pending, self._pending = self._pending, []
        for hist, fut in pending:
            hist.add_counts(fut.result())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending = []

    def __enter__(self) -> "Binner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
