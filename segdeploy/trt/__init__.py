"""segdeploy's TensorRT layer: thin, capability-detected, importable without TensorRT.

Contract
--------
* Nothing here imports ``tensorrt`` at import time; each entry point imports it when called and raises
  :class:`~segdeploy.errors.MissingDependencyError` (with the install hint) when it is absent. The names below
  are loaded lazily from their modules on first access.
* Features are decided from what the imported module exposes (:mod:`~segdeploy.trt.capabilities`: attribute and
  enum presence), never from version numbers or persisted enum integers (they were renumbered between majors).
  ``trt.__version__`` is used only for messages, plan-version checks and calibration-cache headers.
* Errors a user can cause are one-line :class:`~segdeploy.errors.SegdeployError` subclasses.

Modules (one job each)
----------------------
``capabilities``  probe a module -> frozen :class:`Capabilities`
``recipe``        precision + :class:`EngineBuildOptions` -> :class:`Recipe` for the installed version
``builder``       :func:`build_engine` -> :class:`BuildResult` (plain plan bytes + typed build facts; ``to_dict()``)
``logger``        capturing ILogger (failures as one line, full log for verbose)
``timing_cache``  timing-cache file keyed by TensorRT version + GPU (atomic, foreign/corrupt ignored)
``calibrator``    calibration-cache header check + cache-only IInt8EntropyCalibrator2 (TensorRT <= 10.x)
``plan``          read a plan header without TensorRT; identify other files; :func:`check_plan_version`
``trtexec``       the equivalent trtexec command per TARGET version (8.6 | 10.3 | 10.x | 11.x)
``versions``      the target table (JetPack <-> TensorRT, cache version codes)
``cli``           ``segdeploy inspect FILE [--json]``

The engine runner is :class:`segdeploy.runners.tensorrt.TensorRTRunner`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Capabilities": "segdeploy.trt.capabilities",
    "probe": "segdeploy.trt.capabilities",
    "EngineBuildOptions": "segdeploy.trt.recipe",
    "Recipe": "segdeploy.trt.recipe",
    "UnsupportedByTensorRT": "segdeploy.trt.recipe",
    "make_recipe": "segdeploy.trt.recipe",
    "build_engine": "segdeploy.trt.builder",
    "BuildResult": "segdeploy.trt.builder",
    "EngineBuildError": "segdeploy.trt.builder",
    "PlanHeader": "segdeploy.trt.plan",
    "NotAPlanError": "segdeploy.trt.plan",
    "PlanVersionError": "segdeploy.trt.plan",
    "read_plan_header": "segdeploy.trt.plan",
    "parse_plan_header": "segdeploy.trt.plan",
    "identify_file": "segdeploy.trt.plan",
    "check_plan_version": "segdeploy.trt.plan",
    "trtexec_command": "segdeploy.trt.trtexec",
    "trtexec_commands": "segdeploy.trt.trtexec",
    "TrtexecCommand": "segdeploy.trt.trtexec",
    "resolve_target": "segdeploy.trt.versions",
    "TARGETS": "segdeploy.trt.versions",
    "load_calibration_cache": "segdeploy.trt.calibrator",
    "CalibrationCacheMismatch": "segdeploy.trt.calibrator",
    "TimingCacheFile": "segdeploy.trt.timing_cache",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'segdeploy.trt' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
