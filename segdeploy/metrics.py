"""Segmentation metrics from an exact integer confusion matrix.

Contract
--------
``cm = ConfusionMatrix(num_classes, ignore_index=255)``; ``cm.update(pred, target)`` adds one prediction
(any integer array) against its ground truth (same shape); ``cm.merge(other)`` adds another matrix;
``cm.matrix`` is the int64 KxK count matrix, rows = truth, columns = prediction; ``cm.summary()`` returns
the metrics below. Counts are exact int64 and addition is associative, so sharded runs merge exactly.

Accumulation is one ``np.bincount`` over ``truth * K + pred`` per update (vectorised; no per-class loop).

Rules (documented behaviour)
* Pixels whose truth equals ``ignore_index`` are skipped entirely.
* A truth label outside ``[0, K)`` (other than the ignore index) raises DataError: it means the masks and
  the model disagree on the classes (fix with a label map or ``--ignore-index``).
* A prediction outside ``[0, K)`` (e.g. -1 for a pixel whose logits were NaN/Inf) is an *invalid*
  prediction: it counts as a miss for the pixel's true class (a false negative, and a wrong pixel for
  pixel accuracy) but as a false positive for no class. ``cm.invalid`` holds these counts per true class.
* A class absent from both prediction and truth (TP + FP + FN = 0) has IoU/Dice ``None`` and is
  *excluded* from mIoU and mean Dice (it is not counted as 1.0, nor as 0.0). Mean pixel accuracy averages
  over classes present in the truth. Frequency-weighted IoU weights each class by its share of truth pixels.
* All metric values are fractions in [0, 1] (the reports show percentages / percentage points).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segdeploy.errors import DataError


class ConfusionMatrix:
    """Exact int64 confusion-matrix accumulator (see module docstring)."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255):
        if int(num_classes) < 1:
            raise DataError(f"number of classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.invalid = np.zeros(self.num_classes, dtype=np.int64)

    # -- accumulation -------------------------------------------------------------------------------
    def update(self, pred: np.ndarray, target: np.ndarray, name: str | None = None) -> "ConfusionMatrix":
        """Add ``pred`` vs ``target`` (same shape, integer). ``name`` labels errors. Returns self."""
        add, inv = self.counts(pred, target, name)
        self.matrix += add
        if inv is not None:
            self.invalid += inv
        return self

    def counts(
        self, pred: np.ndarray, target: np.ndarray, name: str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The KxK counts (and invalid-prediction counts, or None) of one pair, without accumulating."""
        pred = np.asarray(pred)
        target = np.asarray(target)
        where = f" in {name}" if name else ""
        if pred.shape != target.shape:
            raise DataError(f"prediction shape {pred.shape} != ground-truth shape {target.shape}{where}")
        if not (np.issubdtype(pred.dtype, np.integer) and np.issubdtype(target.dtype, np.integer)):
            raise DataError(f"prediction and ground truth must be integer class maps{where}")
        K = self.num_classes
        t = target.ravel()
        p = pred.ravel()
        if t.size == 0:
            return np.zeros((K, K), dtype=np.int64), None
        pmin, pmax = int(p.min()), int(p.max())
        if t.dtype in (np.uint8, np.uint16) and 0 <= pmin and pmax < K:
            # fast path: one table lookup turns each truth value into its row offset (ignore -> a spare
            # block past the matrix, out-of-range labels -> negative), then one bincount
            lut = self._lut(t.dtype)
            idx = lut[t]
            np.add(idx, p, out=idx, casting="unsafe")  # p is in [0, K): the cast is exact
            if int(idx.min()) < 0:
                self._raise_bad_label(t, where)
            counts = np.bincount(idx, minlength=K * K + 2 * K)
            return counts[: K * K].reshape(K, K).astype(np.int64, copy=False), None
        if self.ignore_index is not None:
            keep = t != self.ignore_index
            if not keep.all():
                t = t[keep]
                p = p[keep]
        if t.size == 0:
            return np.zeros((K, K), dtype=np.int64), None
        tmin, tmax = int(t.min()), int(t.max())
        if tmin < 0 or tmax >= K:
            self._raise_bad_label(t, where)
        t = t.astype(np.intp, copy=False)
        inv = None
        if p.size and (int(p.min()) < 0 or int(p.max()) >= K):
            ok = (p >= 0) & (p < K)
            inv = np.bincount(t[~ok], minlength=K).astype(np.int64)
            t = t[ok]
            p = p[ok]
        idx = t * K + p.astype(np.intp, copy=False)
        add = np.bincount(idx, minlength=K * K).reshape(K, K).astype(np.int64, copy=False)
        return add, inv

    def _lut(self, dtype: np.dtype) -> np.ndarray:
        """Truth value -> bincount row offset (class c: c*K; ignore: past the matrix; other: very negative)."""
        key = np.dtype(dtype).itemsize
        cache = self.__dict__.setdefault("_luts", {})
        if key not in cache:
            K = self.num_classes
            size = 1 << (8 * key)
            lut = np.full(size, -(1 << 40), dtype=np.intp)
            n = min(K, size)
            lut[:n] = np.arange(n, dtype=np.intp) * K
            if self.ignore_index is not None and 0 <= self.ignore_index < size:
                lut[self.ignore_index] = K * K + K
            cache[key] = lut
        return cache[key]

    def _raise_bad_label(self, t: np.ndarray, where: str) -> None:
        K = self.num_classes
        bad = (t < 0) | (t >= K)
        if self.ignore_index is not None:
            bad &= t != self.ignore_index
        vals = np.unique(t[bad])
        shown = ", ".join(str(int(v)) for v in vals[:5])
        raise DataError(
            f"ground truth has label {shown}{where} but the model has {K} classes (0..{K - 1}, ignore "
            f"{self.ignore_index}); remap labels with --label-map or set --ignore-index"
        )

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix of the same class count and ignore index. Returns self."""
        if other.num_classes != self.num_classes:
            raise DataError(f"cannot merge confusion matrices of {other.num_classes} and {self.num_classes} classes")
        if other.ignore_index != self.ignore_index:
            raise DataError(
                f"cannot merge confusion matrices with ignore index {other.ignore_index} and {self.ignore_index}"
            )
        self.matrix += other.matrix
        self.invalid += other.invalid
        return self

    def copy(self) -> "ConfusionMatrix":
        c = ConfusionMatrix(self.num_classes, self.ignore_index)
        c.matrix = self.matrix.copy()
        c.invalid = self.invalid.copy()
        return c

    # -- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "matrix": self.matrix.tolist(),
            "invalid": self.invalid.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ConfusionMatrix":
        c = cls(int(d["num_classes"]), d.get("ignore_index"))
        m = np.asarray(d["matrix"], dtype=np.int64)
        if m.shape != (c.num_classes, c.num_classes) or (m < 0).any():
            raise DataError(f"confusion matrix has shape {m.shape} / negative counts; the partial result is corrupt")
        c.matrix = m
        c.invalid = np.asarray(d.get("invalid", [0] * c.num_classes), dtype=np.int64)
        return c

    # -- metrics ------------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Counted pixels (ignore-index pixels excluded, invalid predictions included)."""
        return int(self.matrix.sum() + self.invalid.sum())

    def summary(self) -> dict[str, Any]:
        """Metrics as fractions (see module docstring). Values are None when no pixel was counted."""
        return summarize(self.matrix, self.invalid)


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(sum(vals) / len(vals)) if vals else None


def summarize(matrix: np.ndarray, invalid: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of a KxK count matrix (rows = truth) plus per-truth-class invalid predictions."""
    m = np.asarray(matrix, dtype=np.int64)
    K = m.shape[0]
    inv = np.zeros(K, dtype=np.int64) if invalid is None else np.asarray(invalid, dtype=np.int64)
    tp = np.diag(m)
    gt = m.sum(axis=1) + inv  # truth pixels per class
    pr = m.sum(axis=0)  # predicted pixels per class (invalid predictions are no class)
    fp = pr - tp
    fn = gt - tp
    total = int(gt.sum())
    union = tp + fp + fn
    iou: list[float | None] = [float(tp[c] / union[c]) if union[c] > 0 else None for c in range(K)]
    dice: list[float | None] = [
        float(2 * tp[c] / (2 * tp[c] + fp[c] + fn[c])) if union[c] > 0 else None for c in range(K)
    ]
    recall: list[float | None] = [float(tp[c] / gt[c]) if gt[c] > 0 else None for c in range(K)]
    fwiou = None
    if total > 0:
        fwiou = float(sum((gt[c] / total) * iou[c] for c in range(K) if gt[c] > 0 and iou[c] is not None))
    return {
        "pixels": total,
        "invalid_pixels": int(inv.sum()),
        "pixel_accuracy": float(tp.sum() / total) if total else None,
        "mean_pixel_accuracy": _mean(recall),
        "miou": _mean(iou),
        "mean_dice": _mean(dice),
        "fwiou": fwiou,
        "per_class_iou": iou,
        "per_class_dice": dice,
        "per_class_accuracy": recall,
        "classes_present": [c for c in range(K) if union[c] > 0],
    }
