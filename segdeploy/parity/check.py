"""The parity check: run reference and candidate over a dataset and compare them.

Python API
----------
``result = run_check(reference, candidate, data, masks=None, manifest=None, options=CheckOptions(...))``

* ``reference``: an ``nn.Module``, a model file (loaded with :func:`segdeploy.load.load_model`), an ``.onnx``
  path, or any :class:`~segdeploy.runners.base.Runner`.
* ``candidate``: an ``.onnx`` path (ONNX Runtime), an engine path (TensorRT runner), or a Runner.
* ``data``: a :class:`~segdeploy.datasets.Dataset`, or an image folder (``masks``: its mask folder).
* ``manifest``: path or dict from ``segdeploy export``; it supplies preprocessing, the shape profile and the
  classes. When omitted and the candidate ONNX has a ``manifest.json`` beside it, that one is used (noted
  in the report). Without any manifest: default ImageNet preprocessing, no padding multiple (noted).

Returns a :class:`CheckResult` (typed fields + ``report``, the JSON document of docs/parity_report.md).
It does not raise when the gate trips: call ``result.raise_for_gate()`` (the CLI does, after writing the
report). Raises SegdeployError subclasses for fatal problems: DataError (dataset), ShapeError/ModelLoadError
(model vs input/manifest), VerificationError (NaN/Inf outputs under ``on_error="fail"``).

Loop: streaming and batched -- at most ``batch_size`` decoded images (of the same padded size) are in
memory at a time, plus the ``worst_k`` worst images' class maps; per image: argmax of both outputs,
map back to the original size, three exact confusion-matrix updates (reference vs truth, candidate vs
truth, candidate vs reference), per-image scores for the worst-image list.
``on_error="skip"`` turns per-image problems into entries of ``report["errors"]`` instead of stopping.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from segdeploy.datasets import Dataset, Entry, Sample, open_dataset
from segdeploy.errors import (
    ArtifactError,
    DataError,
    ShapeError,
    UsageError,
    VerificationError,
)
from segdeploy.evaluation import ImageError, PredictionLoop
from segdeploy.manifest import ManifestView
from segdeploy.metrics import ConfusionMatrix
from segdeploy.parity.gate import GateOptions, GateResult, evaluate_gate, raise_for_gate
from segdeploy.parity.palette_png import encode_class_map
from segdeploy.parity.report_json import (
    SCHEMA_NAME,
    SCHEMA_VERSION,
    confusion_section,
    created_by,
    metrics_from_confusion,
    versions,
)
from segdeploy.progress import Progress
from segdeploy.runners import Runner, open_runner
from segdeploy.spec import Preprocess, ShapeProfile

ON_ERROR = ("fail", "skip")


@dataclass(frozen=True)
class CheckOptions:
    """Options of one check run (all typed; see the CLI for their flags)."""

    batch_size: int = 1
    num_classes: int | None = None  # expected class count (checked against model and manifest)
    class_names: tuple[str, ...] = ()
    on_error: str = "fail"  # "fail" | "skip"
    worst_k: int = 8
    gate: GateOptions = field(default_factory=GateOptions)
    shard: tuple[int, int] | None = None  # (index, count)
    reference_options: Any = None  # TorchOptions / OrtOptions for the reference runner
    candidate_options: Any = None  # OrtOptions / TensorRTOptions for the candidate runner

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.on_error not in ON_ERROR:
            raise UsageError(f"--on-error must be fail or skip, got {self.on_error!r}")
        if self.worst_k < 0:
            raise UsageError(f"--worst must be >= 0, got {self.worst_k}")
        if self.num_classes is not None and self.num_classes < 1:
            raise UsageError(f"--num-classes must be >= 1, got {self.num_classes}")
        if self.shard is not None:
            i, n = self.shard
            if n < 1 or not 0 <= i < n:
                raise UsageError(f"--shard {i}/{n}: need 0 <= I < N")


@dataclass(frozen=True)
class CheckResult:
    """Typed view of one check; ``report`` is the JSON document."""

    report: dict[str, Any]
    gate: GateResult
    reference_cm: ConfusionMatrix | None
    candidate_cm: ConfusionMatrix | None
    agreement_cm: ConfusionMatrix
    errors: tuple[ImageError, ...]

    @property
    def mode(self) -> str:
        return self.report["mode"]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.report["metrics"]

    @property
    def worst_images(self) -> list[dict[str, Any]]:
        return self.report["worst_images"]

    @property
    def passed(self) -> bool | None:
        return self.gate.passed

    def raise_for_gate(self) -> None:
        raise_for_gate(self.gate)


# ---------------------------------------------------------------------------------------------- helpers


def _image_miou(add: np.ndarray, inv: np.ndarray | None) -> float | None:
    """mIoU of one image's counts over the classes present in truth or prediction."""
    tp = np.diag(add)
    gt = add.sum(axis=1) + (inv if inv is not None else 0)
    union = gt + add.sum(axis=0) - tp
    present = union > 0
    if not present.any():
        return None
    return float((tp[present] / union[present]).mean())


