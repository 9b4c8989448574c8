"""Runners: one small interface over torch, onnxruntime and tensorrt (see :mod:`segdeploy.runners.base`).

``open_runner(target, kind=None, options=None)`` picks the backend:

* an ``nn.Module`` -> :class:`~segdeploy.runners.torch.TorchRunner`;
* a path ending ``.onnx`` -> :class:`~segdeploy.runners.onnxruntime.OrtRunner`;
* ``.engine`` / ``.plan`` / ``.trt`` -> :class:`~segdeploy.runners.tensorrt.TensorRTRunner`;
* any other path (``.pt2``, ``.pt``, ``.pth``, ``.ts`` ...) -> TorchRunner via ``segdeploy.load``;
* ``kind`` ("torch", "onnxruntime", "tensorrt") overrides the guess.

``options`` is the backend's frozen options dataclass (TorchOptions / OrtOptions / TensorRTOptions);
passing another backend's options is a UsageError. The runner is returned unopened (``open`` is lazy
in ``infer``; use it as a context manager to close it).
"""

from __future__ import annotations

import os
from typing import Any

from segdeploy.errors import UsageError
from segdeploy.runners.base import Runner

KINDS = ("torch", "onnxruntime", "tensorrt")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def guess_kind(target: Any) -> str:
    """The runner kind for a module or path (see module docstring)."""
    if not isinstance(target, (str, os.PathLike)):
        return "torch"
    suffix = os.path.splitext(str(target))[1].lower()
    if suffix == ".onnx":
        return "onnxruntime"
    if suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    return "torch"


def open_runner(target: Any, kind: str | None = None, options: Any = None) -> Runner:
    """Make the runner for ``target`` (unopened). Raises UsageError for unknown kinds or mismatched options."""
    kind = kind or guess_kind(target)
    if kind not in KINDS:
        raise UsageError(f"unknown runner kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "torch":
        from segdeploy.runners.torch import TorchOptions, TorchRunner

        _check_options(options, TorchOptions, kind)
        return TorchRunner(target, options)
    if kind == "onnxruntime":
        from segdeploy.runners.onnxruntime import OrtOptions, OrtRunner

        _check_options(options, OrtOptions, kind)
        if not isinstance(target, (str, os.PathLike)):
            raise UsageError("the onnxruntime runner needs a path to an .onnx file")
        return OrtRunner(target, options)
    from segdeploy.runners.tensorrt import TensorRTOptions, TensorRTRunner

    _check_options(options, TensorRTOptions, kind)
    return TensorRTRunner(target, options)


def _check_options(options: Any, cls: type, kind: str) -> None:
    if options is not None and not isinstance(options, cls):
        raise UsageError(f"{kind} runner takes {cls.__name__}, got {type(options).__name__}")


__all__ = ["KINDS", "Runner", "guess_kind", "open_runner"]
