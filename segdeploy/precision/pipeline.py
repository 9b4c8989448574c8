"""The precision stage: calibrate -> lower (INT8 Q/DQ and/or FP16) -> CPU accuracy check -> manifest.

Contract
--------
``lower(export_dir, reference_module, options, progress=None) -> PrecisionResult``

* ``export_dir``: a `segdeploy export` output (``manifest.json`` + the FP32 ONNX it names).
* ``reference_module``: the PyTorch model (``nn.Module`` returning logits) the accuracy is measured against;
  ``None`` skips the accuracy check (said in the result and the manifest, never shown as passed).
* ``options``: :class:`PrecisionOptions`.
* ``progress``: optional ``callable(str)`` for step lines.

Writes into ``export_dir`` (each atomically, and only after every check of the stage passed):
``model.int8.onnx`` (Q/DQ, TensorRT rules checked by :func:`~segdeploy.precision.qdq.assert_trt_qdq`),
``model.fp16.onnx``, ``ranges.json`` and ``model.calib.cache`` (TensorRT ``TRT-<ver>-EntropyCalibration2``,
for TensorRT 8.6/10.x implicit INT8), then the manifest sections ``precision`` and ``calibration``.
When a gate trips (``max_miou_drop``), no model file is written or replaced; ``precision_report.json``
records what was measured and :class:`~segdeploy.errors.GateError` (exit 3) is raised.

Validation data: ``options.val`` is a directory with ``images/`` and (optionally) ``masks/``; by default,
when ``--calib`` is ``calibration/<set>/calib``, the sibling ``calibration/<set>/val`` is used (said in
the result). Validation images identical (by content) to calibration images are refused (DataError):
the accuracy would be measured on the data the ranges were fitted to.

Raises: UsageError (bad options), ArtifactError (missing export, unwritable directory), DataError (data),
GateError (budget not met).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from segdeploy.errors import ArtifactError, DataError, GateError, UsageError

INT8_FILE = "model.int8.onnx"
FP16_FILE = "model.fp16.onnx"
RANGES_FILE = "ranges.json"
CACHE_FILE = "model.calib.cache"
REPORT_FILE = "precision_report.json"
STATS_DIR = ".calib_stats"
METHODS = ("max", "percentile", "entropy", "mse")


@dataclass(frozen=True)
class PrecisionOptions:
    """What `segdeploy export --int8/--fp16 ...` asks of the precision stage (validated on construction)."""

    int8: bool = False
    fp16: bool = False
    calib: str | None = None
    calib_size: int | None = None
    calib_method: str = "entropy"
    percentile: float = 99.99
    seed: int = 0
    val: str | None = None
    max_miou_drop: float | None = None
    trt_version: str = "10.3"
    exclude: tuple[str, ...] = ()
    min_channels: int = 16
    budget_images: int = 32
    sensitivity: str = "all_but_one"
    batch_size: int = 8
    check: bool = True
    val_limit: int | None = None
    stats_cache: bool = True

    def __post_init__(self) -> None:
        if not (self.int8 or self.fp16):
            raise UsageError("nothing to do: give --int8 and/or --fp16")
        if self.int8 and not self.calib:
            raise UsageError("--int8 needs calibration images: pass --calib DIR (e.g. calibration/shapes/calib)")
        if self.calib_method not in METHODS:
            raise UsageError(f"unknown --calib-method {self.calib_method!r}; choose one of {', '.join(METHODS)}")
        if not (0.0 < self.percentile <= 100.0):
            raise UsageError(f"--percentile must be in (0, 100], got {self.percentile}")
        if self.calib_size is not None and self.calib_size < 1:
            raise UsageError(f"--calib-size must be >= 1, got {self.calib_size}")
        if self.max_miou_drop is not None and not (self.max_miou_drop >= 0):
            raise UsageError(f"--max-miou-drop must be >= 0 mIoU points, got {self.max_miou_drop}")
        if self.budget_images < 1 or self.batch_size < 1:
            raise UsageError("--budget-images and --batch-size must be >= 1")
        if self.calib is not None and not os.path.isdir(self.calib) and not os.path.isfile(self.calib):
            raise UsageError(f"--calib {self.calib} does not exist; pass an image folder or a list file")
        if self.val is not None and not os.path.isdir(self.val):
            raise UsageError(f"--val {self.val} is not a directory; pass a folder with images/ and masks/")

    def validation_dir(self) -> tuple[str | None, str | None]:
        """(directory, note): ``val`` if given, else the documented sibling default, else (None, reason)."""
        if self.val:
            return self.val, None
        if self.calib:
            c = Path(self.calib).resolve()
            if c.name == "calib" and (c.parent / "val").is_dir():
                return str(c.parent / "val"), f"validation split defaulted to {c.parent / 'val'} (sibling of --calib)"
        return None, "no validation split (--val, or a calibration/<set>/val beside --calib): accuracy not checked"


@dataclass
class PrecisionResult:
    export_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    section: dict[str, Any] = field(default_factory=dict)  # the manifest "precision" section
    calibration: Any = None  # segdeploy.calibration.CalibrationResult
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _say(progress: Callable[[str], None] | None):
    return progress or (lambda msg: None)


def _open_val(val_dir: str):
    from segdeploy.datasets import open_dataset

    p = Path(val_dir)
    images = p / "images" if (p / "images").is_dir() else p
    masks = p / "masks" if (p / "masks").is_dir() else None
    return open_dataset(images, masks)


def _check_disjoint(val_ds, calib_files) -> None:
    from segdeploy.fsutil import sha256_file

    calib = {sha256_file(f): f for f in calib_files}
    clash = []
    for e in getattr(val_ds, "entries", []):
        path = getattr(e, "image_path", None)
        if path and sha256_file(path) in calib:
            clash.append(os.path.basename(str(path)))
    if clash:
        raise DataError(
            f"{len(clash)} validation image(s) also in the calibration set ({', '.join(clash[:5])}); "
            "use disjoint splits (e.g. calibration/<set>/calib and calibration/<set>/val)"
        )


def _stage_files(items, check_all, say) -> dict[str, Path]:
    """Write each (kind, path, model) to a temporary file beside ``path``, call ``check_all({kind: tmp})``
    once, and only when it returns rename every file into place. Any failure removes every temporary
    file, so a failed stage never replaces a good artifact. Returns kind -> final path."""
    import contextlib
    import tempfile

    for _, path, _ in items:
        if path.is_dir():
            raise ArtifactError(f"cannot write {path}: a directory is in the way; remove it or choose another --out")
    temps: dict[str, tuple[Path, Path]] = {}
    try:
        for kind, path, model in items:
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".onnx", dir=path.parent)
                os.close(fd)
                temps[kind] = (path, Path(tmp))
                Path(tmp).write_bytes(model.SerializeToString())
            except OSError as e:
                raise ArtifactError(f"cannot write {path}: {e.strerror or e}; check free space and permissions") from None
        check_all({k: tmp for k, (_, tmp) in temps.items()})
        done = {}
        for kind, (path, tmp) in temps.items():
            say(f"write: {path.name}")
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise ArtifactError(f"cannot write {path}: {e.strerror or e}; check permissions") from None
            done[kind] = path
        return done
    finally:
        for _, tmp in temps.values():
            with contextlib.suppress(OSError):
                tmp.unlink()


def lower(export_dir: str | os.PathLike, reference_module: Any, options: PrecisionOptions,
          progress: Callable[[str], None] | None = None) -> PrecisionResult:
    """Run the precision stage (see module docstring)."""
    import onnx

    from segdeploy.fsutil import atomic_write_json, ensure_writable_dir, sha256_file
    from segdeploy.manifest import onnx_profile_of, preprocess_of, read_manifest, update_manifest

    t0 = time.perf_counter()
    say = _say(progress)
    out = Path(export_dir)
    doc = read_manifest(out)
    ensure_writable_dir(out)
    fp32_path = out / doc["onnx"]["file"]
    if not fp32_path.is_file():
        raise ArtifactError(f"{fp32_path} (named in the manifest) is missing; re-run `segdeploy export`")
    preprocess, profile = preprocess_of(doc), onnx_profile_of(doc)
    num_classes = int(doc["model"]["num_classes"])
    res = PrecisionResult(export_dir=out)
    val_dir, note = options.validation_dir()
    if note:
        res.notes.append(note)
    val_ds = _open_val(val_dir) if val_dir else None
    if val_ds is not None and reference_module is None:
        res.notes.append("no PyTorch reference given: accuracy not checked")
    checking = options.check and val_ds is not None and reference_module is not None
    if options.max_miou_drop is not None and not checking:
        raise UsageError("--max-miou-drop needs a validation split with the reference model: pass --val DIR")

    # -- calibrate
    cal = None
    if options.calib:
        from segdeploy.calibration import Method, calibrate

        say(f"calibrate: {options.calib_method} on {options.calib}")
        last = [-1]

        def cal_progress(done: int, total: int) -> None:
            q = (4 * done) // max(total, 1)
            if q != last[0]:
                last[0] = q
                say(f"calibrate: {done}/{total} images")

        cal = calibrate(
            fp32_path, options.calib, preprocess=preprocess, profile=profile, size=options.calib_size,
            seed=options.seed, method=Method(options.calib_method, percentile=options.percentile),
            cache_dir=(out / STATS_DIR) if options.stats_cache else None, batch_size=options.batch_size,
            progress=cal_progress,
        )
        res.calibration = cal
        say(f"calibrate: {len(cal.ranges)} tensors ({'cached statistics' if cal.cache_hit else f'{cal.seconds:.1f}s'})")
        if val_ds is not None:
            _check_disjoint(val_ds, cal.calib_set.files)
    fp32 = onnx.load(str(fp32_path))
    section: dict[str, Any] = {"source_onnx": doc["onnx"]["file"], "source_sha256": sha256_file(fp32_path)}
    if val_ds is not None:
        section["validation"] = {"source": str(val_dir), "images": len(val_ds) if options.val_limit is None else min(len(val_ds), options.val_limit)}
    pending: list[tuple[str, Path, Any]] = []
    report: dict[str, Any] = {"precision": section, "notes": res.notes}

    def check_all(tmps: dict[str, Path]) -> None:
        """Accuracy of every lowered model in one pass over the validation set, then the gate."""
        if not checking:
            for kind in tmps:
                section[kind]["accuracy"] = None
            return
        from segdeploy.precision.accuracy import check_accuracy_many

        last = [-1]

        def acc_progress(done: int, total: int) -> None:
            q = (4 * done) // max(total, 1)
            if q != last[0]:
                last[0] = q
                say(f"check: {done}/{total} images")

        say(f"check: {', '.join(tmps)} vs PyTorch on {val_dir} (ORT DISABLE_ALL and ENABLE_ALL)")
        reps = check_accuracy_many(tmps, reference_module, val_ds, preprocess=preprocess, profile=profile,
                                   num_classes=num_classes, batch_size=options.batch_size, limit=options.val_limit,
                                   progress=acc_progress)
        failed = []
        for kind, acc in reps.items():
            section[kind]["accuracy"] = acc.to_dict()
            if acc.disagree:
                res.notes.append(f"{kind}: {acc.notes[-1]}" if acc.notes else f"{kind}: ORT levels disagree")
            if options.max_miou_drop is not None and acc.drop is not None and acc.drop > options.max_miou_drop + 1e-9:
                failed.append(f"{kind} loses {acc.drop:.3f} mIoU points")
        if failed:
            n = next(iter(reps.values())).images
            msg = f"{' and '.join(failed)} on {n} validation images (budget --max-miou-drop {options.max_miou_drop})"
            b = section.get("int8", {}).get("budget")
            if b and "final_drop_points" in b and any(f.startswith("int8") for f in failed):
                msg += (f"; the budget search met it on its {b['subset_images']}-image subset "
                        f"({b['final_drop_points']:.3f} points) but not on the whole split: raise --budget-images")
            raise GateError(msg + "; or raise the budget, add calibration images, try another --calib-method, "
                            "keep more layers in float (--exclude-layer)")

    try:
        # -- INT8
        if options.int8:
            from segdeploy.precision.qdq import QdqOptions, assert_trt_qdq, quantize_qdq

            qopts = QdqOptions(exclude=tuple(options.exclude), min_channels=options.min_channels)
            entry: dict[str, Any] = {"file": INT8_FILE, "placement": "segdeploy.precision.qdq (TensorRT rules)",
                                     "method": cal.method.to_dict(), "calibration_set": cal.calib_set.to_dict(),
                                     "trt_cache_version": options.trt_version}
            quantize_qdq(fp32, cal.ranges, qopts)  # fails fast (UsageError) when nothing is quantizable
            budget = None
            if options.max_miou_drop is not None:
                from segdeploy.precision.accuracy import Evaluator
                from segdeploy.precision.budget import BudgetNotMet, search_budget

                say(f"budget: sensitivity on {options.budget_images} validation images, target drop <= {options.max_miou_drop}")
                with Evaluator(reference_module, val_ds, preprocess=preprocess, profile=profile, num_classes=num_classes,
                               limit=options.budget_images, batch_size=options.batch_size) as ev:
                    try:
                        budget = search_budget(fp32, cal.ranges, ev, options.max_miou_drop, qopts,
                                               mode=options.sensitivity, progress=say)
                    except BudgetNotMet as e:
                        entry["budget"] = {"budget_points": options.max_miou_drop, "best_drop_points": round(e.best_drop, 4),
                                           "initial_drop_points": round(e.initial_drop, 4),
                                           "kept_out": [c.to_dict() for c in e.kept_out]}
                        section["int8"] = entry
                        raise
                entry["budget"] = budget.to_dict()
            final = quantize_qdq(fp32, cal.ranges, replace(qopts, exclude=qopts.exclude + tuple(c.name for c in (budget.excluded if budget else []))))
            assert_trt_qdq(final.model)
            entry["rule_check"] = "passed"
            entry["quantized_layers"] = len(final.quantized)
            entry["excluded_layers"] = [{"layer": s.name, "op": s.op_type, "reason": s.reason} for s in final.skipped]
            if budget:
                for c in budget.excluded:
                    for x in entry["excluded_layers"]:
                        if x["layer"] == c.name:
                            x["reason"] = f"accuracy budget (sensitivity {c.sensitivity:.3f} points)"
            section["int8"] = entry
            pending.append(("int8", out / INT8_FILE, final.model))
        # -- FP16
        if options.fp16:
            from segdeploy.precision.fp16 import convert_fp16

            absmax = cal.absmax if cal is not None else None
            conv = convert_fp16(fp32, absmax)
            entry = {"file": FP16_FILE, "io_types": "float32 (Cast at the boundaries)", "kept_fp32": conv.kept_report(),
                     "overflow_check": "calibration absmax > 65504" if absmax else "not run (no --calib: only op-type rules applied)"}
            if absmax is None:
                res.notes.append("fp16: no --calib, so activations beyond the FP16 range could not be detected")
            entry["cpu_check_caveat"] = ("ONNX Runtime's CPU runs FP16 nodes without FP16 kernels in FP32, so this check "
                                         "cannot show FP16 overflow; the range-based kept-FP32 list guards against it")
            section["fp16"] = entry
            pending.append(("fp16", out / FP16_FILE, conv.model))
        # -- check every lowered model on a temporary file, then move them all into place
        for kind, path in _stage_files(pending, check_all, say).items():
            section[kind]["sha256"] = sha256_file(path)
            res.files[kind] = path
    except GateError:
        report["result"] = "gate failed"
        atomic_write_json(out / REPORT_FILE, report)
        raise
    if cal is not None:
        from segdeploy.calibration import write_ranges_json, write_trt_cache

        write_ranges_json(out / RANGES_FILE, cal.ranges, {"method": cal.method.to_dict(), "set": cal.calib_set.to_dict(),
                                                           "model_sha256": cal.model_sha256})
        write_trt_cache(out / CACHE_FILE, cal.ranges, options.trt_version)
        res.files["ranges"] = out / RANGES_FILE
        res.files["calib_cache"] = out / CACHE_FILE
        section["ranges"] = {"file": RANGES_FILE, "sha256": sha256_file(out / RANGES_FILE)}
        section["calib_cache"] = {"file": CACHE_FILE, "sha256": sha256_file(out / CACHE_FILE),
                                  "trt_version": options.trt_version}
        update_manifest(out, "calibration", cal.to_manifest())
    section["notes"] = list(res.notes)
    update_manifest(out, "precision", section)
    report["result"] = "ok"
    atomic_write_json(out / REPORT_FILE, report)
    res.section = section
    res.seconds = time.perf_counter() - t0
    return res
