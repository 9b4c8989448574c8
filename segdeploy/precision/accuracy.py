"""CPU accuracy check of a lowered ONNX (INT8 Q/DQ or FP16) against the PyTorch reference.

Contract
--------
``check_accuracy(candidate_onnx, reference, dataset, preprocess=..., profile=..., num_classes=...)``
runs the reference (an ``nn.Module`` or any :class:`~segdeploy.runners.base.Runner`) and the candidate
under ONNX Runtime on the CPU at two graph-optimisation levels over the validation dataset, streaming
``batch_size`` images at a time, and returns an :class:`AccuracyReport`:

* ``disable`` (ORT_DISABLE_ALL): Q/DQ emulated in float, node by node -- the faithful reference for what
  TensorRT computes with explicit quantization; the accuracy budget is measured at this level;
* ``all`` (ORT_ENABLE_ALL): ORT fuses DQ->Conv->Q into int8 kernels (QLinearConv) -- what a CPU deployment
  would get, and a cross-check: the two levels disagreeing by more than ``disagree_tol`` mIoU points or
  ``1 - agreement`` > 1% is flagged (``report.disagree``) with a note; the check never picks one silently.

Metrics come from :class:`segdeploy.metrics.ConfusionMatrix` (exact counts). ``drop`` is
``100 * (mIoU_reference - mIoU_candidate)`` in points against the masks; a dataset without masks is scored
against the reference's own predictions (``truth == "reference"``, reference mIoU = 100), said in the report.
Non-finite candidate logits make that pixel an invalid prediction (a miss), never a silent class 0.

:class:`Evaluator` holds a small preprocessed subset and the reference predictions in memory so the
budget search can score many candidates without re-running PyTorch.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from segdeploy.errors import DataError, UsageError
from segdeploy.progress import Progress, as_progress
from segdeploy.vocab import GATED_ORT_LEVEL, PRECISION_CHECK_LEVELS, OrtLevel



@dataclass
class EvalBatch:
    array: np.ndarray  # float32 NCHW
    infos: list  # segdeploy.datasets.preprocess.InputInfo per image
    masks: list | None  # HxW truth per image, or None when the dataset has no masks
    stems: list[str]


@dataclass
class Score:
    """One candidate at one ORT level."""

    level: str
    miou: float | None
    pixel_accuracy: float | None
    agreement: float  # fraction of pixels whose class equals the reference's
    drop: float | None  # mIoU points lost vs the reference (positive = worse)
    invalid_pixels: int = 0

    def to_dict(self) -> dict[str, Any]:
        r = lambda v, k=4: None if v is None else round(float(v), k)  # noqa: E731
        return {
            "ort_level": OrtLevel(self.level).ort_name,
            "miou": r(self.miou, 6),
            "pixel_accuracy": r(self.pixel_accuracy, 6),
            "agreement_vs_reference": r(self.agreement, 6),
            "miou_drop_points": r(self.drop),
            "invalid_pixels": int(self.invalid_pixels),
        }


@dataclass
class AccuracyReport:
    images: int
    truth: str  # "masks" or "reference"
    reference_miou: float | None
    reference_pixel_accuracy: float | None
    levels: dict[str, Score] = field(default_factory=dict)
    levels_agreement: float | None = None  # pixel agreement between the two ORT levels
    disagree: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def drop(self) -> float | None:
        """The gated drop: at ORT_DISABLE_ALL when measured, else the first level measured."""
        s = self.levels.get(GATED_ORT_LEVEL) or next(iter(self.levels.values()), None)
        return None if s is None else s.drop

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "truth": self.truth,
            "reference": {"miou": self.reference_miou, "pixel_accuracy": self.reference_pixel_accuracy},
            "levels": {k: v.to_dict() for k, v in self.levels.items()},
            "levels_agreement": None if self.levels_agreement is None else round(self.levels_agreement, 6),
            "levels_disagree": self.disagree,
            "gated_level": GATED_ORT_LEVEL.ort_name if GATED_ORT_LEVEL in self.levels else None,
            "miou_drop_points": None if self.drop is None else round(self.drop, 4),
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------------------------ data


def class_maps(logits: np.ndarray, infos: Sequence) -> tuple[list[np.ndarray], int]:
    """Argmax class maps at each image's original size; non-finite pixels become -1 (invalid)."""
    from segdeploy.datasets.preprocess import restore_prediction
    from segdeploy.evaluation import class_map

    maps, nbad = [], 0
    for i in range(logits.shape[0]):
        pred, npx, _ = class_map(logits[i])
        maps.append(restore_prediction(pred, infos[i]))
        nbad += npx
    return maps, nbad