def worst_sort_key(item: dict[str, Any], mode: str) -> tuple:
    """Total order of worst images, worst first (shared with the shard merge)."""
    if mode == "labelled":
        # largest drop first; ties (e.g. zero drift everywhere): least agreement, then the hardest images
        drop = item.get("miou_drop_points")
        cand = item.get("candidate_miou")
        return (
            -(drop if drop is not None else float("-inf")),
            item["pixel_agreement"],
            cand if cand is not None else 1.0,
            item["stem"],
        )
    miou = item.get("agreement_miou")
    return (item["pixel_agreement"], miou if miou is not None else 1.0, item["stem"])


def _describe_runner(r: Runner, path: Any) -> dict[str, Any]:
    from segdeploy.fsutil import sha256_file

    d = r.describe()
    p = d.get("path") or (str(path) if isinstance(path, (str, os.PathLike)) else None)
    d["path"] = p
    d["sha256"] = sha256_file(p) if p and os.path.isfile(p) else None
    return d


def _resolve_manifest(manifest: Any, candidate: Any, notes: list[str]) -> tuple[ManifestView | None, str | None]:
    """The manifest and its path: ``manifest`` (dict, export directory or manifest.json), else the export
    directory the candidate sits in (validated with every file's hash), else (None, None)."""
    from segdeploy.exportdir import ExportDir
    from segdeploy.manifest import ManifestDocument, validate_manifest
    from segdeploy.vocab import MANIFEST

    if isinstance(manifest, dict):
        return ManifestDocument(validate_manifest(manifest)), None
    if manifest is not None:
        ed = ExportDir.open(manifest)
        return ed, str(ed.manifest_path)
    if isinstance(candidate, (str, os.PathLike)):
        beside = Path(candidate).parent / MANIFEST
        ed = ExportDir.beside(candidate)  # any manifest.json entry there is read (a FIFO or link: one line)
        if ed is not None:
            name = Path(candidate).name
            if not ed.has(name):
                notes.append(f"{name} is not listed in {beside}; its preprocessing and profile are used anyway")
            notes.append(f"using the manifest beside the candidate: {beside}")
            return ed, str(beside)
    return None, None


def _make_runner(target: Any, options: Any) -> Runner:
    if isinstance(target, Runner):
        return target
    return open_runner(target, options=options)


# ---------------------------------------------------------------------------------------------- the loop


