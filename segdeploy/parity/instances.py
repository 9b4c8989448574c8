"""Instance-segmentation parity: a deployed Mask R-CNN-style model against its PyTorch reference.

Semantic parity compares class maps pixel by pixel; instance models output a *set* of detections per image
(``boxes [N,4]``, ``labels [N]``, ``scores [N]``, ``masks [N,1,H,W]`` probabilities, torchvision's
convention), whose order and count may differ between backends. This module matches the two sets and
reports how far the candidate drifted from the reference.

Matching (per image, per class, greedy by candidate score, COCO-style)
----------------------------------------------------------------------
Masks are binarised at ``mask_threshold`` (0.5, as torchvision's ``paste_masks`` users do). Detections
below ``score_threshold`` are dropped on both sides. Candidates are visited in descending score order
(ties: lower index first); each takes the still-unmatched reference instance *of the same label* with the
highest mask IoU, if that IoU is >= ``iou_threshold`` (default 0.5). A pair therefore always agrees on
the label and overlaps by at least the threshold. Two *empty* masks (all probabilities below the mask
threshold, common for tiny boxes) are compared by their box IoU instead, so identical empty detections match.
Note that tiny masks (a few pixels) amplify numerical noise: one flipped pixel of a 3-pixel mask is IoU 0.67.

Metrics (all over the whole dataset; per class too)
---------------------------------------------------
* ``matched_mask_iou``: mean mask IoU of the matched pairs (``None`` when nothing matched),
* ``recall``: matched / reference instances (the share of reference instances the candidate reproduced),
* ``precision``: matched / candidate instances,
* ``score_drift``: mean and max ``|score_ref - score_cand|`` over matched pairs,
* ``box_iou``: mean box IoU of matched pairs,
* counts: ``reference``, ``candidate``, ``matched``, ``missed`` (reference unmatched), ``extra``
  (candidate unmatched).

A ratio whose denominator is 0 is ``None`` (no instances on that side), never 1.0. Per-image results rank
the worst images by F1 of the matching (``2*matched / (reference + candidate)``), then by mean matched IoU;
images with no instance on either side agree trivially and are not listed.

Report document (``segdeploy.instance_report`` v1, JSON-ready; keys only ever added)
------------------------------------------------------------------------------------
``{"schema", "schema_version", "task": "instance", "options": {iou_threshold, mask_threshold,
score_threshold}, "num_images", "totals": <stats>, "per_class": {"<label>": <stats>}, "worst_images":
[{stem, reference, candidate, matched, f1, mean_mask_iou, image, height, width, reference_png,
candidate_png}], "reference": {kind, name, ...}, "candidate": {kind, name, path, sha256, providers,
device}, "classes": {"names": [...]}, "command", "versions", "created_by", "gate": {thresholds,
evaluated, passed, failures}}`` with ``<stats> = {reference, candidate, matched, missed, extra,
matched_mask_iou, box_iou, recall, precision, score_drift: {mean, max}}`` (fractions in [0, 1];
``null`` when undefined).

API
---
* :class:`InstanceOptions` -- thresholds (frozen dataclass).
* :func:`instances_from_outputs` -- validate raw arrays into :class:`Instances` (raises on bad shapes/NaN).
* :func:`match_instances` -- one image: the pairs and per-image counts (:class:`ImageMatch`).
* :class:`InstanceAccumulator` -- ``update`` per image, ``merge`` (shards add exactly), ``summary()``.
* :class:`TorchInstanceModel`, :class:`OnnxInstanceModel` -- callables ``image CHW float32 [0,1] ->
  Instances`` for a torchvision-style module and an exported ONNX graph (ONNX Runtime).
* :func:`compare_instances` -- run both models over images and return the JSON-ready report dict.
* :func:`run_instance_check` -- what ``segdeploy check --task instance`` runs (load model files, dataset).
* :func:`format_instance_report` -- the terminal summary.
* :class:`InstanceGate`, :func:`evaluate_instance_gate`, :func:`raise_for_instance_gate` -- the release
  gate (recall / precision / mask IoU floors in percent, score drift ceiling) -> GateError (exit 3).

Raises :class:`~segdeploy.errors.DataError` for malformed outputs (wrong shapes, mismatched lengths,
labels < 0) and :class:`~segdeploy.errors.VerificationError` for NaN/Inf in an output (reported as such,
never as accurate).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from segdeploy.errors import DataError, GateError, MissingDependencyError, UsageError, VerificationError

OUTPUT_NAMES = ("boxes", "labels", "scores", "masks")
SCHEMA_NAME = "segdeploy.instance_report"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class InstanceOptions:
    """Matching and reporting thresholds.

    iou_threshold: minimum mask IoU for a candidate to match a reference instance (0 < t <= 1).
    mask_threshold: probability above which a mask pixel is foreground (0 <= t < 1).
    score_threshold: detections with a lower score are ignored on both sides (>= 0).
    worst_k: how many worst images the report lists.
    """

    iou_threshold: float = 0.5
    mask_threshold: float = 0.5
    score_threshold: float = 0.0
    worst_k: int = 8

    def __post_init__(self) -> None:
        if not (0.0 < self.iou_threshold <= 1.0):
            raise UsageError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}; e.g. 0.5")
        if not (0.0 <= self.mask_threshold < 1.0):
            raise UsageError(f"mask_threshold must be in [0, 1), got {self.mask_threshold}; e.g. 0.5")
        if not (self.score_threshold >= 0.0) or math.isinf(self.score_threshold):
            raise UsageError(f"score_threshold must be a finite number >= 0, got {self.score_threshold}")
        if self.worst_k < 0:
            raise UsageError(f"worst_k must be >= 0, got {self.worst_k}")


@dataclass(frozen=True)
class Instances:
    """The detections of one image after thresholding.

    boxes float64 [N,4] (x1, y1, x2, y2), labels int64 [N], scores float64 [N], masks bool [N,H,W].
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.masks.shape[1]), int(self.masks.shape[2])


