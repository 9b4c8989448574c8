"""Which engines a build makes, from which ONNX: the export directory's manifest + a request -> build jobs.

Contract: ``plan_jobs(view, request) -> JobPlan`` is pure (no file access, no TensorRT). ``view`` is an
:class:`~segdeploy.exportdir.ExportDir` (published) or :class:`~segdeploy.exportdir.Transaction` (staged): its
typed manifest accessors and ``has(name)`` (the file table). Rules (file names from :mod:`segdeploy.vocab`):

============== ============================================ ======================================
precision      built from                                   derived_from (retired when it changes)
============== ============================================ ======================================
fp32           model.onnx; model.trt.onnx when the model    that ONNX
               needs segdeploy's plugins
fp16           model.fp16.onnx                              model.fp16.onnx
int8           model.int8.onnx (explicit Q/DQ)              model.int8.onnx
int8-implicit  model.onnx + model.calib.cache               model.onnx, model.calib.cache
============== ============================================ ======================================

Default (``request.precisions is None``): fp32 plus fp16 / int8 when the directory holds them, plus
int8-implicit with ``request.int8_implicit``; with a DLA core fp32 is left out (DLA runs FP16/INT8 only), and
for a model that needs plugins only fp32 is built (the notes say why). Asking by name for what the directory
lacks raises :class:`~segdeploy.errors.ArtifactError` (run the stage that makes it); asking for FP16/INT8 of a
plugin model raises :class:`~segdeploy.errors.UsageError`: segdeploy maps only the FP32 graph to plugin nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segdeploy.errors import ArtifactError, UsageError
from segdeploy.vocab import CALIB_CACHE, FP16_ONNX, INT8_ONNX, MODEL_ONNX, ONNX_PRECISIONS, TRT_ONNX, Precision


@dataclass(frozen=True)
class Job:
    precision: str
    onnx: str  # file name in the export directory
    derived_from: tuple[str, ...]
    calib_cache: str | None = None  # int8-implicit only
    plugins: bool = False  # the ONNX holds segdeploy plugin nodes

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "onnx": self.onnx, "derived_from": list(self.derived_from),
                "calib_cache": self.calib_cache, "plugins": self.plugins}


@dataclass
class JobPlan:
    jobs: list[Job] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def needs_plugins(self) -> bool:
        return any(j.plugins for j in self.jobs)


def _available(view: Any) -> dict[str, Job]:
    needs = view.needs_plugins
    out: dict[str, Job] = {}
    src = TRT_ONNX if needs else MODEL_ONNX
    if view.has(src):
        out[Precision.FP32] = Job(Precision.FP32, src, (src,), plugins=needs)
    for kind, default_name in ((Precision.FP16, FP16_ONNX), (Precision.INT8, INT8_ONNX)):
        name = view.lowered_file(kind) or default_name
        if view.lowered(kind) and view.has(name):
            out[kind] = Job(kind, name, (name,))
    if view.has(MODEL_ONNX) and view.has(CALIB_CACHE):
        out[Precision.INT8_IMPLICIT] = Job(Precision.INT8_IMPLICIT, MODEL_ONNX, (MODEL_ONNX, CALIB_CACHE), calib_cache=CALIB_CACHE)
    return out


_MAKES = {
    Precision.FP32: "run `segdeploy export` again",
    Precision.FP16: "run `segdeploy precision EXPORT_DIR MODEL_FILE --fp16` (or export with --fp16) first",
    Precision.INT8: "run `segdeploy precision EXPORT_DIR MODEL_FILE --int8 --calib DIR` (or export with --int8) first",
    Precision.INT8_IMPLICIT: "run `segdeploy calibrate EXPORT_DIR --calib DIR` (or export with --int8) first",
}
_NEEDS = {Precision.FP32: MODEL_ONNX, Precision.FP16: FP16_ONNX, Precision.INT8: INT8_ONNX, Precision.INT8_IMPLICIT: CALIB_CACHE}


def plan_jobs(view: Any, request: Any) -> JobPlan:
    """The build jobs for ``request`` (a :class:`~segdeploy.engine.request.BuildRequest`); see the module docstring."""
    avail = _available(view)
    ops = ", ".join(view.plugin_ops) or "plugin ops"
    plan = JobPlan()
    wanted = list(request.precisions) if request.precisions is not None else _default_set(view, avail, request, plan, ops)
    for p in wanted:
        Precision.parse(p, "precision")  # BuildRequest validates; kept for direct callers
        if view.needs_plugins and p != Precision.FP32:
            raise UsageError(
                f"cannot build {p} for this model: it needs segdeploy's TensorRT plugins ({ops}) and segdeploy maps "
                f"only the FP32 graph to plugin nodes (model.trt.onnx), so its {p} ONNX holds ops TensorRT cannot "
                "parse; build --precision fp32"
            )
        if p not in avail:
            raise ArtifactError(f"the export directory holds no {_NEEDS[p]}, which the {p} engine is built from; {_MAKES[p]}")
        plan.jobs.append(avail[p])
    return plan


def _default_set(view: Any, avail: dict[str, Job], request: Any, plan: JobPlan, ops: str) -> list[str]:
    """What is built when no precision is named (see the module docstring); notes go to ``plan``."""
    wanted = [p for p in ONNX_PRECISIONS if p in avail]
    if request.int8_implicit:
        wanted.append(Precision.INT8_IMPLICIT)
    if request.dla_core is not None and Precision.FP32 in wanted:
        wanted.remove(Precision.FP32)
        plan.notes.append("fp32 left out: DLA runs FP16 and INT8 only")
    if view.needs_plugins:
        skipped = [p for p in wanted if p != Precision.FP32]
        if skipped:
            plan.notes.append(f"{', '.join(skipped)} left out: this model needs segdeploy's TensorRT plugins "
                              f"({ops}) and only its FP32 graph is mapped to them (model.trt.onnx)")
        wanted = [p for p in wanted if p == Precision.FP32]
    if not wanted:
        raise UsageError("nothing to build: with --dla-core give --precision fp16 or int8 for a directory that "
                         "holds model.fp16.onnx / model.int8.onnx" if request.dla_core is not None else
                         "nothing to build: the export directory holds no ONNX TensorRT can build")
    return wanted
