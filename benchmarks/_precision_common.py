"""Helpers shared by the precision comparison benchmarks (precision_placement.py, precision_fp16.py)."""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np
import onnxruntime as ort

LEVELS = {"disable_all": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "enable_all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


def run(path, x, level):
    """First output of the ONNX model at ``path`` on ``x``, at ORT graph optimisation ``level``."""
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0].astype(np.float32)


@contextlib.contextmanager
def stdout_to_stderr():
    """Third-party loggers bound to stdout (ModelOpt) must not corrupt the JSON on stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield saved
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