class _Accumulator:
    """Confusion matrices, worst-image candidates, errors and timings of one run."""

    def __init__(self, labelled: bool, ignore_index: int, worst_k: int, on_error: str):
        self.labelled = labelled
        self.ignore_index = ignore_index
        self.worst_k = worst_k
        self.on_error = on_error
        self.num_classes: int | None = None
        self.ref_cm: ConfusionMatrix | None = None
        self.cand_cm: ConfusionMatrix | None = None
        self.agree_cm: ConfusionMatrix | None = None
        self.worst: list[tuple[tuple, dict[str, Any], np.ndarray, np.ndarray]] = []
        self.errors: list[ImageError] = []
        self.evaluated = 0
        self.nonfinite_images = 0
        self.nonfinite_values = 0
        self.t_metrics = 0.0

    @property
    def mode(self) -> str:
        return "labelled" if self.labelled else "unlabelled"

    def set_classes(self, k: int) -> None:
        self.num_classes = k
        if self.labelled:
            self.ref_cm = ConfusionMatrix(k, self.ignore_index)
            self.cand_cm = ConfusionMatrix(k, self.ignore_index)
        self.agree_cm = ConfusionMatrix(k, None)

    def add_image(self, sample: Sample, ref_pred: np.ndarray, cand_pred: np.ndarray, nonfinite_px: int) -> None:
        """Score one image (predictions at original size; cand_pred -1 where invalid). Raises DataError."""
        t0 = time.perf_counter()
        ag_add, ag_inv = self.agree_cm.counts(cand_pred, ref_pred, sample.stem)
        rec: dict[str, Any] = {
            "stem": sample.stem,
            "image": sample.path,
            "mask": None,
            "height": int(ref_pred.shape[0]),
            "width": int(ref_pred.shape[1]),
            "pixel_agreement": float(np.trace(ag_add) / ref_pred.size) if ref_pred.size else 1.0,
            "agreement_miou": _image_miou(ag_add, ag_inv),
            "reference_miou": None,
            "candidate_miou": None,
            "miou_drop_points": None,
            "nonfinite_pixels": int(nonfinite_px),
        }
        if self.labelled:
            name = f"mask of {sample.stem}"
            r_add, r_inv = self.ref_cm.counts(ref_pred, sample.mask, name)
            c_add, c_inv = self.cand_cm.counts(cand_pred, sample.mask, name)
            rec["reference_miou"] = _image_miou(r_add, r_inv)
            rec["candidate_miou"] = _image_miou(c_add, c_inv)
            if rec["reference_miou"] is not None and rec["candidate_miou"] is not None:
                rec["miou_drop_points"] = 100.0 * (rec["reference_miou"] - rec["candidate_miou"])
            # all counts computed: now add (nothing half-added when a mask is bad)
            self.ref_cm.matrix += r_add
            self.cand_cm.matrix += c_add
            if r_inv is not None:
                self.ref_cm.invalid += r_inv
            if c_inv is not None:
                self.cand_cm.invalid += c_inv
        self.agree_cm.matrix += ag_add
        if ag_inv is not None:
            self.agree_cm.invalid += ag_inv
        self.evaluated += 1
        if self.worst_k:
            self.worst.append((worst_sort_key(rec, self.mode), rec, ref_pred, cand_pred))
            if len(self.worst) >= 2 * self.worst_k:
                self._trim()
        self.t_metrics += time.perf_counter() - t0

    def _trim(self) -> None:
        self.worst.sort(key=lambda w: w[0])
        del self.worst[self.worst_k :]

    def worst_records(self, entries: dict[str, Entry]) -> list[dict[str, Any]]:
        self._trim()
        out = []
        for _, rec, ref_pred, cand_pred in self.worst:
            rec = dict(rec)
            e = entries.get(rec["stem"])
            rec["mask"] = e.mask_path if e is not None else None
            rec["reference_png"] = encode_class_map(ref_pred, self.num_classes)
            rec["candidate_png"] = encode_class_map(cand_pred, self.num_classes)
            out.append(rec)
        return out


@dataclass
class _Setup:
    """What a check run settled before the loop: preprocessing, profile, classes, the manifest."""

    preprocess: Preprocess
    profile: ShapeProfile | None
    man_k: int | None
    man_path: str | None
    class_names: tuple[str, ...]
    notes: list[str]


def _setup(manifest: Any, candidate: Any, preprocess: Preprocess | None, profile: ShapeProfile | None,
           opts: CheckOptions) -> _Setup:
    notes: list[str] = []
    man, man_path = _resolve_manifest(manifest, candidate, notes)
    if preprocess is None:
        preprocess = man.preprocess if man is not None else Preprocess()
        if man is None:
            notes.append("no manifest: default ImageNet preprocessing (mean/std, RGB, pad mode)")
    if profile is None and man is not None:
        profile = man.profile
    if profile is None:
        notes.append("no shape profile: images are not padded to a multiple")
    elif profile.channels != 3:
        raise ShapeError(
            f"the model takes {profile.channels}-channel input but segdeploy check feeds RGB images (3 channels); "
            "check the manifest, or evaluate this model from Python with your own Runner"
        )
    man_k = man.num_classes if man is not None else None
    class_names = tuple(opts.class_names) or (man.class_names if man is not None else ())
    if opts.num_classes is not None and man_k is not None and opts.num_classes != man_k:
        raise UsageError(f"--num-classes {opts.num_classes} contradicts the manifest ({man_k} classes)")
    return _Setup(preprocess, profile, man_k, man_path, class_names, notes)


