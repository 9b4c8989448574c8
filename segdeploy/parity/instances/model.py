"""Instance detections: thresholds, the per-image data model, validation of raw outputs, painting."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from segdeploy.errors import DataError, UsageError, VerificationError

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


def instances_to_class_map(inst: Instances, size: tuple[int, int] | None = None) -> np.ndarray:
    """Paint instances into an HxW int64 label map (0 = background), lowest score first so the most
    confident instance wins where masks overlap. Used for overlays."""
    h, w = size if size is not None else inst.image_size
    out = np.zeros((h, w), dtype=np.int64)
    for i in np.argsort(inst.scores, kind="stable"):
        out[inst.masks[i]] = inst.labels[i]
    return out