def _runner_for_module(reference):
    from segdeploy.runners import Runner, open_runner

    if isinstance(reference, Runner):
        return reference
    try:
        reference.eval()
    except (NotImplementedError, RuntimeError):
        # torch.export modules (.pt2 -> ep.module()) refuse eval()/train() but are already in inference
        # form; hide them from nn.Module's recursive eval() that the torch runner calls
        reference = _NoModeSwitch(reference)
    return open_runner(reference, kind="torch")


def _no_mode_switch_cls():
    import torch

    class NoModeSwitch(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            object.__setattr__(self, "_inner", inner)  # not a registered child: eval() does not recurse

        def forward(self, x):
            return self._inner(x)

    return NoModeSwitch


def _NoModeSwitch(inner):  # noqa: N802 - factory keeps torch a lazy import
    return _no_mode_switch_cls()(inner)


def _ort_runner(path: str, level: str):
    from segdeploy.runners import open_runner
    from segdeploy.runners.onnxruntime import OrtOptions

    return open_runner(path, kind="onnxruntime", options=OrtOptions(graph_optimization_level=level))


class _Scorer:
    """Confusion matrices of one candidate (vs truth) plus its agreement with the reference."""

    def __init__(self, num_classes: int, ignore_index: int | None):
        from segdeploy.metrics import ConfusionMatrix

        self.cm = ConfusionMatrix(num_classes, ignore_index)
        self.same = 0
        self.total = 0
        self.invalid = 0

    def update(self, preds: list[np.ndarray], truths: list[np.ndarray], refs: list[np.ndarray], nbad: int) -> None:
        for p, t, r in zip(preds, truths, refs):
            self.cm.update(p, t)
            self.same += int((p == r).sum())
            self.total += int(p.size)
        self.invalid += nbad

    def score(self, level: str, ref_miou: float | None) -> Score:
        s = self.cm.summary()
        miou = s["miou"]
        drop = None if miou is None or ref_miou is None else 100.0 * (ref_miou - miou)
        agree = self.same / self.total if self.total else 0.0
        return Score(level, miou, s["pixel_accuracy"], agree, drop, self.invalid)


def check_accuracy(candidate_onnx: str | os.PathLike, reference: Any, dataset, **kwargs) -> AccuracyReport:
    """Score one candidate ONNX (see :func:`check_accuracy_many` for the keywords)."""
    return check_accuracy_many({"candidate": candidate_onnx}, reference, dataset, **kwargs)["candidate"]


class _Tally:
    """One pass's counts: the reference vs truth, each (candidate, level) vs truth and vs the reference, and the
    agreement between a candidate's two levels."""

    def __init__(self, candidates: Sequence[str], levels: Sequence[str], num_classes: int, ignore_index: int | None):
        from segdeploy.metrics import ConfusionMatrix

        self.levels = tuple(levels)
        self.names = {(c, lv): f"{c}@{lv}" for c in candidates for lv in levels}  # runner name per (candidate, level)
        self.ref_cm = ConfusionMatrix(num_classes, ignore_index)
        self.scorers = {k: _Scorer(num_classes, ignore_index) for k in self.names}
        self.cross = {c: [0, 0] for c in candidates}  # pixels equal between the two levels, pixels
        self.truth_kind: str | None = None
        self.images = 0

    def add(self, pred) -> None:
        """Score one :class:`~segdeploy.evaluation.Prediction` (every runner's class map of one image)."""
        ref = pred.maps["reference"]
        kind = "masks" if pred.sample.mask is not None else "reference"
        if self.truth_kind is None:
            self.truth_kind = kind
        elif self.truth_kind != kind:
            raise DataError("some validation images have masks and some do not; give a mask for every image")
        truth = pred.sample.mask if pred.sample.mask is not None else ref
        self.ref_cm.update(ref, truth)
        for k, name in self.names.items():
            self.scorers[k].update([pred.maps[name]], [truth], [ref], pred.bad_pixels[name])
        if len(self.levels) == 2:
            for c, counts in self.cross.items():
                x0, x1 = (pred.maps[self.names[(c, lv)]] for lv in self.levels)
                counts[0] += int((x0 == x1).sum())
                counts[1] += int(x0.size)
        self.images += 1

    def report(self, candidate: str, disagree_tol: float) -> AccuracyReport:
        """The :class:`AccuracyReport` of one candidate (levels flagged when they disagree, see the module docstring)."""
        rs = self.ref_cm.summary()
        rep = AccuracyReport(images=self.images, truth=self.truth_kind or "masks", reference_miou=rs["miou"],
                             reference_pixel_accuracy=rs["pixel_accuracy"])
        for lv in self.levels:
            rep.levels[lv] = self.scorers[(candidate, lv)].score(lv, rs["miou"])
        if rep.truth == "reference":
            rep.notes.append("the validation set has no masks: mIoU is measured against the PyTorch reference's predictions")
        same, total = self.cross[candidate]
        if len(self.levels) == 2 and total:
            rep.levels_agreement = same / total
            d0, d1 = rep.levels[self.levels[0]].drop, rep.levels[self.levels[1]].drop
            gap = abs(d0 - d1) if d0 is not None and d1 is not None else 0.0
            if gap > disagree_tol or rep.levels_agreement < 0.99:
                rep.disagree = True
                rep.notes.append(
                    f"ONNX Runtime levels disagree: mIoU drop {d0:.2f} (DISABLE_ALL) vs {d1:.2f} (ENABLE_ALL) points, "
                    f"{100 * rep.levels_agreement:.2f}% pixel agreement; ORT's int8 fusions differ from Q/DQ emulation -- "
                    "the gate uses DISABLE_ALL, verify on the target with TensorRT"
                )
        for lv, sc in rep.levels.items():
            if sc.invalid_pixels:
                rep.notes.append(f"{sc.invalid_pixels} pixels had non-finite logits at {OrtLevel(lv).ort_name} (counted as misses)")
        return rep


def check_accuracy_many(
    candidates: Mapping[str, str | os.PathLike],
    reference: Any,
    dataset,
    *,
    preprocess,
    profile,
    num_classes: int,
    levels: Sequence[str] = PRECISION_CHECK_LEVELS,
    batch_size: int = 8,
    ignore_index: int | None = 255,
    disagree_tol: float = 0.5,
    limit: int | None = None,
    progress: Progress | None = None,
    label: str = "check",
) -> dict[str, AccuracyReport]:
    """Score each candidate ONNX at each ORT level against the reference in ONE pass over ``dataset``
    (the reference runs once per batch). Returns name -> :class:`AccuracyReport`. ``progress``: the images are
    a counted task named ``label``.

    Raises DataError for an empty dataset or mixed labelled/unlabelled images, UsageError for an unknown
    level; runner errors propagate.
    """
    from segdeploy.evaluation import PredictionLoop

    for lv in levels:
        OrtLevel.parse(lv, "ONNX Runtime level")
    if not candidates:
        raise UsageError("no candidate model to check")
    ignore_index = getattr(dataset, "ignore_index", ignore_index)
    if (len(dataset) if limit is None else min(limit, len(dataset))) == 0:
        raise DataError("the validation set is empty; pass --val DIR with images/ and masks/")
    tally = _Tally(list(candidates), levels, num_classes, ignore_index)
    ref_runner = _runner_for_module(reference)
    runners = {tally.names[(c, lv)]: _ort_runner(str(p), lv) for c, p in candidates.items() for lv in levels}
    loop = PredictionLoop(dataset, {"reference": ref_runner, **runners}, preprocess, profile, batch_size=batch_size,
                          limit=limit, progress=progress, label=label)
    try:
        for pred in loop:
            tally.add(pred)
    finally:
        for r in runners.values():
            r.close()
        if ref_runner is not reference:
            ref_runner.close()
    return {c: tally.report(c, disagree_tol) for c in candidates}


class Evaluator:
    """A small in-memory validation subset with the reference's predictions, for repeated candidate scoring.

    ``Evaluator(reference, dataset, preprocess=..., profile=..., num_classes=..., limit=32)``;
    ``score_model(onnx_model_or_bytes, level="disable") -> Score``. Memory: ``limit`` preprocessed images.
    """

    def __init__(self, reference, dataset, *, preprocess, profile, num_classes: int, limit: int | None = 32,
                 batch_size: int = 8, ignore_index: int | None = 255, progress: Progress | None = None):
        from segdeploy.evaluation import preprocessed_batches
        from segdeploy.metrics import ConfusionMatrix

        ignore_index = getattr(dataset, "ignore_index", ignore_index)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.batches = [EvalBatch(a, i, m, st) for a, i, m, st in
                        preprocessed_batches(dataset, preprocess, profile, batch_size, limit)]
        if not self.batches:
            raise DataError("the validation subset is empty; pass --val DIR with images/ and masks/")
        self.refs = self._reference_maps(reference, as_progress(progress))
        self.truths = [b.masks if b.masks is not None else r for b, r in zip(self.batches, self.refs)]
        cm = ConfusionMatrix(num_classes, ignore_index)
        for rs, ts in zip(self.refs, self.truths):
            for r, t in zip(rs, ts):
                cm.update(r, t)
        self.reference_miou = cm.summary()["miou"]
        self.images = sum(len(b.stems) for b in self.batches)
        self._tmp = tempfile.TemporaryDirectory(prefix="segdeploy-eval-")
        self.evaluations = 0

    def _reference_maps(self, reference, progress: Progress) -> list[list[np.ndarray]]:
        """The reference's class maps per batch (a counted task: this is the slow part of building the subset)."""
        runner = _runner_for_module(reference)
        refs = []
        try:
            with progress.task("budget: reference on the subset", sum(len(b.stems) for b in self.batches)) as task:
                for b in self.batches:
                    refs.append(class_maps(runner.infer(b.array), b.infos)[0])
                    task.advance(len(b.stems))
        finally:
            if runner is not reference:
                runner.close()
        return refs

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "Evaluator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def score_model(self, model, level: str = GATED_ORT_LEVEL) -> Score:
        """Score an ``onnx.ModelProto`` (or serialized bytes / a path) at one ORT level."""
        if isinstance(model, (str, os.PathLike)):
            path = str(model)
        else:
            data = model if isinstance(model, bytes) else model.SerializeToString()
            path = os.path.join(self._tmp.name, "candidate.onnx")
            with open(path, "wb") as f:
                f.write(data)
        runner = _ort_runner(path, level)
        scorer = _Scorer(self.num_classes, self.ignore_index)
        try:
            for b, refs, truths in zip(self.batches, self.refs, self.truths):
                preds, nbad = class_maps(runner.infer(b.array), b.infos)
                scorer.update(preds, truths, refs, nbad)
        finally:
            runner.close()
        self.evaluations += 1
        return scorer.score(level, self.reference_miou)
