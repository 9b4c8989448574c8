"""The final check of a release pipeline: each built engine against the PyTorch reference, on the validation split.

Contract
--------
``check_engines(txn, build, reference, precision_options, progress, *, open_candidate=None) -> list[dict]``

* ``build``: the :class:`~segdeploy.engine.stage.BuildStageResult` of a build staged in ``txn``;
  ``reference``: the PyTorch module the export came from; ``precision_options``: the precision stage's options
  (they name the validation split and the budget ``max_miou_drop``).
* Runs :func:`segdeploy.parity.check.run_check` (parity's check library, a lower layer) for every engine -- the
  reference on the CPU (as the precision stage measures it), the engine with
  :class:`~segdeploy.runners.tensorrt.TensorRTRunner` -- and records the result under ``parity`` (images,
  reference/engine mIoU, drop in points, pixel agreement, budget, passed) twice, never through a shared dict: in
  the staged manifest (``txn.put_engine`` with the updated entry) and in the result
  (:meth:`BuildStageResult.replace_engine`). Returns those records.
* Nothing to check (no engine built, no validation split or reference) -> ``[]`` and a note; no CUDA GPU
  visible -> each entry's ``parity`` says why it was not checked (``checked: false``), never shown as passed.
* A drop beyond ``max_miou_drop`` on any engine raises :class:`~segdeploy.errors.GateError` (exit 3) after every
  engine was measured; the caller publishes nothing.

``open_candidate(engine_path, entry) -> Runner`` replaces the TensorRT runner (the CPU tests use it to drive the
bookkeeping and the gate with a real ONNX Runtime runner; no engine is run there).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segdeploy.errors import GateError
from segdeploy.progress import Progress, as_progress
from segdeploy.vocab import split_dirs


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def _record(report: dict[str, Any], gate: Any, val_dir: str, budget: float | None) -> dict[str, Any]:
    m = report["metrics"]
    labelled = report["mode"] == "labelled"
    agree = m["agreement"]
    if labelled:
        drop = (m.get("drift") or {}).get("miou_points")
    else:
        drop = None if agree.get("miou") is None else 100.0 * (1.0 - agree["miou"])
    return {
        "checked": True, "reference": "PyTorch (CPU)", "dataset": str(val_dir), "mode": report["mode"],
        "images": report["dataset"]["num_evaluated"],
        "reference_miou": (m.get("reference") or {}).get("miou"), "engine_miou": (m.get("candidate") or {}).get("miou"),
        "miou_drop_points": None if drop is None else round(float(drop), 4),
        "pixel_agreement": agree.get("pixel_accuracy"), "max_miou_drop": budget,
        "passed": gate.passed, "failures": list(gate.failures),
    }


def check_engines(txn: Any, build: Any, reference: Any, precision_options: Any,
                  progress: Progress | None = None, *,
                  open_candidate: Callable[[Any, dict[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
    """Parity of every built engine vs ``reference`` (see the module docstring)."""
    from segdeploy.datasets import open_dataset

    progress = as_progress(progress)
    if not build.built or not build.engines:
        return []
    popts = precision_options
    val_dir = popts.validation_dir()[0] if popts is not None else None
    if val_dir is None or reference is None:
        build.notes.append("engines not compared with PyTorch: no validation split (--val) or reference in this run")
        return []
    if open_candidate is None and not _cuda_available():
        why = "no CUDA GPU visible to torch, which the TensorRT runner needs for its buffers"
        for entry in list(build.engines):
            _record_parity(txn, build, entry, {"checked": False, "reason": why})
        build.notes.append(f"engines not compared with PyTorch: {why}")
        return []
    ds = open_dataset(*split_dirs(Path(val_dir)))
    doc = txn.staged_manifest()
    budget = popts.max_miou_drop
    records, failures = [], []
    for entry in list(build.engines):
        candidate = _candidate(txn, build, entry, open_candidate)
        progress.step(f"check: {entry['file']} vs PyTorch on {val_dir}")
        rec = _check_one(reference, candidate, ds, doc, val_dir, budget)
        _record_parity(txn, build, entry, rec)
        records.append(rec)
        if rec["passed"] is False:
            failures.append(f"{entry['file']}: {'; '.join(rec['failures'])}")
        progress.step(f"check: {entry['file']} mIoU drop {rec['miou_drop_points']} points on {rec['images']} images")
    if failures:
        raise GateError(f"engine accuracy gate: {' / '.join(failures)} (vs PyTorch on {records[0]['images']} "
                        f"validation images); nothing was published: raise --max-miou-drop, keep more layers in float "
                        "(--exclude-layer), or deploy the fp16/fp32 engine",
                        engines=copy.deepcopy(build.engines))  # the evidence: each engine's parity record
    return records


def _record_parity(txn: Any, build: Any, entry: dict[str, Any], parity: dict[str, Any]) -> None:
    """The entry with ``parity`` into the staged manifest and into the result, as separate copies."""
    updated = copy.deepcopy(dict(entry, parity=parity))
    txn.put_engine(updated)
    build.replace_engine(updated)


def _candidate(txn: Any, build: Any, entry: dict[str, Any], open_candidate: Callable[..., Any] | None) -> Any:
    path = txn.staged(entry["file"])
    if open_candidate is not None:
        return open_candidate(path, entry)
    from segdeploy.runners.tensorrt import TensorRTOptions, TensorRTRunner

    lib = build.plugin_library if entry.get("plugins") else None
    return TensorRTRunner(path, TensorRTOptions(plugin_library=lib))


def _check_one(reference: Any, candidate: Any, ds: Any, doc: dict[str, Any], val_dir: str,
               budget: float | None) -> dict[str, Any]:
    from segdeploy.parity.check import CheckOptions, run_check
    from segdeploy.parity.gate import GateOptions
    from segdeploy.runners.torch import TorchOptions

    result = run_check(reference, candidate, ds, manifest=doc,
                       options=CheckOptions(batch_size=1, worst_k=1, gate=GateOptions(max_miou_drop=budget),
                                            reference_options=TorchOptions(device="cpu")))
    return _record(result.report, result.gate, val_dir, budget)
