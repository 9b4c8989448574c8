"""Which engines a build makes, from which ONNX: the export directory's manifest + a request -> build jobs.

Contract: ``plan_jobs(manifest, listed, request) -> JobPlan`` is pure (no file access, no TensorRT). ``listed``
holds the names in the file table (published or staged). Rules (file names from :mod:`segdeploy.exportdir`):

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

from collections.abc import Collection
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


def plugin_ops(manifest: dict[str, Any]) -> list[str]:
    """The plugin op names the manifest's ``tensorrt_plugins`` section records (empty when none)."""
    sec = manifest.get("tensorrt_plugins") or {}
    return sorted({str(n.get("plugin") or n.get("op_type") or "?") for n in sec.get("nodes") or []
                   if isinstance(n, dict)})


def _available(manifest: dict[str, Any], listed: Collection[str]) -> dict[str, Job]:
    needs = bool(manifest.get("tensorrt_plugins"))
    out: dict[str, Job] = {}
    src = TRT_ONNX if needs else MODEL_ONNX
    if src in listed:
        out[Precision.FP32] = Job(Precision.FP32, src, (src,), plugins=needs)
    prec = manifest.get("precision") or {}
    for kind, default_name in ((Precision.FP16, FP16_ONNX), (Precision.INT8, INT8_ONNX)):
        name = (prec.get(kind) or {}).get("file") or default_name
        if prec.get(kind) and name in listed:
            out[kind] = Job(kind, name, (name,))
    if MODEL_ONNX in listed and CALIB_CACHE in listed:
        out[Precision.INT8_IMPLICIT] = Job(Precision.INT8_IMPLICIT, MODEL_ONNX, (MODEL_ONNX, CALIB_CACHE), calib_cache=CALIB_CACHE)
    return out


_MAKES = {
    Precision.FP32: "run `segdeploy export` again",
    Precision.FP16: "run `segdeploy precision EXPORT_DIR MODEL_FILE --fp16` (or export with --fp16) first",
    Precision.INT8: "run `segdeploy precision EXPORT_DIR MODEL_FILE --int8 --calib DIR` (or export with --int8) first",
    Precision.INT8_IMPLICIT: "run `segdeploy calibrate EXPORT_DIR --calib DIR` (or export with --int8) first",
}
_NEEDS = {Precision.FP32: MODEL_ONNX, Precision.FP16: FP16_ONNX, Precision.INT8: INT8_ONNX, Precision.INT8_IMPLICIT: CALIB_CACHE}


def plan_jobs(manifest: dict[str, Any], listed: Collection[str], request: Any) -> JobPlan:
    """The build jobs for ``request`` (a :class:`~segdeploy.engine.request.BuildRequest`); see the module docstring."""
    avail = _available(manifest, listed)
    needs_plugins = bool(manifest.get("tensorrt_plugins"))
    ops = ", ".join(plugin_ops(manifest)) or "plugin ops"
    plan = JobPlan()
    explicit = request.precisions
    if explicit is None:
        wanted = [p for p in ONNX_PRECISIONS if p in avail]
        if request.int8_implicit:
            wanted.append(Precision.INT8_IMPLICIT)
        if request.dla_core is not None and Precision.FP32 in wanted:
            wanted.remove(Precision.FP32)
            plan.notes.append("fp32 left out: DLA runs FP16 and INT8 only")
        if needs_plugins:
            skipped = [p for p in wanted if p != Precision.FP32]
            if skipped:
                plan.notes.append(f"{', '.join(skipped)} left out: this model needs segdeploy's TensorRT plugins "
                                  f"({ops}) and only its FP32 graph is mapped to them (model.trt.onnx)")
            wanted = [p for p in wanted if p == Precision.FP32]
        if not wanted:
            raise UsageError("nothing to build: with --dla-core give --precision fp16 or int8 for a directory that "
                             "holds model.fp16.onnx / model.int8.onnx" if request.dla_core is not None else
                             "nothing to build: the export directory holds no ONNX TensorRT can build")
    else:
        wanted = list(explicit)
    for p in wanted:
        Precision.parse(p, "precision")  # BuildRequest validates; kept for direct callers
        if needs_plugins and p != Precision.FP32:
            raise UsageError(
                f"cannot build {p} for this model: it needs segdeploy's TensorRT plugins ({ops}) and segdeploy maps "
                f"only the FP32 graph to plugin nodes (model.trt.onnx), so its {p} ONNX holds ops TensorRT cannot "
                "parse; build --precision fp32"
            )
        if p not in avail:
            raise ArtifactError(f"the export directory holds no {_NEEDS[p]}, which the {p} engine is built from; {_MAKES[p]}")
        plan.jobs.append(avail[p])
    return plan