def _score(loop: PredictionLoop, acc: _Accumulator) -> None:
    """Score every prediction of ``loop`` into ``acc`` (reference and candidate maps at original size)."""
    for pred in loop:
        s = pred.sample
        if acc.num_classes is None:
            acc.set_classes(loop.num_classes)
        if pred.bad_pixels["reference"]:
            loop.record(s.stem, s.path, "nonfinite_reference", VerificationError(
                f"reference output for {s.stem} has NaN/Inf at {pred.bad_pixels['reference']} pixels; "
                "the reference itself is broken at this input"))
            continue
        bad_px, bad_vals = pred.bad_pixels["candidate"], pred.bad_values["candidate"]
        if bad_px:
            loop.record(s.stem, s.path, "nonfinite_candidate", VerificationError(
                f"candidate output for {s.stem} has {bad_vals} NaN/Inf values ({bad_px} pixels); "
                "the candidate is broken at this input (--on-error skip scores those pixels as wrong)"))
            acc.nonfinite_images += 1
            acc.nonfinite_values += bad_vals
        try:
            acc.add_image(s, pred.maps["reference"], pred.maps["candidate"], bad_px)
        except DataError as err:
            loop.record(s.stem, s.path, "data", err)


def _open_data(data: Dataset | str | os.PathLike, masks: str | os.PathLike | None,
               opts: CheckOptions) -> tuple[Dataset, int, bool]:
    """(the dataset or its shard, the whole dataset's size, labelled?) -- labelled is decided on the whole dataset,
    so every shard agrees. DataError when only some items have masks."""
    ds = data if isinstance(data, Dataset) else open_dataset(data, masks)
    total_entries = len(ds)
    with_mask = sum(e.mask_path is not None for e in ds.entries)
    if 0 < with_mask < len(ds):
        raise DataError(f"{with_mask} of {len(ds)} items have masks; give a mask for every image or none")
    if opts.shard is not None:
        ds = ds.subset(*opts.shard)
    return ds, total_entries, with_mask > 0


def _class_guard(st: _Setup, opts: CheckOptions) -> Callable[[int], None]:
    """The loop's ``on_classes``: the model's class count must match the manifest's and ``--num-classes``."""

    def on_classes(k: int) -> None:
        if st.man_k is not None and st.man_k != k:
            raise ArtifactError(
                f"manifest{' ' + st.man_path if st.man_path else ''} says {st.man_k} classes but the model outputs {k}; "
                "pass the manifest exported from this model"
            )
        if opts.num_classes is not None and opts.num_classes != k:
            raise UsageError(f"--num-classes {opts.num_classes} but the model outputs {k} classes")

    return on_classes


def _loop(loop: PredictionLoop, acc: _Accumulator, runners: tuple[Runner, Runner], on_error: str) -> float:
    """Open both runners, score every prediction into ``acc``, close them; return when the loop started."""
    try:
        for role, r in zip(("reference", "candidate"), runners):
            loop.progress.step(f"check: opening the {role}, {r.name}")
            r.open()
        t_loop = time.perf_counter()
        try:
            _score(loop, acc)
        except DataError as e:  # a file the shared readers cannot decode: check alone can score around it
            if on_error != "fail" or "cannot read" not in e.message:
                raise
            raise DataError(f"{e.message}, or pass --on-error skip to score the other images") from None
    finally:
        for r in runners:
            r.close()
    acc.errors = loop.errors
    return t_loop


def _no_prediction(acc: _Accumulator, ds: Dataset, total_entries: int, st: _Setup, opts: CheckOptions) -> None:
    """Nothing was predicted (an empty shard, or every image failed): settle the classes or say why not."""
    k = opts.num_classes or st.man_k
    if len(ds) == 0 and k is None:
        raise DataError(
            f"shard {opts.shard[0]}/{opts.shard[1]} has no images (the dataset has {total_entries}) and the "
            "class count is unknown; use fewer shards, or pass --manifest or --num-classes"
        )
    if len(ds) and (k is None or opts.shard is None):
        first = f" (first: {acc.errors[0].message})" if acc.errors else ""
        raise DataError(f"no image could be evaluated: {len(acc.errors)} of {len(ds)} failed{first}")
    acc.set_classes(k)