def instances_from_outputs(
    boxes: Any,
    labels: Any,
    scores: Any,
    masks: Any,
    options: InstanceOptions = InstanceOptions(),
    *,
    image_size: tuple[int, int] | None = None,
    source: str = "model",
) -> Instances:
    """Validate one image's raw outputs and apply the score and mask thresholds.

    ``masks`` may be [N,1,H,W] or [N,H,W] probabilities (or booleans). ``image_size`` (H, W), when given,
    is the size the masks must have (needed when N == 0 and the mask array carries no H/W). ``source``
    names the side ("reference"/"candidate") in error messages.
    """
    b = np.asarray(boxes, dtype=np.float64)
    lab = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(masks)
    if m.ndim == 4:
        if m.shape[1] != 1:
            raise DataError(f"{source} masks have shape {m.shape}; expected [N,1,H,W] or [N,H,W]")
        m = m[:, 0]
    if m.ndim != 3:
        raise DataError(f"{source} masks have shape {m.shape}; expected [N,1,H,W] or [N,H,W]")
    n = m.shape[0]
    if b.ndim != 2 or b.shape[1] != 4 or lab.ndim != 1 or s.ndim != 1 or not (b.shape[0] == lab.shape[0] == s.shape[0] == n):
        raise DataError(
            f"{source} outputs disagree: boxes {b.shape}, labels {lab.shape}, scores {s.shape}, masks {np.shape(masks)}; "
            "expected boxes [N,4], labels [N], scores [N], masks [N,1,H,W] with one N"
        )
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
            raise DataError(f"{source} labels are not integers; expected class indices")
    lab = lab.astype(np.int64)
    if lab.size and lab.min() < 0:
        raise DataError(f"{source} has a negative label ({int(lab.min())}); expected class indices >= 0")
    if image_size is not None and n and tuple(m.shape[1:]) != tuple(image_size):
        raise DataError(f"{source} masks are {m.shape[1]}x{m.shape[2]}, the image is {image_size[0]}x{image_size[1]}; "
                        "masks must be pasted at the input image size")
    for name, arr in (("boxes", b), ("scores", s)):
        if arr.size and not np.all(np.isfinite(arr)):
            raise VerificationError(f"{source} {name} contain NaN/Inf; the {source} output is not usable as is")
    if m.dtype != np.bool_:
        mf = m.astype(np.float32, copy=False)
        if mf.size and not np.all(np.isfinite(mf)):
            raise VerificationError(f"{source} masks contain NaN/Inf; the {source} output is not usable as is")
        m = mf > options.mask_threshold
    keep = s >= options.score_threshold
    if image_size is not None and n == 0:
        m = np.zeros((0, *image_size), dtype=bool)
    return Instances(boxes=b[keep], labels=lab[keep], scores=s[keep], masks=np.ascontiguousarray(m[keep]))


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boolean masks a [N,H,W] and b [M,H,W] -> float64 [N,M] (0 where both are empty).

    Intersections are exact integer counts (float32 GEMM is exact below 2**24 pixels, float64 above).
    """
    if a.shape[1:] != b.shape[1:]:
        raise DataError(f"reference masks are {a.shape[1]}x{a.shape[2]} but candidate masks are "
                        f"{b.shape[1]}x{b.shape[2]}; run both models on the same image size")
    n, m = a.shape[0], b.shape[0]
    if n == 0 or m == 0:
        return np.zeros((n, m), dtype=np.float64)
    hw = int(np.prod(a.shape[1:]))
    dt = np.float32 if hw < (1 << 24) else np.float64
    fa = a.reshape(n, hw).astype(dt)
    fb = b.reshape(m, hw).astype(dt)
    inter = (fa @ fb.T).astype(np.float64)
    area_a = a.reshape(n, hw).sum(axis=1, dtype=np.int64).astype(np.float64)
    area_b = b.reshape(m, hw).sum(axis=1, dtype=np.int64).astype(np.float64)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)
    return iou


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a [N,4] and b [M,4] (x1, y1, x2, y2) -> float64 [N,M]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclass(frozen=True)
class Pair:
    """One matched reference/candidate instance pair (indices into the thresholded Instances)."""

    ref: int
    cand: int
    label: int
    mask_iou: float
    box_iou: float
    score_ref: float
    score_cand: float


@dataclass(frozen=True)
class ImageMatch:
    """The matching of one image."""

    pairs: tuple[Pair, ...]
    ref_labels: np.ndarray  # int64 [N]
    cand_labels: np.ndarray  # int64 [M]

    @property
    def matched(self) -> int:
        return len(self.pairs)

    @property
    def f1(self) -> float | None:
        total = len(self.ref_labels) + len(self.cand_labels)
        return None if total == 0 else 2.0 * self.matched / total

    @property
    def mean_iou(self) -> float | None:
        return None if not self.pairs else float(np.mean([p.mask_iou for p in self.pairs]))

    def unmatched_ref(self) -> list[int]:
        taken = {p.ref for p in self.pairs}
        return [i for i in range(len(self.ref_labels)) if i not in taken]

    def unmatched_cand(self) -> list[int]:
        taken = {p.cand for p in self.pairs}
        return [j for j in range(len(self.cand_labels)) if j not in taken]


def match_instances(ref: Instances, cand: Instances, iou_threshold: float = 0.5) -> ImageMatch:
    """Greedy per-class matching by candidate score (see the module docstring)."""
    if len(ref) and len(cand) and ref.image_size != cand.image_size:
        raise DataError(f"reference masks are {ref.image_size} but candidate masks are {cand.image_size}; "
                        "run both models on the same image size")
    pairs: list[Pair] = []
    for label in np.intersect1d(np.unique(ref.labels), np.unique(cand.labels)):
        ri = np.flatnonzero(ref.labels == label)
        ci = np.flatnonzero(cand.labels == label)
        ious = mask_iou(ref.masks[ri], cand.masks[ci])
        bious = box_iou(ref.boxes[ri], cand.boxes[ci])
        # two empty masks (every probability below mask_threshold, common for tiny boxes) are the same set:
        # compare such detections by their boxes so identical empty detections still match
        empty = (~ref.masks[ri].any(axis=(1, 2)))[:, None] & (~cand.masks[ci].any(axis=(1, 2)))[None, :]
        ious = np.where(empty, bious, ious)
        free = np.ones(len(ri), dtype=bool)
        order = np.argsort(-cand.scores[ci], kind="stable")
        for cj in order:
            col = np.where(free, ious[:, cj], -1.0)
            best = int(np.argmax(col))
            if col[best] >= iou_threshold:
                free[best] = False
                r, c = int(ri[best]), int(ci[cj])
                pairs.append(Pair(r, c, int(label), float(ious[best, cj]), float(bious[best, cj]),
                                  float(ref.scores[r]), float(cand.scores[c])))
    pairs.sort(key=lambda p: p.ref)
    return ImageMatch(tuple(pairs), ref.labels.copy(), cand.labels.copy())


@dataclass
class _ClassStats:
    reference: int = 0
    candidate: int = 0
    matched: int = 0
    iou_sum: float = 0.0
    box_iou_sum: float = 0.0
    score_diff_sum: float = 0.0
    score_diff_max: float = 0.0

    def add(self, other: "_ClassStats") -> None:
        self.reference += other.reference
        self.candidate += other.candidate
        self.matched += other.matched
        self.iou_sum += other.iou_sum
        self.box_iou_sum += other.box_iou_sum
        self.score_diff_sum += other.score_diff_sum
        self.score_diff_max = max(self.score_diff_max, other.score_diff_max)

    def summary(self) -> dict[str, Any]:
        def ratio(a: float, b: int) -> float | None:
            return None if b == 0 else a / b

        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "matched": self.matched,
            "missed": self.reference - self.matched,
            "extra": self.candidate - self.matched,
            "matched_mask_iou": ratio(self.iou_sum, self.matched),
            "box_iou": ratio(self.box_iou_sum, self.matched),
            "recall": ratio(self.matched, self.reference),
            "precision": ratio(self.matched, self.candidate),
            "score_drift": {"mean": ratio(self.score_diff_sum, self.matched),
                            "max": self.score_diff_max if self.matched else None},
        }


@dataclass
class InstanceAccumulator:
    """Dataset-level accumulation of :class:`ImageMatch` results.

    ``update(stem, ref, cand)`` matches one image; ``merge(other)`` adds another accumulator (shards of a
    dataset merge to exactly the unsharded totals; the worst-image list keeps the worst ``worst_k``).
    """

    options: InstanceOptions = field(default_factory=InstanceOptions)
    per_class: dict[int, _ClassStats] = field(default_factory=dict)
    images: list[dict[str, Any]] = field(default_factory=list)
    num_images: int = 0

    def update(self, stem: str, ref: Instances, cand: Instances) -> ImageMatch:
        match = match_instances(ref, cand, self.options.iou_threshold)
        for label, count in zip(*np.unique(ref.labels, return_counts=True)):
            self._cls(int(label)).reference += int(count)
        for label, count in zip(*np.unique(cand.labels, return_counts=True)):
            self._cls(int(label)).candidate += int(count)
        for p in match.pairs:
            st = self._cls(p.label)
            st.matched += 1
            st.iou_sum += p.mask_iou
            st.box_iou_sum += p.box_iou
            d = abs(p.score_ref - p.score_cand)
            st.score_diff_sum += d
            st.score_diff_max = max(st.score_diff_max, d)
        self.num_images += 1
        if match.f1 is not None:
            self.images.append({
                "stem": stem,
                "reference": len(ref),
                "candidate": len(cand),
                "matched": match.matched,
                "f1": match.f1,
                "mean_mask_iou": match.mean_iou,
            })
            self._trim()
        return match

    def merge(self, other: "InstanceAccumulator") -> "InstanceAccumulator":
        if other.options != self.options:
            raise UsageError("cannot merge instance results computed with different thresholds; "
                             "rerun the shards with the same options")
        for label, st in other.per_class.items():
            self._cls(label).add(st)
        self.images.extend(other.images)
        self.num_images += other.num_images
        self._trim()
        return self

    def summary(self) -> dict[str, Any]:
        """JSON-ready totals, per-class results and the worst images (see the module docstring)."""
        total = _ClassStats()
        for st in self.per_class.values():
            total.add(st)
        return {
            "schema": SCHEMA_NAME,
            "schema_version": SCHEMA_VERSION,
            "task": "instance",
            "options": {
                "iou_threshold": self.options.iou_threshold,
                "mask_threshold": self.options.mask_threshold,
                "score_threshold": self.options.score_threshold,
            },
            "num_images": self.num_images,
            "totals": total.summary(),
            "per_class": {str(k): self.per_class[k].summary() for k in sorted(self.per_class)},
            "worst_images": [dict(im) for im in self.images],
        }

    def _cls(self, label: int) -> _ClassStats:
        st = self.per_class.get(label)
        if st is None:
            st = self.per_class[label] = _ClassStats()
        return st

    def _trim(self) -> None:
        def key(im: dict[str, Any]) -> tuple[float, float, str]:
            iou = im["mean_mask_iou"]
            return (im["f1"], 0.0 if iou is None else iou, im["stem"])

        self.images.sort(key=key)
        # keep only images that disagree at all, and at most worst_k of them
        self.images = [im for im in self.images
                       if im["f1"] < 1.0 or (im["mean_mask_iou"] is not None and im["mean_mask_iou"] < 1.0)]
        del self.images[self.options.worst_k:]


# ----------------------------------------------------------------------------------------- gate
@dataclass(frozen=True)
class InstanceGate:
    """Release gate for instance parity; every threshold optional, in percent (score drift: absolute).

    min_recall / min_precision: matched reference / candidate instances at the IoU threshold;
    min_mask_iou: mean mask IoU of matched pairs; max_score_drift: mean |score_ref - score_cand|.
    """

    min_recall: float | None = None
    min_precision: float | None = None
    min_mask_iou: float | None = None
    max_score_drift: float | None = None

    def __post_init__(self) -> None:
        for name, v in (("--min-recall", self.min_recall), ("--min-precision", self.min_precision),
                        ("--min-mask-iou", self.min_mask_iou)):
            if v is not None and not 0 <= v <= 100:
                raise UsageError(f"{name} {v} must be a percentage in 0..100 (e.g. 99)")
        if self.max_score_drift is not None and not 0 <= self.max_score_drift <= 1:
            raise UsageError(f"--max-score-drift {self.max_score_drift} must be a score difference in 0..1 (e.g. 0.01)")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.min_recall, self.min_precision, self.min_mask_iou, self.max_score_drift))


def evaluate_instance_gate(summary: dict[str, Any], gate: InstanceGate) -> dict[str, Any]:
    """The ``gate`` section for an instance summary: thresholds, evaluated, passed, failures (one line each).

    A metric that is undefined (no instances on that side) fails a threshold that needs it, with that reason.
    """
    thresholds = {"min_recall_percent": gate.min_recall, "min_precision_percent": gate.min_precision,
                  "min_mask_iou_percent": gate.min_mask_iou, "max_score_drift": gate.max_score_drift}
    if not gate.active:
        return {"thresholds": thresholds, "evaluated": False, "passed": None, "failures": []}
    t = summary["totals"]
    failures: list[str] = []
    for label, key, limit in (("recall", "recall", gate.min_recall), ("precision", "precision", gate.min_precision),
                              ("matched mask IoU", "matched_mask_iou", gate.min_mask_iou)):
        if limit is None:
            continue
        v = t.get(key)
        if v is None:
            failures.append(f"{label} is undefined (no instances to compare) < required {limit:g} %")
        elif 100.0 * v < limit:
            failures.append(f"{label} {100.0 * v:.2f} % < {limit:g} % "
                            f"({t['matched']} matched of {t['reference']} reference / {t['candidate']} candidate instances)")
    if gate.max_score_drift is not None:
        v = t["score_drift"]["mean"]
        if v is None:
            failures.append(f"score drift is undefined (no matched instances) > allowed {gate.max_score_drift:g}")
        elif v > gate.max_score_drift:
            failures.append(f"score drift {v:.4f} > {gate.max_score_drift:g} (max {t['score_drift']['max']:.4f})")
    return {"thresholds": thresholds, "evaluated": True, "passed": not failures, "failures": failures}


def raise_for_instance_gate(gate_section: dict[str, Any]) -> None:
    """Raise GateError (exit 3) with every tripped threshold when an evaluated gate failed."""
    if gate_section.get("evaluated") and not gate_section.get("passed"):
        raise GateError("instance parity gate failed: " + "; ".join(gate_section["failures"]))


# ----------------------------------------------------------------------------------------- models
InstanceModel = Callable[[np.ndarray], Mapping[str, np.ndarray]]
"""A callable: image float32 CHW in [0, 1] -> dict with boxes, labels, scores, masks arrays."""


class TorchInstanceModel:
    """A torchvision-style detection module (``module([chw_tensor]) -> [dict]``) as an InstanceModel.

    The module is used as given (call ``.eval()`` yourself); runs under ``torch.inference_mode`` on
    ``device``.
    """

    def __init__(self, module: Any, device: str = "cpu", name: str | None = None):
        self.module = module
        self.device = device
        self.name = name or type(module).__name__

    def describe(self) -> dict[str, Any]:
        return {"kind": "torch", "name": self.name, "device": self.device}

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.module([torch.from_numpy(np.ascontiguousarray(image)).to(self.device)])
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], list):
            out = out[1]  # scripted torchvision detectors return (losses, detections)
        if not isinstance(out, (list, tuple)) or not out or not isinstance(out[0], Mapping):
            raise DataError(f"reference module returned {type(out).__name__}; expected a list of dicts with "
                            f"{', '.join(OUTPUT_NAMES)} (a torchvision detection model in eval mode)")
        d = out[0]
        missing = [k for k in OUTPUT_NAMES if k not in d]
        if missing:
            raise DataError(f"reference output lacks {', '.join(missing)}; expected keys {', '.join(OUTPUT_NAMES)}")
        return {k: d[k].detach().cpu().numpy() for k in OUTPUT_NAMES}


class OnnxInstanceModel:
    """An exported Mask R-CNN ONNX graph (one input: image [3,H,W] float) run with ONNX Runtime.

    Outputs are taken by name (boxes, labels, scores, masks) when the graph has those names, else by
    position in that order. ``providers`` defaults to the CPU provider. Raises ArtifactError-like
    DataError when the file is missing or the graph does not have four outputs.
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] = ("CPUExecutionProvider",)):
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError("onnxruntime is not installed; pip install onnxruntime") from None
        from segdeploy.errors import ArtifactError

        if not os.path.isfile(path):
            raise ArtifactError(f"candidate {path} not found; pass the exported .onnx file")
        try:
            self.session = ort.InferenceSession(os.fspath(path), providers=list(providers))
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ArtifactError(f"ONNX Runtime cannot load {path}: {str(e).splitlines()[0]}; re-export the model") from None
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        if len(inputs) != 1 or len(outputs) != 4:
            raise DataError(f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; an instance model needs "
                            "one image input and four outputs (boxes, labels, scores, masks)")
        self.input_name = inputs[0].name
        self.output_names = list(OUTPUT_NAMES) if set(OUTPUT_NAMES) <= set(outputs) else outputs
        self.path = os.fspath(path)
        self.providers = list(self.session.get_providers())

    def describe(self) -> dict[str, Any]:
        from segdeploy.fsutil import sha256_file

        return {"kind": "onnxruntime", "name": os.path.basename(self.path), "path": self.path,
                "sha256": sha256_file(self.path), "providers": self.providers,
                "device": "cuda" if "CUDAExecutionProvider" in self.providers else "cpu"}

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        res = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(image, dtype=np.float32)})
        return dict(zip(OUTPUT_NAMES, res))


