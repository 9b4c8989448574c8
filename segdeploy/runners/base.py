"""The runner interface shared by every backend (torch, onnxruntime, tensorrt).

Contract
--------
A runner wraps one model. Lifecycle: construct (cheap, validates options) -> :meth:`Runner.open` (loads
the model / creates the session; idempotent) -> :meth:`Runner.infer` any number of times -> :meth:`Runner.close`.
It is also a context manager (``with open_runner(...) as r:``), and ``infer`` opens lazily.

``infer(batch)`` takes a float32 NCHW numpy array and returns float32 logits ``[N, K, H, W]`` as numpy
(raw per-class scores, argmax over axis 1 is the class map). Every call is timed (wall clock around the
backend call, device synchronised where the backend is asynchronous) into ``runner.timings`` (seconds,
one entry per call); :meth:`Runner.timing_summary` reduces them.

Errors: backend failures become :class:`~segdeploy.errors.SegdeployError` subclasses with one-line
messages (ShapeError for inputs the model does not accept, ModelLoadError for unloadable models,
MissingDependencyError for missing optional backends).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from segdeploy.errors import ShapeError


class Runner:
    """Base class: subclasses implement ``_open``, ``_infer`` and ``_close``."""

    kind: str = "base"

    def __init__(self, name: str):
        self.name = name
        self.timings: list[float] = []
        self._is_open = False

    # lifecycle ------------------------------------------------------------------------------------
    def open(self) -> "Runner":
        if not self._is_open:
            self._open()
            self._is_open = True
        return self

    def close(self) -> None:
        if self._is_open:
            self._close()
            self._is_open = False

    @property
    def is_open(self) -> bool:
        return self._is_open

    def __enter__(self) -> "Runner":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # inference ------------------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch (float32 NCHW) -> float32 logits NKHW. Timed into ``self.timings``."""
        if not self._is_open:
            self.open()
        batch = np.asarray(batch)
        if batch.ndim != 4:
            raise ShapeError(f"{self.name}: input must be NCHW (4-D), got shape {batch.shape}")
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        batch = np.ascontiguousarray(batch)
        t0 = time.perf_counter()
        out = self._infer(batch)
        self.timings.append(time.perf_counter() - t0)
        out = np.asarray(out)
        if out.ndim != 4 or out.shape[0] != batch.shape[0]:
            raise ShapeError(
                f"{self.name}: expected logits [N, K, H, W] with N={batch.shape[0]}, got {out.shape}; "
                "the model must output one per-class score map"
            )
        if out.dtype != np.float32:
            out = out.astype(np.float32)
        return out

    def infer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run the model on one input array of any rank and return every output by name (timed like ``infer``).

        For models that do not output one score map, e.g. Mask R-CNN-style detectors (boxes, labels, scores,
        masks). Backends that cannot do this raise UsageError naming the backend.
        """
        if not self._is_open:
            self.open()
        x = np.ascontiguousarray(x, dtype=np.float32)
        t0 = time.perf_counter()
        out = self._infer_outputs(x)
        self.timings.append(time.perf_counter() - t0)
        return out

    def _infer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        from segdeploy.errors import UsageError

        raise UsageError(f"the {self.kind} runner cannot return named outputs; use an .onnx or .engine candidate")

    def timing_summary(self) -> dict[str, Any]:
        """calls, total_s, mean_ms, median_ms, p90_ms, min_ms (None values when never called)."""
        t = np.asarray(self.timings, dtype=np.float64)
        if t.size == 0:
            return {"calls": 0, "total_s": 0.0, "mean_ms": None, "median_ms": None, "p90_ms": None, "min_ms": None}
        return {
            "calls": int(t.size),
            "total_s": float(t.sum()),
            "mean_ms": float(t.mean() * 1e3),
            "median_ms": float(np.median(t) * 1e3),
            "p90_ms": float(np.percentile(t, 90) * 1e3),
            "min_ms": float(t.min() * 1e3),
        }

    def describe(self) -> dict[str, Any]:
        """JSON-able description for reports (kind, name, backend details)."""
        return {"kind": self.kind, "name": self.name}

    # to implement ---------------------------------------------------------------------------------
    def _open(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _infer(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