def run_check(
    reference: Any,
    candidate: Any,
    data: Dataset | str | os.PathLike,
    masks: str | os.PathLike | None = None,
    *,
    manifest: Any = None,
    preprocess: Preprocess | None = None,
    profile: ShapeProfile | None = None,
    options: CheckOptions | None = None,
    progress: Progress | None = None,
    command: str | None = None,
) -> CheckResult:
    """Run the parity check (see module docstring). ``progress``: the images are a counted task (``check``)."""
    opts = options or CheckOptions()
    t_start = time.perf_counter()
    st = _setup(manifest, candidate, preprocess, profile, opts)
    ds, total_entries, labelled = _open_data(data, masks, opts)
    acc = _Accumulator(labelled, ds.ignore_index, opts.worst_k, opts.on_error)
    ref_r = _make_runner(reference, opts.reference_options)
    cand_r = _make_runner(candidate, opts.candidate_options)
    loop = PredictionLoop(ds, {"reference": ref_r, "candidate": cand_r}, st.preprocess, st.profile,
                          batch_size=opts.batch_size, on_error=opts.on_error, progress=progress, label="check",
                          on_classes=_class_guard(st, opts))
    t_loop = _loop(loop, acc, (ref_r, cand_r), opts.on_error)
    t_end = time.perf_counter()
    if acc.num_classes is None:
        _no_prediction(acc, ds, total_entries, st, opts)
    timing = {"load_s": loop.timing["load_s"], "preprocess_s": loop.timing["preprocess_s"], "open_s": t_loop - t_start,
              "loop_s": t_end - t_loop, "total_s": time.perf_counter() - t_start}
    report = _report(acc, st, ds, data, masks, total_entries, labelled, ref_r, cand_r, reference, candidate, opts,
                     timing, command)
    gate = evaluate_gate(report, opts.gate) if opts.shard is None else GateResult(opts.gate, False, None)
    report["gate"] = gate.to_dict()
    return CheckResult(report, gate, acc.ref_cm, acc.cand_cm, acc.agree_cm, tuple(acc.errors))


def _report(acc, st: _Setup, ds, data, masks, total_entries, labelled, ref_r, cand_r, reference, candidate,
            opts: CheckOptions, timing: dict, command) -> dict[str, Any]:
    """The JSON document of docs/parity_report.md (without the gate)."""
    ref_t, cand_t = ref_r.timing_summary(), cand_r.timing_summary()
    runner_s = ref_t["total_s"] + cand_t["total_s"]
    entries = {e.stem: e for e in ds.entries}
    partial = opts.shard is not None
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "segdeploy_version": versions()["segdeploy"],
        "partial": partial,
        "shard": {"index": opts.shard[0], "count": opts.shard[1]} if partial else None,
        "mode": acc.mode,
        "command": command,
        "created_by": created_by(),
        "versions": versions(),
        "reference": _describe_runner(ref_r, reference),
        "candidate": _describe_runner(cand_r, candidate),
        "manifest": st.man_path,
        "preprocess": st.preprocess.to_dict(),
        "profile": st.profile.to_dict() if st.profile is not None else None,
        "dataset": {
            "description": ds.description,
            "images": str(data) if not isinstance(data, Dataset) else data.description,
            "masks": str(masks) if masks is not None else (
                os.path.dirname(ds.entries[0].mask_path) if labelled and ds.entries else None
            ),
            "num_entries": len(ds),
            "num_entries_total": total_entries,
            "fingerprint": ds.fingerprint,  # the whole dataset's listing: merge refuses shards of another dataset
            "num_evaluated": acc.evaluated,
            "num_skipped": len(ds) - acc.evaluated,
        },
        "classes": {"num_classes": acc.num_classes, "names": list(st.class_names), "ignore_index": ds.ignore_index},
        "confusion": confusion_section(acc.ref_cm, acc.cand_cm, acc.agree_cm),
        "metrics": metrics_from_confusion(acc.ref_cm, acc.cand_cm, acc.agree_cm),
        "worst_images_by": "miou_drop_points" if labelled else "pixel_agreement",
        "worst_k": opts.worst_k,
        "worst_images": acc.worst_records(entries),
        "errors": [e.to_dict() for e in acc.errors],
        "nonfinite": {"images": acc.nonfinite_images, "values": acc.nonfinite_values},
        "timing": {
            "reference": ref_t,
            "candidate": cand_t,
            "load_s": timing["load_s"],
            "preprocess_s": timing["preprocess_s"],
            "metrics_s": acc.t_metrics,
            "open_s": timing["open_s"],
            "loop_s": timing["loop_s"],
            "total_s": timing["total_s"],
            "overhead_fraction": (timing["loop_s"] - runner_s) / runner_s if runner_s > 0 else None,
        },
        "notes": st.notes,
    }