def _as_chw01(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> float32 CHW in [0, 1] (torchvision detection models normalise internally)."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise DataError(f"image has shape {img.shape} dtype {img.dtype}; expected HxWx3 uint8 RGB")
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


def compare_instances(
    reference: InstanceModel,
    candidate: InstanceModel,
    samples: Iterable[Any],
    options: InstanceOptions = InstanceOptions(),
    *,
    gate: InstanceGate | None = None,
    class_names: Sequence[str] = (),
    command: str | None = None,
    keep_predictions: bool = False,
) -> dict[str, Any]:
    """Run ``reference`` and ``candidate`` on every sample and return the instance parity report dict.

    ``samples`` yields objects with ``.stem`` and ``.image`` (HxWx3 uint8 RGB) and optionally ``.path``,
    such as :class:`segdeploy.datasets.Sample`, or ``(stem, image)`` tuples.

    The result is :meth:`InstanceAccumulator.summary` (JSON-ready) plus ``reference`` / ``candidate``
    (the models' ``describe()`` when they have one), ``classes`` ({"names": [...]}), ``command``,
    ``versions``, ``created_by`` and ``gate`` (:func:`evaluate_instance_gate`; not evaluated without
    ``gate``). Each worst image carries ``image`` (its path or None), ``height``/``width`` and
    ``reference_png`` / ``candidate_png``: base64 palette PNGs of the instances painted by class
    (:func:`instances_to_class_map`), the same encoding as the semantic report's, so
    :mod:`segdeploy.parity.html_report` renders both. With ``keep_predictions`` the worst images'
    thresholded :class:`Instances` are attached under the non-JSON key ``"_predictions"``
    (``{stem: (image, ref, cand)}``); pop it before serialising.

    Does not raise when the gate trips (call :func:`raise_for_instance_gate` on ``report["gate"]``).
    Raises DataError on an empty sample stream or malformed outputs, VerificationError on NaN/Inf.
    """
    from segdeploy.parity.overlays import class_map_png_b64

    acc = InstanceAccumulator(options)
    kept: dict[str, tuple[np.ndarray, Instances, Instances]] = {}
    maps: dict[str, tuple[str | None, np.ndarray, np.ndarray]] = {}
    for item in samples:
        stem, image = (item.stem, item.image) if hasattr(item, "image") else item
        stem = str(stem)
        chw = _as_chw01(image)
        size = (int(chw.shape[1]), int(chw.shape[2]))
        r = instances_from_outputs(**reference(chw), options=options, image_size=size, source="reference")
        c = instances_from_outputs(**candidate(chw), options=options, image_size=size, source="candidate")
        acc.update(stem, r, c)
        worst = {im["stem"] for im in acc.images}
        if stem in worst:
            maps[stem] = (getattr(item, "path", None), instances_to_class_map(r, size), instances_to_class_map(c, size))
            if keep_predictions:
                kept[stem] = (np.asarray(image), r, c)
        maps = {k: v for k, v in maps.items() if k in worst}
        kept = {k: v for k, v in kept.items() if k in worst}
    if acc.num_images == 0:
        raise DataError("no images to compare; check the --data directory")
    report = acc.summary()
    for im in report["worst_images"]:
        path, rmap, cmap = maps[im["stem"]]
        im.update(image=None if path is None else str(path), height=int(rmap.shape[0]), width=int(rmap.shape[1]),
                  reference_png=class_map_png_b64(rmap), candidate_png=class_map_png_b64(cmap))
    from segdeploy.parity.report_json import created_by, versions

    report.update(
        reference=_describe(reference, "reference"),
        candidate=_describe(candidate, "candidate"),
        classes={"names": [str(n) for n in class_names]},
        command=command,
        versions=versions(),
        created_by=created_by(),
        gate=evaluate_instance_gate(report, gate or InstanceGate()),
    )
    if keep_predictions:
        report["_predictions"] = kept
    return report


def _describe(model: Any, side: str) -> dict[str, Any]:
    d = getattr(model, "describe", None)
    if callable(d):
        return dict(d())
    return {"kind": "callable", "name": getattr(model, "__name__", type(model).__name__)}


def instances_to_class_map(inst: Instances, size: tuple[int, int] | None = None) -> np.ndarray:
    """Paint instances into an HxW int64 label map (0 = background), lowest score first so the most
    confident instance wins where masks overlap. Used for overlays."""
    h, w = size if size is not None else inst.image_size
    out = np.zeros((h, w), dtype=np.int64)
    for i in np.argsort(inst.scores, kind="stable"):
        out[inst.masks[i]] = inst.labels[i]
    return out


# ----------------------------------------------------------------------------------------- entry point
def run_instance_check(
    reference: Any,
    candidate: str | os.PathLike,
    data: Any,
    *,
    masks: Any = None,
    list_file: str | os.PathLike | None = None,
    layout: str | None = None,
    weights: str | os.PathLike | None = None,
    trust_pickle: bool = False,
    device: str = "cpu",
    providers: Sequence[str] = ("CPUExecutionProvider",),
    options: InstanceOptions = InstanceOptions(),
    gate: InstanceGate | None = None,
    class_names: Sequence[str] = (),
    command: str | None = None,
) -> dict[str, Any]:
    """What ``segdeploy check --task instance`` runs: load, compare, gate (not raised).

    ``reference``: an ``nn.Module`` or anything :func:`segdeploy.load.load_model` loads (``.pt2``,
    TorchScript, ``pkg.module:factory`` (+ ``weights``), a pickle with ``trust_pickle``); the module is
    used *raw* (no semantic output selection) and must return torchvision-style detection dicts.
    ``candidate``: an exported ``.onnx`` (ONNX Runtime with ``providers``). ``data``: an image folder or a
    :class:`~segdeploy.datasets.Dataset` (masks are not needed: the reference is the ground truth).
    Returns the report dict of :func:`compare_instances`; raise with :func:`raise_for_instance_gate`.
    """
    from segdeploy.datasets import Dataset, open_dataset

    if isinstance(reference, (str, os.PathLike)) or weights is not None:
        from segdeploy.load import load_model

        lm = load_model(reference, weights=weights, trust_pickle=trust_pickle)
        module, name = lm.raw, os.path.basename(str(lm.source))
    else:
        module, name = reference, type(reference).__name__
    if device != "cpu":
        module = module.to(device)
    if hasattr(module, "eval"):
        module.eval()
    ds = data if isinstance(data, Dataset) else open_dataset(data, masks, list_file=list_file, layout=layout)
    cand = OnnxInstanceModel(candidate, providers=providers)
    return compare_instances(TorchInstanceModel(module, device=device, name=name), cand, ds, options, gate=gate,
                             class_names=class_names, command=command)


def format_instance_report(report: dict[str, Any]) -> str:
    """Terminal summary of an instance report: totals, per-class rows, worst images, gate verdict."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100.0 * v:.2f}"

    t = report["totals"]
    sd = t["score_drift"]
    lines = [
        f"instance parity: {report['num_images']} images, match IoU >= {report['options']['iou_threshold']:g}",
        f"  reference: {report.get('reference', {}).get('name')}   candidate: {report.get('candidate', {}).get('name')}",
        f"  instances: reference {t['reference']}, candidate {t['candidate']}, matched {t['matched']} "
        f"(missed {t['missed']}, extra {t['extra']})",
        f"  recall {pct(t['recall'])} %  precision {pct(t['precision'])} %  matched mask IoU {pct(t['matched_mask_iou'])} %"
        f"  box IoU {pct(t['box_iou'])} %  score drift mean {sd['mean'] if sd['mean'] is None else format(sd['mean'], '.2e')}",
        "",
        f"  {'class':>6}  {'ref':>5}  {'cand':>5}  {'match':>5}  {'recall %':>8}  {'prec. %':>8}  {'mask IoU %':>10}",
    ]
    names = (report.get("classes") or {}).get("names") or []
    for k, c in report["per_class"].items():
        i = int(k)
        label = names[i] if i < len(names) and names[i] else k
        lines.append(f"  {label:>6}  {c['reference']:>5}  {c['candidate']:>5}  {c['matched']:>5}  {pct(c['recall']):>8}  "
                     f"{pct(c['precision']):>8}  {pct(c['matched_mask_iou']):>10}")
    if report["worst_images"]:
        lines += ["", "  worst images (F1 of the matching, mean mask IoU):"]
        lines += [f"    {w['stem']}: F1 {pct(w['f1'])} %, IoU {pct(w['mean_mask_iou'])} % "
                  f"({w['matched']} matched of {w['reference']} ref / {w['candidate']} cand)" for w in report["worst_images"]]
    g = report.get("gate") or {}
    lines.append("")
    if not g.get("evaluated"):
        lines.append("gate: not evaluated (no threshold given)")
    elif g.get("passed"):
        lines.append("gate: PASS")
    else:
        lines.append("gate: FAIL -- " + "; ".join(g.get("failures") or []))
    return "\n".join(lines)
