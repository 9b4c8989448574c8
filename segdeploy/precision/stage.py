"""The precision stage: calibrate -> lower (INT8 Q/DQ and/or FP16) -> CPU accuracy check -> gate, in a transaction.

Contract
--------
``run(txn, options, progress, *, reference=None, checked=False) -> PrecisionResult`` (the stage contract of
:mod:`segdeploy.pipeline`; on a published directory: ``run_stage(dir, run, options, progress,
command="precision", reference=module)``)

* ``txn``: an open :class:`~segdeploy.exportdir.Transaction` whose staged set holds ``model.onnx`` and its
  manifest (a fresh export in the same transaction, or a derived transaction on a published directory).
* ``options``: :class:`PrecisionOptions` (validated on construction; :func:`check_preconditions` and
  :func:`check_labels` check the data folders cheaply, before any expensive stage -- ``run`` calls them first
  unless ``checked`` says the caller already did, as the pipeline and the CLI do before loading the model).
* ``progress``: step lines; calibration, the budget search and the accuracy check are counted tasks.
* ``reference``: the PyTorch model the accuracy is measured against; ``None`` skips the check (said
  in the result and the manifest, never shown as passed).

Stages into the transaction (the caller commits): ``ranges.json`` + ``model.calib.cache`` through the
calibration stage (its one writer), ``model.int8.onnx`` (Q/DQ, TensorRT rules checked by
:func:`~segdeploy.precision.qdq.assert_trt_qdq`), ``model.fp16.onnx``, and the manifest's ``precision``
section (merged: a run that asks only for FP16 keeps a still-valid INT8). When a gate trips
(``max_miou_drop``) :class:`~segdeploy.errors.GateError` (exit 3) is raised with ``.section`` holding what was
measured, and the caller publishes nothing.

Budget (INT8 with ``max_miou_drop``): the sensitivity search runs on ``budget_images`` validation images;
when its choice misses the budget on the whole split the search **escalates** (4x the images, keeping the
layers already chosen) until it meets the budget on the whole split or has searched on all of it, so a
budget that the float model meets is met without tuning ``--budget-images``. The cost (rounds, images,
evaluations, seconds) is recorded.

Validation data: ``options.val`` (``images/`` + optional ``masks/``), by default the split the data convention
defines for ``--calib`` (:func:`segdeploy.datasets.convention.validation_split_of`: ``<calib>/val``, or the
sibling ``calibration/<set>/val`` of a ``calibration/<set>/calib``; said in the result) -- never any other folder.
Validation images identical (by content) to calibration images are refused (DataError). Masks with a label
that is not a class of the model (nor the ignore index) are refused before the export runs (:func:`check_labels`,
exit 2).

The verdict (honest): every lowered model's entry says ``checked`` (true/false). Not checked (no validation
split) is stated in the entry (``not_checked``: why and the fix), the notes and the summary, and is an error
(exit 2, before any work) with ``require_check`` or ``max_miou_drop``. A reference mIoU below
:data:`MEANINGFUL_REFERENCE_MIOU` points, or below twice the chance level (:func:`chance_miou_points`), on
masks (the PyTorch model does not predict these labels: untrained, or trained for other classes) makes any drop
meaningless: the entry's ``accuracy.reference_warning`` says so.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segdeploy.errors import DataError, GateError, UsageError
from segdeploy.progress import Progress
from segdeploy.vocab import (CALIB_CACHE, DEFAULT_CALIB_METHOD, DEFAULT_PERCENTILE, FP16_ONNX,
                             GATED_ORT_LEVEL, INT8_ONNX, MODEL_ONNX, RANGES, CalibMethod, Precision,
                             split_dirs)

if TYPE_CHECKING:
    import torch

    from segdeploy.calibration.stage import CalibrateOptions, CalibrationResult
    from segdeploy.datasets import Dataset
    from segdeploy.exportdir import Transaction
    from segdeploy.spec import Preprocess, ShapeProfile

ESCALATION = 4
# A reference mIoU (masks as truth) below this many points, or below twice the chance level, means the model does not
# predict these labels: a drop measured against it means nothing, so the verdict carries a warning. Chance level: the
# expected mIoU of a prediction drawn uniformly from the model's K classes, given the masks' class shares f_c:
# IoU_c = (f_c / K) / (f_c + 1/K - f_c / K), averaged over the K classes (13 points for a 55/15/15/15 split of 4).
MEANINGFUL_REFERENCE_MIOU = 10.0


@dataclass(frozen=True)
class PrecisionOptions:
    """What `segdeploy export/precision --int8/--fp16 ...` asks of the precision stage (validated on construction)."""

    int8: bool = False
    fp16: bool = False
    calib: str | None = None
    calib_size: int | None = None
    calib_method: str = DEFAULT_CALIB_METHOD
    percentile: float = DEFAULT_PERCENTILE
    seed: int = 0
    val: str | None = None
    max_miou_drop: float | None = None
    trt_target: str | None = None  # the TensorRT of the calibration cache header (None: the default target)
    exclude: tuple[str, ...] = ()
    min_channels: int = 16
    budget_images: int = 32
    sensitivity: str = "all_but_one"
    batch_size: int = 8
    check: bool = True
    val_limit: int | None = None
    stats_cache: bool = True
    require_check: bool = False  # a missing validation split is an error (exit 2), not "not checked"

    def __post_init__(self) -> None:
        if not (self.int8 or self.fp16):
            raise UsageError("nothing to do: give --int8 and/or --fp16")
        if self.int8 and not self.calib:
            from segdeploy.datasets.convention import CONVENTION

            raise UsageError(f"--int8 needs calibration images: {CONVENTION}")
        object.__setattr__(self, "calib_method", CalibMethod.parse(self.calib_method, "--calib-method"))
        if not (0.0 < self.percentile <= 100.0):
            raise UsageError(f"--percentile must be in (0, 100], got {self.percentile}")
        if self.calib_size is not None and self.calib_size < 1:
            raise UsageError(f"--calib-size must be >= 1, got {self.calib_size}")
        if self.max_miou_drop is not None and not (self.max_miou_drop >= 0):
            raise UsageError(f"--max-miou-drop must be >= 0 mIoU points, got {self.max_miou_drop}")
        if self.budget_images < 1:
            raise UsageError(f"--budget-images must be >= 1, got {self.budget_images}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {self.batch_size}")
        if self.calib is not None and not os.path.isdir(self.calib) and not os.path.isfile(self.calib):
            raise UsageError(f"--calib {self.calib} does not exist; pass an image folder or a list file")
        if self.val is not None and not os.path.isdir(self.val):
            raise UsageError(f"--val {self.val} is not a directory; pass a folder with images/ and masks/")
        from segdeploy.trt.versions import resolve_target

        resolve_target(self.trt_target)  # UsageError naming the forms, before any work

    def validation_dir(self) -> tuple[str | None, str | None]:
        """(directory, note): ``val`` if given, else the documented sibling default, else (None, reason)."""
        if self.val:
            return self.val, None
        if self.calib:
            from segdeploy.datasets.convention import validation_split_of

            split = validation_split_of(self.calib)
            if split is not None:
                return str(split), f"validation split: {split} (the convention for --calib {self.calib}; pass --val to choose)"
        return None, f"accuracy NOT CHECKED: {self.not_checked_reason()}"

    def not_checked_reason(self) -> str:
        """Why nothing can check the lowered models, and the fix (``no validation split; pass --val DIR or add
        calibration/val/`` for the ./calibration/ convention)."""
        from segdeploy.datasets.convention import add_validation_hint

        return f"no validation split; {add_validation_hint(self.calib)}"

    def calibrate_options(self) -> CalibrateOptions:
        from segdeploy.calibration.methods import Method
        from segdeploy.calibration.stage import CalibrateOptions

        return CalibrateOptions(calib=self.calib, size=self.calib_size, seed=self.seed,
                                method=Method(self.calib_method, percentile=self.percentile),
                                batch_size=self.batch_size, trt_target=self.trt_target, use_cache=self.stats_cache)


@dataclass
class PrecisionResult:
    export_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    section: dict[str, Any] = field(default_factory=dict)  # the manifest "precision" section (this run's part)
    calibration: CalibrationResult | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The stage's entry in the JSON result document."""
        cal = self.calibration
        return {"precision": self.section, "files": {k: str(v) for k, v in self.files.items()}, "notes": list(self.notes),
                "calibration": None if cal is None else {"method": cal.method_record(), "images": cal.calib_set.size,
                                                         "tensors": len(cal.ranges), "statistics_cached": cal.cache_hit},
                "seconds": round(self.seconds, 2)}


