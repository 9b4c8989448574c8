"""Confusion-matrix metrics: exact counts, textbook cross-check, documented edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from segdeploy.errors import DataError
from segdeploy.metrics import ConfusionMatrix


def _textbook_iou(pred, gt, K, ignore=255):
    """Per-class loop like the classic calculate_iou (reference implementation for the test)."""
    keep = gt != ignore
    out = []
    for c in range(K):
        p = (pred == c) & keep
        g = (gt == c) & keep
        union = (p | g).sum()
        out.append(None if union == 0 else (p & g).sum() / union)
    return out


def test_matches_textbook_loop_and_sklearn_style_counts():
    rng = np.random.default_rng(0)
    K = 6
    cm = ConfusionMatrix(K)
    preds, gts = [], []
    for _ in range(4):
        gt = rng.integers(0, K - 1, (37, 41)).astype(np.uint8)  # class 5 never in truth
        gt[rng.random(gt.shape) < 0.1] = 255
        pred = rng.integers(0, K - 1, (37, 41))
        pred[0, :3] = 4
        cm.update(pred, gt)
        preds.append(pred)
        gts.append(gt)
    P = np.concatenate([p.ravel() for p in preds])
    G = np.concatenate([g.ravel() for g in gts])
    keep = G != 255
    ref = np.zeros((K, K), np.int64)
    np.add.at(ref, (G[keep].astype(int), P[keep]), 1)
    assert np.array_equal(cm.matrix, ref) and cm.matrix.dtype == np.int64
    s = cm.summary()
    tb = _textbook_iou(P, G, K)
    for c in range(K):
        if tb[c] is None:
            assert s["per_class_iou"][c] is None
        else:
            assert s["per_class_iou"][c] == pytest.approx(tb[c])
    assert s["per_class_iou"][5] is None  # absent from both -> excluded, not 1.0
    assert s["miou"] == pytest.approx(np.mean([v for v in tb if v is not None]))
    assert s["pixel_accuracy"] == pytest.approx((P[keep] == G[keep]).mean())
    assert s["pixels"] == int(keep.sum())


def test_hand_computed_small_case():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 3, 3]])
    s = ConfusionMatrix(4).update(pred, gt).summary()
    # class0: tp1 fp1 fn1 -> 1/3 ; class1: tp2 fp1 fn0 -> 2/3 ; class2: tp1 fn1 -> 1/2 ; class3 absent
    assert s["per_class_iou"][:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert s["per_class_iou"][3] is None
    assert s["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s["per_class_dice"][:3] == pytest.approx([0.5, 0.8, 2 / 3])
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)
    assert s["mean_pixel_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert s["fwiou"] == pytest.approx((2 / 6) * (1 / 3) + (2 / 6) * (2 / 3) + (2 / 6) * 0.5)


def test_predicted_but_absent_class_counts_as_zero():
    s = ConfusionMatrix(3).update(np.array([0, 2]), np.array([0, 0])).summary()
    assert s["per_class_iou"] == [0.5, None, 0.0]
    assert s["miou"] == pytest.approx(0.25)


def test_label_out_of_range_is_an_error():
    cm = ConfusionMatrix(3)
    with pytest.raises(DataError, match=r"label 7 in x.png but the model has 3 classes"):
        cm.update(np.zeros((2, 2), int), np.array([[0, 7], [1, 255]]), name="x.png")
    assert cm.matrix.sum() == 0  # nothing half-added


def test_invalid_predictions_count_as_misses():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, -1, -1, 1]), np.array([0, 0, 1, 1]))
    s = cm.summary()
    assert s["invalid_pixels"] == 2 and s["pixels"] == 4
    assert s["pixel_accuracy"] == pytest.approx(0.5)
    assert s["per_class_iou"] == [0.5, 0.5]


def test_merge_equals_single_pass_and_roundtrip():
    rng = np.random.default_rng(1)
    pairs = [(rng.integers(0, 4, 100), rng.integers(0, 4, 100)) for _ in range(6)]
    whole = ConfusionMatrix(4)
    for p, g in pairs:
        whole.update(p, g)
    a, b = ConfusionMatrix(4), ConfusionMatrix(4)
    for p, g in pairs[:2]:
        a.update(p, g)
    for p, g in pairs[2:]:
        b.update(p, g)
    merged = ConfusionMatrix.from_dict(a.to_dict()).merge(ConfusionMatrix.from_dict(b.to_dict()))
    assert np.array_equal(merged.matrix, whole.matrix)
    assert merged.summary() == whole.summary()
    with pytest.raises(DataError, match="cannot merge"):
        a.merge(ConfusionMatrix(5))


def test_empty_and_all_ignored():
    s = ConfusionMatrix(3).update(np.zeros((2, 2), int), np.full((2, 2), 255)).summary()
    assert s["pixels"] == 0 and s["miou"] is None and s["pixel_accuracy"] is None


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_table_lookup_path_equals_generic_path(dtype):
    rng = np.random.default_rng(3)
    K = 7
    gt = rng.integers(0, K, (33, 29))
    gt[rng.random(gt.shape) < 0.2] = 255
    pred = rng.integers(0, K, gt.shape)
    ref = ConfusionMatrix(K).update(pred.astype(np.int64), gt.astype(np.int64)).matrix
    assert np.array_equal(ConfusionMatrix(K).update(pred, gt.astype(dtype)).matrix, ref)
    assert np.array_equal(ConfusionMatrix(K).update(pred.astype(np.uint8), gt.astype(dtype)).matrix, ref)
    bad = gt.astype(dtype)
    bad[0, 0] = 9
    with pytest.raises(DataError, match="label 9"):
        ConfusionMatrix(K).update(pred, bad)
