"""The build stage: TensorRT engines for an export directory (`segdeploy build`, `segdeploy export --engine`).

Modules (one job each)
----------------------
``request``      :class:`BuildRequest` -- the options, validated cheaply (before any stage runs)
``cli_options``  the engine-build option group (``@engine_build_options()`` -> :class:`BuildArgs` -> BuildRequest)
``jobs``         which engine is built from which ONNX (pure, from the manifest accessors)
``stage``        ``run(txn, options, progress)`` -> :class:`BuildStageResult`: engines staged and listed in the
                 manifest where TensorRT is importable, else the trtexec commands (:func:`describe_directory` for
                 a published directory); `segdeploy build` on a directory is :func:`segdeploy.pipeline.build_directory`
``verify``       the final parity check of each built engine against the PyTorch reference (pipeline only)
``cli``          ``segdeploy build EXPORT_DIR ...``

Nothing here imports TensorRT at import time. The TensorRT calls themselves live in :mod:`segdeploy.trt`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BuildRequest": "segdeploy.engine.request",
    "BuildStageResult": "segdeploy.engine.stage",
    "describe_directory": "segdeploy.engine.stage",
    "run": "segdeploy.engine.stage",
    "plan_jobs": "segdeploy.engine.jobs",
    "check_engines": "segdeploy.engine.verify",
}

__all__ = ["BuildRequest", "BuildStageResult", "check_engines", "describe_directory", "plan_jobs", "run"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'segdeploy.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
