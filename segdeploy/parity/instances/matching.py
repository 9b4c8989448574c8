"""Matching detections per class by mask IoU (greedy by score) and accumulating dataset statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segdeploy.errors import DataError, UsageError
from segdeploy.parity.instances.model import SCHEMA_NAME, SCHEMA_VERSION, InstanceOptions, Instances


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