def open_validation(val_dir: str) -> Dataset:
    """The validation split ``val_dir`` (``images/`` + optional ``masks/``, :func:`segdeploy.vocab.split_dirs`)."""
    from segdeploy.datasets import open_dataset

    return open_dataset(*split_dirs(val_dir))


def check_preconditions(options: PrecisionOptions) -> list[str]:
    """Cheap checks before any expensive stage (listing only): the calibration source lists images (and at least
    ``--calib-size``), the validation split lists images. Returns notes; raises DataError/UsageError naming the fix."""
    notes: list[str] = []
    if options.calib:
        from segdeploy.calibration.stage import check_calibration_source

        check_calibration_source(options.calib, options.calib_size)
    val_dir, note = options.validation_dir()
    if note:
        notes.append(note)
    if val_dir and len(open_validation(val_dir)) == 0:
        raise DataError(f"validation split {val_dir} holds no images; pass --val DIR with images/ and masks/")
    if options.max_miou_drop is not None and not val_dir:
        raise UsageError(f"--max-miou-drop needs a validation split: {options.not_checked_reason()}")
    if options.require_check and not val_dir:
        raise UsageError(f"--require-check: nothing to check the lowered model(s) on: {options.not_checked_reason()}")
    return notes


def check_labels(options: PrecisionOptions, num_classes: int) -> None:
    """Once the class count is known (after the cheap probe, before exporting): every validation mask value is a
    class or the ignore index. Decodes each mask once. Raises DataError naming the mask and the fix."""
    import numpy as np

    from segdeploy.datasets.masks import read_mask

    val_dir, _ = options.validation_dir()
    if not val_dir:
        return
    ds = open_validation(val_dir)
    if not ds.has_masks:
        return
    for e in ds.entries:
        m = read_mask(e.mask_path, ds.label_map)
        vals = np.unique(m)
        bad = [int(v) for v in vals if v != ds.ignore_index and not (0 <= v < num_classes)]
        if bad:
            raise UsageError(f"mask {e.mask_path} has label(s) {bad[:5]} but the model has {num_classes} classes "
                             f"(0..{num_classes - 1}, ignore {ds.ignore_index}): these masks are not for this model; "
                             f"fix the masks in {val_dir} or pass --val with a split labelled for it")


