"""Memory probes for the benchmark: resident set size (RSS) and device memory, with a peak sampler.

* :func:`rss_bytes` -- this process's current RSS (Linux ``/proc/self/statm``; elsewhere
  ``resource.getrusage``'s peak, flagged by :func:`rss_is_peak_only`), or None when unknown.
* :func:`device_used_bytes` -- memory in use on the current CUDA device as the driver reports it
  (``torch.cuda.mem_get_info``: total - free; it counts every allocator in the process, caching allocators'
  reserves and other processes too), or None without a CUDA device. Call :func:`init_device_probe` once
  before the first target loads so that torch's own CUDA context is not charged to that target.
* :class:`PeakSampler` -- a context manager sampling both every ``interval`` seconds in a daemon thread;
  ``peak_rss_growth`` / ``peak_device_growth`` are the maxima minus the values at entry, ``rss_growth`` /
  ``device_growth`` the values at exit minus those at entry. Sampling misses spikes shorter than the
  interval; the values at entry and exit are always sampled.

Nothing here changes process state (no watermark resets, no allocator trimming).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """Current resident set size in bytes (None when the platform cannot tell)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak) * (1 if sys.platform == "darwin" else 1024)
    except (ImportError, OSError):
        return None


def rss_is_peak_only() -> bool:
    """True where :func:`rss_bytes` can only return the lifetime peak (no /proc)."""
    return not os.path.exists("/proc/self/statm")


_device_ok = False


def init_device_probe() -> bool:
    """Initialise the device probe (torch's CUDA context) once. Returns whether device memory is measurable."""
    global _device_ok
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.mem_get_info()
            _device_ok = True
    except Exception:  # a broken CUDA setup: device memory is simply not reported
        _device_ok = False
    return _device_ok


def device_used_bytes() -> int | None:
    """Bytes in use on the current CUDA device (driver view), None when not initialised/available."""
    if not _device_ok:
        return None
    import torch

    try:
        free, total = torch.cuda.mem_get_info()
    except Exception:
        return None
    return int(total - free)


class PeakSampler:
    """Sample RSS (and device memory) in a background thread between ``__enter__`` and ``__exit__``."""

    def __init__(self, interval: float = 0.002, device: bool = False):
        self.interval = interval
        self.device = device
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rss0 = self.rss1 = self.rss_peak = None
        self.dev0 = self.dev1 = self.dev_peak = None

    def _sample(self) -> None:
        r = rss_bytes()
        if r is not None:
            self.rss_peak = r if self.rss_peak is None else max(self.rss_peak, r)
        if self.device:
            d = device_used_bytes()
            if d is not None:
                self.dev_peak = d if self.dev_peak is None else max(self.dev_peak, d)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "PeakSampler":
        self.rss0 = rss_bytes()
        self.dev0 = device_used_bytes() if self.device else None
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="segdeploy-bench-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self.rss1 = rss_bytes()
        self.dev1 = device_used_bytes() if self.device else None

    @staticmethod
    def _diff(a: int | None, b: int | None) -> int | None:
        return None if a is None or b is None else int(a - b)

    @property
    def rss_growth(self) -> int | None:
        return self._diff(self.rss1, self.rss0)

    @property
    def peak_rss_growth(self) -> int | None:
        return self._diff(self.rss_peak, self.rss0)

    @property
    def device_growth(self) -> int | None:
        return self._diff(self.dev1, self.dev0)

    @property
    def peak_device_growth(self) -> int | None:
        return self._diff(self.dev_peak, self.dev0)