def check_validation_fits(options: PrecisionOptions, profile: ShapeProfile, preprocess: Preprocess, fix: str) -> None:
    """Once the profile is settled (before exporting): in pad mode every validation image must pad to within the
    profile's max H/W (the accuracy check feeds them as they are). Header reads only. UsageError naming ``fix``."""
    if preprocess.resize != "pad":
        return
    val_dir, _ = options.validation_dir()
    if not val_dir:
        return
    from segdeploy.datasets.imagefile import open_image

    m, hi = profile.spatial_multiple, profile.max
    for e in open_validation(val_dir).entries:
        with open_image(e.image_path) as im:
            w, h = im.size
        if -(-h // m) * m > hi[2] or -(-w // m) * m > hi[3]:
            raise UsageError(f"validation image {e.image_path} ({h}x{w}, H x W) is larger than the profile's max H/W "
                             f"{hi[2]}x{hi[3]} in pad mode, so the accuracy check cannot feed it; {fix}")


def _check_disjoint(val_ds, calib_files) -> None:
    from segdeploy.fsutil import sha256_file

    calib = {sha256_file(f): f for f in calib_files}
    clash = [os.path.basename(e.image_path) for e in val_ds.entries if sha256_file(e.image_path) in calib]
    if clash:
        raise DataError(f"{len(clash)} validation image(s) also in the calibration set ({', '.join(clash[:5])}); "
                        "use disjoint splits (calibration images in --calib DIR, validation images in DIR/val/images)")


@dataclass
class _Context:
    """What the lowering steps share."""

    txn: Transaction
    options: PrecisionOptions
    reference: torch.nn.Module | None
    val_ds: Dataset | None
    val_dir: str | None
    preprocess: Preprocess
    profile: ShapeProfile
    num_classes: int
    progress: Progress
    section: dict[str, Any]
    notes: list[str]

    @property
    def checking(self) -> bool:
        return self.options.check and self.val_ds is not None and self.reference is not None


def _context(txn: Transaction, options: PrecisionOptions, reference: torch.nn.Module | None, progress: Progress,
             notes: list[str]) -> _Context:
    """The validation split (defaulted beside --calib, said in ``notes``) and the staged export's facts."""
    val_dir, note = options.validation_dir()
    if note:
        notes.append(note)
    val_ds = open_validation(val_dir) if val_dir else None
    if val_ds is not None and reference is None:
        notes.append("no PyTorch reference given: accuracy not checked")
    section: dict[str, Any] = {"source_onnx": MODEL_ONNX, "source_sha256": txn.sha256_of(MODEL_ONNX)}
    if val_ds is not None:
        section["validation"] = {"source": str(val_dir),
                                 "images": len(val_ds) if options.val_limit is None else min(len(val_ds), options.val_limit)}
    return _Context(txn, options, reference, val_ds, val_dir, txn.preprocess, txn.profile, txn.num_classes, progress,
                    section, notes)


def _calibrate(ctx: _Context):
    from segdeploy.calibration import stage as cal_stage

    opts = ctx.options
    default = " (the default)" if opts.calib_method == DEFAULT_CALIB_METHOD else ""
    ctx.progress.step(f"calibrate: {opts.calib_method}{default} on {opts.calib}")
    cal = cal_stage.run(ctx.txn, opts.calibrate_options(), ctx.progress)
    ctx.progress.step(f"calibrate: {len(cal.ranges)} tensors "
                      f"({'cached statistics' if cal.cache_hit else f'{cal.seconds:.1f}s'})")
    if cal.calib_set.oversize:
        mx = ctx.profile.max
        ctx.notes.append(f"{cal.calib_set.oversize} calibration image(s) larger than the profile max {mx[2]}x{mx[3]} "
                         "(H x W) were resized down keeping aspect (pad mode); a larger `segdeploy export --max-shape` covers them")
    if ctx.val_ds is not None:
        _check_disjoint(ctx.val_ds, cal.calib_set.files)
    return cal


def _budget_search(ctx: _Context, fp32, cal, qopts):
    """INT8 within the budget, escalating the evaluation set (see module docstring) -> (BudgetResult, cost dict)."""
    from segdeploy.precision.accuracy import Evaluator, check_accuracy
    from segdeploy.precision.budget import BudgetNotMet, search_budget

    opts = ctx.options
    total = len(ctx.val_ds) if opts.val_limit is None else min(len(ctx.val_ds), opts.val_limit)
    n = min(opts.budget_images, total)
    chosen: tuple[str, ...] = ()
    rounds: list[dict[str, Any]] = []
    kept_before: list = []
    t0 = time.perf_counter()
    while True:
        ctx.progress.step(f"budget: sensitivity on {n} of {total} validation images, target drop <= {opts.max_miou_drop}")
        with Evaluator(ctx.reference, ctx.val_ds, preprocess=ctx.preprocess, profile=ctx.profile,
                       num_classes=ctx.num_classes, limit=n, batch_size=opts.batch_size, progress=ctx.progress) as ev:
            try:
                res = search_budget(fp32, cal.ranges, ev, opts.max_miou_drop,
                                    replace(qopts, exclude=qopts.exclude + chosen), mode=opts.sensitivity,
                                    progress=ctx.progress)
            except BudgetNotMet as e:
                e.kept_out = kept_before + list(e.kept_out)
                raise
            evaluations = ev.evaluations
        res.excluded = kept_before + list(res.excluded)
        rounds.append({"images": n, "evaluations": evaluations, "drop_points": round(res.drop, 4),
                       "kept_out": [c.name for c in res.excluded]})
        if n >= total:
            break
        with _temp_onnx(res.model) as path:
            full = check_accuracy(path, ctx.reference, ctx.val_ds, preprocess=ctx.preprocess, profile=ctx.profile,
                                  num_classes=ctx.num_classes, levels=(GATED_ORT_LEVEL,), batch_size=opts.batch_size,
                                  limit=opts.val_limit, progress=ctx.progress, label="budget: whole split")
        rounds[-1]["whole_split_drop_points"] = None if full.drop is None else round(full.drop, 4)
        if full.drop is None or full.drop <= opts.max_miou_drop + 1e-9:
            break
        ctx.progress.step(f"budget: met on {n} images but the whole split loses {full.drop:.3f} points; "
                          f"escalating to {min(total, ESCALATION * n)} images")
        chosen = tuple(c.name for c in res.excluded)
        kept_before = list(res.excluded)
        n = min(total, ESCALATION * n)
    cost = {"rounds": rounds, "evaluations": sum(r["evaluations"] for r in rounds),
            "seconds": round(time.perf_counter() - t0, 2), "final_images": n, "split_images": total}
    return res, cost


class _temp_onnx:
    """Context manager: a model written to a temporary .onnx file (removed afterwards)."""

    def __init__(self, model):
        self.model = model

    def __enter__(self) -> str:
        import tempfile

        fd, self.path = tempfile.mkstemp(suffix=".onnx", prefix="segdeploy-candidate-")
        with os.fdopen(fd, "wb") as f:
            f.write(self.model.SerializeToString())
        return self.path

    def __exit__(self, *exc) -> None:
        os.unlink(self.path)


def _int8(ctx: _Context, fp32, cal):
    """Q/DQ model (+ budget search) -> (onnx.ModelProto, manifest entry)."""
    from segdeploy.precision.budget import BudgetNotMet
    from segdeploy.precision.qdq import QdqOptions, assert_trt_qdq, quantize_qdq
    from segdeploy.trt.versions import version_from_code

    opts = ctx.options
    qopts = QdqOptions(exclude=tuple(opts.exclude), min_channels=opts.min_channels)
    entry: dict[str, Any] = {"file": INT8_ONNX, "placement": "segdeploy.precision.qdq (TensorRT rules)",
                             "method": cal.method_record(), "calibration_set": cal.calib_set.to_dict(),
                             "trt_cache_version": version_from_code(cal.trt_cache_version)}
    quantize_qdq(fp32, cal.ranges, qopts)  # fails fast (UsageError) when nothing is quantizable
    budget = None
    if opts.max_miou_drop is not None:
        if not ctx.checking:
            raise UsageError("--max-miou-drop needs a validation split with the reference model: pass --val DIR")
        try:
            budget, cost = _budget_search(ctx, fp32, cal, qopts)
        except BudgetNotMet as e:
            entry["budget"] = {"budget_points": opts.max_miou_drop, "best_drop_points": round(e.best_drop, 4),
                               "initial_drop_points": round(e.initial_drop, 4),
                               "kept_out": [c.to_dict() for c in e.kept_out]}
            ctx.section[Precision.INT8] = entry
            e.stages["precision"] = {"precision": ctx.section}
            raise
        entry["budget"] = dict(budget.to_dict(), cost=cost)
    excluded = tuple(c.name for c in budget.excluded) if budget else ()
    final = quantize_qdq(fp32, cal.ranges, replace(qopts, exclude=qopts.exclude + excluded))
    assert_trt_qdq(final.model)
    entry["rule_check"] = "passed"
    entry["quantized_layers"] = len(final.quantized)
    reasons = {c.name: f"accuracy budget (sensitivity {c.sensitivity:.3f} points)" for c in (budget.excluded if budget else [])}
    entry["excluded_layers"] = [{"layer": s.name, "op": s.op_type, "reason": reasons.get(s.name, s.reason)}
                                for s in final.skipped]
    return final.model, entry


def _fp16(ctx: _Context, fp32, cal):
    """Strongly-typed FP16 model -> (onnx.ModelProto, manifest entry). ``--exclude-layer`` nodes stay FP32."""
    from segdeploy.precision.fp16 import Fp16Options, convert_fp16

    absmax = cal.absmax if cal is not None else None
    conv = convert_fp16(fp32, absmax, Fp16Options(keep_nodes=tuple(ctx.options.exclude)))
    missing = sorted(set(ctx.options.exclude) - {n.name for n in fp32.graph.node})
    if missing:
        raise UsageError(f"--exclude-layer names no node of the model: {', '.join(missing[:5])}; use node names from "
                         "model.onnx (e.g. as listed in the manifest's precision section)")
    entry = {"file": FP16_ONNX, "io_types": "float32 (Cast at the boundaries)", "kept_fp32": conv.kept_report(),
             "overflow_check": "calibration absmax > 65504" if absmax else "not run (no --calib: only op-type rules applied)",
             "cpu_check_caveat": "ONNX Runtime's CPU runs FP16 nodes without FP16 kernels in FP32, so this check cannot "
                                 "show FP16 overflow; the range-based kept-FP32 list guards against it"}
    if absmax is None:
        ctx.notes.append("fp16: no --calib, so activations beyond the FP16 range could not be detected")
    return conv.model, entry


def _check_and_gate(ctx: _Context, staged: dict[str, Path]) -> None:
    """Accuracy of every lowered model in one pass over the validation set, then the gate."""
    if not ctx.checking:
        why = ctx.options.not_checked_reason() if ctx.val_ds is None else "no PyTorch reference given"
        for kind in staged:
            ctx.section[kind].update(accuracy=None, checked=False, not_checked=why)
        return
    from segdeploy.precision.accuracy import check_accuracy_many

    opts = ctx.options
    ctx.progress.step(f"check: {', '.join(staged)} vs PyTorch on {ctx.val_dir} (ORT DISABLE_ALL and ENABLE_ALL)")
    reps = check_accuracy_many(staged, ctx.reference, ctx.val_ds, preprocess=ctx.preprocess, profile=ctx.profile,
                               num_classes=ctx.num_classes, batch_size=opts.batch_size, limit=opts.val_limit,
                               progress=ctx.progress)
    failed = []
    chance = chance_miou_points(ctx.val_ds, ctx.num_classes, opts.val_limit) if ctx.val_ds.has_masks else None
    for kind, acc in reps.items():
        ctx.section[kind].update(accuracy=acc.to_dict(), checked=True)
        _warn_reference(ctx, kind, acc, chance)
        if acc.disagree:
            ctx.notes.append(f"{kind}: {acc.notes[-1]}" if acc.notes else f"{kind}: ORT levels disagree")
        if opts.max_miou_drop is not None and acc.drop is not None and acc.drop > opts.max_miou_drop + 1e-9:
            failed.append(f"{kind} loses {acc.drop:.3f} mIoU points")
    if failed:
        n = next(iter(reps.values())).images
        raise GateError(f"{' and '.join(failed)} on {n} validation images (budget --max-miou-drop "
                        f"{opts.max_miou_drop}); raise the budget, add calibration images, try another --calib-method, "
                        "or keep more layers in float (--exclude-layer)", stages={"precision": {"precision": ctx.section}})


def chance_miou_points(val_ds: Dataset, num_classes: int, limit: int | None = None) -> float | None:
    """The chance-level mIoU in points (see :data:`MEANINGFUL_REFERENCE_MIOU`) of the masks of ``val_ds``."""
    import numpy as np

    from segdeploy.datasets.masks import read_mask

    counts = np.zeros(max(2, num_classes), dtype=np.int64)
    for e in val_ds.entries[:limit]:
        vals, n = np.unique(read_mask(e.mask_path, val_ds.label_map), return_counts=True)
        keep = (vals != val_ds.ignore_index) & (vals >= 0) & (vals < counts.size)
        np.add.at(counts, vals[keep].astype(np.int64), n[keep])
    if not counts.sum():
        return None
    f, k = counts / counts.sum(), counts.size
    return float(100.0 * np.mean((f / k) / (f + 1.0 / k - f / k)))


def _warn_reference(ctx: _Context, kind: Precision, acc, chance: float | None) -> None:
    """A reference mIoU (masks as truth) below :data:`MEANINGFUL_REFERENCE_MIOU` points or twice ``chance``: a
    warning in the entry (``accuracy.reference_warning``; ``accuracy.chance_miou_points`` is recorded either way)."""
    ref = acc.reference_miou
    if acc.truth != "masks" or ref is None:
        return
    ctx.section[kind]["accuracy"]["chance_miou_points"] = None if chance is None else round(chance, 2)
    floor = max(MEANINGFUL_REFERENCE_MIOU, 2.0 * (chance or 0.0))
    if 100.0 * ref >= floor:
        return
    why = (f"below {MEANINGFUL_REFERENCE_MIOU:g}" if floor == MEANINGFUL_REFERENCE_MIOU else
           f"below twice the chance level of {chance:.2f}")
    ctx.section[kind]["accuracy"]["reference_warning"] = (
        f"the PyTorch model's own mIoU on {ctx.val_dir} is {100.0 * ref:.2f} points ({why}): it does not predict these "
        f"masks' labels, so the {kind} drop measures nothing; validate on masks the model was trained for")


def _write(ctx: _Context, models: dict[Precision, Any], cal: CalibrationResult | None, res: PrecisionResult) -> None:
    """Stage the lowered models (derived from model.onnx, and from ranges.json when calibrated) and list the files."""
    txn = ctx.txn
    for kind, model in models.items():
        ctx.progress.step(f"write: {kind.onnx_file}")
        deps = (MODEL_ONNX, RANGES) if cal is not None else (MODEL_ONNX,)
        txn.write_bytes(kind.onnx_file, model.SerializeToString(), kind.onnx_kind, derived_from=deps)
        res.files[kind] = txn.target / kind.onnx_file
    if cal is not None:
        res.files["ranges"] = txn.target / RANGES
        res.files["calib_cache"] = txn.target / CALIB_CACHE


def run(txn: Transaction, options: PrecisionOptions, progress: Progress, *, reference: torch.nn.Module | None = None,
        checked: bool = False) -> PrecisionResult:
    """Run the precision stage inside ``txn`` (see module docstring)."""
    import onnx

    t0 = time.perf_counter()
    if not checked:
        check_preconditions(options)
        check_labels(options, txn.num_classes)
    res = PrecisionResult(export_dir=txn.target)
    ctx = _context(txn, options, reference, progress, res.notes)
    cal = res.calibration = _calibrate(ctx) if options.calib else None
    fp32 = onnx.load(str(txn.staged(MODEL_ONNX)))
    models: dict[Precision, Any] = {}
    if options.int8:
        models[Precision.INT8], ctx.section[Precision.INT8] = _int8(ctx, fp32, cal)
    if options.fp16:
        models[Precision.FP16], ctx.section[Precision.FP16] = _fp16(ctx, fp32, cal)
    _write(ctx, models, cal, res)
    _check_and_gate(ctx, {k: txn.staged(k.onnx_file) for k in models})
    for kind in models:
        ctx.section[kind]["sha256"] = txn.sha256_of(kind.onnx_file)
    ctx.section["notes"] = list(res.notes)
    txn.set_section("precision", {**(txn.precision_section or {}), **ctx.section})  # a still-valid other kind stays
    res.section = ctx.section
    res.seconds = time.perf_counter() - t0
    return res
