"""Instance-segmentation parity: matching semantics, metrics, merge, errors, and Mask R-CNN on ONNX Runtime."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from segdeploy.datasets import open_dataset

from segdeploy.errors import DataError, UsageError, VerificationError
from segdeploy.parity.html_report import write_html_report
from segdeploy.parity.instances import (
    InstanceAccumulator,
    InstanceGate,
    InstanceOptions,
    Instances,
    OnnxInstanceModel,
    TorchInstanceModel,
    compare_instances,
    format_instance_report,
    run_instance_check,
    instances_from_outputs,
    instances_to_class_map,
    mask_iou,
    match_instances,
)

H = W = 32


def rect(y0, x0, y1, x1, h=H, w=W):
    m = np.zeros((h, w), dtype=np.float32)
    m[y0:y1, x0:x1] = 0.9
    return m


def make(rects, labels, scores):
    masks = np.stack([rect(*r) for r in rects])[:, None] if rects else np.zeros((0, 1, H, W), np.float32)
    boxes = np.array([[r[1], r[0], r[3], r[2]] for r in rects], dtype=np.float32).reshape(-1, 4)
    return instances_from_outputs(boxes, np.array(labels, dtype=np.int64), np.array(scores, dtype=np.float32), masks,
                                  image_size=(H, W))


def test_mask_iou_exact_counts():
    a = np.stack([rect(0, 0, 10, 10) > 0.5, rect(0, 0, 10, 20) > 0.5])
    b = np.stack([rect(0, 0, 10, 10) > 0.5, rect(20, 20, 30, 30) > 0.5, np.zeros((H, W), bool)])
    iou = mask_iou(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 0] == 1.0 and iou[1, 0] == 0.5 and iou[0, 1] == 0.0 and iou[0, 2] == 0.0


def test_identical_predictions_match_perfectly():
    r = make([(0, 0, 10, 10), (12, 12, 30, 30), (0, 20, 8, 30)], [1, 2, 1], [0.9, 0.8, 0.7])
    m = match_instances(r, r)
    assert m.matched == 3 and m.f1 == 1.0 and m.mean_iou == 1.0
    acc = InstanceAccumulator()
    acc.update("a", r, r)
    s = acc.summary()
    t = s["totals"]
    assert (t["recall"], t["precision"], t["matched_mask_iou"], t["box_iou"]) == (1.0, 1.0, 1.0, 1.0)
    assert t["score_drift"] == {"mean": 0.0, "max": 0.0}
    assert s["worst_images"] == []  # nothing disagrees


def test_labels_must_agree_and_threshold_applies():
    ref = make([(0, 0, 10, 10), (12, 12, 30, 30)], [1, 2], [0.9, 0.8])
    # same masks, first one with another label; second shifted so IoU = 216/360 = 0.6
    cand = make([(0, 0, 10, 10), (18, 12, 36, 30)], [3, 2], [0.9, 0.6])
    m = match_instances(ref, cand, 0.5)
    assert [(p.ref, p.cand, p.label) for p in m.pairs] == [(1, 1, 2)]
    assert m.pairs[0].mask_iou == pytest.approx(12 * 18 / (18 * 18 + 14 * 18 - 12 * 18))
    assert m.unmatched_ref() == [0] and m.unmatched_cand() == [0]
    m2 = match_instances(ref, cand, 0.99)
    assert m2.matched == 0 and m2.f1 == 0.0 and m2.mean_iou is None


def test_greedy_by_candidate_score():
    # two reference instances, two candidates; the higher-scored candidate overlaps both and picks its best
    ref = make([(0, 0, 10, 20), (0, 0, 10, 12)], [1, 1], [0.9, 0.9])
    cand = make([(0, 0, 10, 14), (0, 0, 10, 19)], [1, 1], [0.95, 0.5])
    m = match_instances(ref, cand, 0.5)
    # cand 0 (score .95): IoU with ref0 = 14/20 = .7, with ref1 = 12/14 = .857 -> takes ref1
    # cand 1 (score .5): ref1 taken, IoU with ref0 = 19/20 -> takes ref0
    assert sorted((p.ref, p.cand) for p in m.pairs) == [(0, 1), (1, 0)]
    # reversing the scores changes who picks first: cand 1 takes ref0 (.95), cand 0 takes ref1
    cand_rev = make([(0, 0, 10, 14), (0, 0, 10, 19)], [1, 1], [0.5, 0.95])
    m_rev = match_instances(ref, cand_rev, 0.5)
    assert sorted((p.ref, p.cand) for p in m_rev.pairs) == [(0, 1), (1, 0)]
    # a case where greedy order matters: one reference, two candidates; the higher score wins even with lower IoU
    ref1 = make([(0, 0, 10, 10)], [1], [0.9])
    cand2 = make([(0, 0, 10, 8), (0, 0, 10, 10)], [1, 1], [0.9, 0.3])
    m3 = match_instances(ref1, cand2, 0.5)
    assert [(p.ref, p.cand) for p in m3.pairs] == [(0, 0)]
    assert m3.pairs[0].mask_iou == pytest.approx(0.8)


def test_metrics_counts_score_drift_and_empty_sides():
    ref = make([(0, 0, 10, 10), (12, 12, 30, 30), (0, 20, 8, 30)], [1, 2, 1], [0.9, 0.8, 0.7])
    cand = make([(0, 0, 10, 10), (12, 12, 30, 30)], [1, 2], [0.8, 0.5])
    empty = make([], [], [])
    acc = InstanceAccumulator(InstanceOptions(worst_k=5))
    acc.update("a", ref, cand)
    acc.update("b", empty, empty)  # agrees trivially: counted, not listed
    acc.update("c", empty, make([(0, 0, 4, 4)], [5], [0.4]))  # one extra candidate, class 5 absent in reference
    s = acc.summary()
    t = s["totals"]
    assert s["num_images"] == 3
    assert (t["reference"], t["candidate"], t["matched"], t["missed"], t["extra"]) == (3, 3, 2, 1, 1)
    assert t["recall"] == pytest.approx(2 / 3) and t["precision"] == pytest.approx(2 / 3)
    assert t["score_drift"]["mean"] == pytest.approx((0.1 + 0.3) / 2, abs=1e-6)
    assert t["score_drift"]["max"] == pytest.approx(0.3, abs=1e-6)
    c5 = s["per_class"]["5"]
    assert c5["recall"] is None and c5["precision"] == 0.0 and c5["matched_mask_iou"] is None
    assert s["per_class"]["1"]["recall"] == 0.5 and s["per_class"]["2"]["recall"] == 1.0
    assert [im["stem"] for im in s["worst_images"]] == ["c", "a"]
    assert s["worst_images"][0]["f1"] == 0.0


def test_empty_masks_match_by_box():
    boxes = np.array([[0, 0, 4, 4], [10, 10, 20, 20]], np.float32)
    ref = instances_from_outputs(boxes, np.array([1, 1]), np.array([0.9, 0.8]), np.zeros((2, 1, H, W)))
    cand = instances_from_outputs(boxes[::-1].copy(), np.array([1, 1]), np.array([0.8, 0.9]), np.zeros((2, 1, H, W)))
    m = match_instances(ref, cand)
    assert sorted((p.ref, p.cand, p.mask_iou) for p in m.pairs) == [(0, 1, 1.0), (1, 0, 1.0)]
    # an empty mask against a non-empty one never matches
    full = make([(0, 0, 4, 4)], [1], [0.9])
    assert match_instances(ref, full).matched == 0


def test_score_threshold_and_mask_threshold():
    masks = np.stack([rect(0, 0, 10, 10), rect(0, 0, 10, 10) * 0.5])[:, None]  # second mask prob .45 < .5
    inst = instances_from_outputs(np.zeros((2, 4)), np.array([1, 1]), np.array([0.9, 0.2]), masks,
                                  InstanceOptions(score_threshold=0.5))
    assert len(inst) == 1 and inst.masks.dtype == bool and inst.masks[0].sum() == 100
    inst2 = instances_from_outputs(np.zeros((2, 4)), np.array([1, 1]), np.array([0.9, 0.2]), masks)
    assert len(inst2) == 2 and inst2.masks[1].sum() == 0


def test_merge_equals_unsharded():
    rng = np.random.default_rng(0)
    pairs = []
    for k in range(6):
        rs = [tuple(sorted(rng.integers(0, 32, 2))) for _ in range(4)]
        rects = [(a, b, a + 6, b + 8) for a, b in rs]
        shifted = [(a + int(rng.integers(0, 3)), b, a + 6, b + 8) for a, b in rs]
        labels = list(rng.integers(1, 4, 4))
        pairs.append((f"im{k}", make(rects, labels, list(rng.random(4))), make(shifted, labels, list(rng.random(4)))))
    opts = InstanceOptions(worst_k=3)
    whole = InstanceAccumulator(opts)
    for stem, r, c in pairs:
        whole.update(stem, r, c)
    a, b = InstanceAccumulator(opts), InstanceAccumulator(opts)
    for i, (stem, r, c) in enumerate(pairs):
        (a if i % 2 else b).update(stem, r, c)
    merged = a.merge(b).summary()
    ref = whole.summary()
    assert merged["num_images"] == ref["num_images"] == 6
    for key in ("reference", "candidate", "matched", "missed", "extra"):
        assert merged["totals"][key] == ref["totals"][key]
    for key in ("matched_mask_iou", "recall", "precision", "box_iou"):
        assert merged["totals"][key] == pytest.approx(ref["totals"][key], rel=1e-12)
    assert merged["worst_images"] == ref["worst_images"] and len(ref["worst_images"]) <= 3
    with pytest.raises(UsageError, match="different thresholds"):
        InstanceAccumulator(InstanceOptions(iou_threshold=0.7)).merge(whole)


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        (dict(masks=np.zeros((2, 3, H, W))), DataError, r"expected \[N,1,H,W\]"),
        (dict(scores=np.zeros(3)), DataError, "outputs disagree"),
        (dict(labels=np.array([1, -1])), DataError, "negative label"),
        (dict(scores=np.array([0.5, np.nan])), VerificationError, "NaN/Inf"),
        (dict(masks=np.full((2, 1, H, W), np.inf, np.float32)), VerificationError, "masks contain NaN/Inf"),
        (dict(masks=np.zeros((2, 1, 8, 8))), DataError, "pasted at the input image size"),
    ],
)
def test_bad_outputs_raise_one_line_errors(kwargs, exc, msg):
    args = dict(boxes=np.zeros((2, 4)), labels=np.array([1, 2]), scores=np.array([0.5, 0.4]),
                masks=np.zeros((2, 1, H, W), np.float32))
    args.update(kwargs)
    with pytest.raises(exc, match=msg) as ei:
        instances_from_outputs(**args, image_size=(H, W), source="candidate")
    assert "\n" not in str(ei.value) and "candidate" in str(ei.value)


@pytest.mark.parametrize("kwargs", [dict(iou_threshold=0.0), dict(iou_threshold=1.5), dict(mask_threshold=1.0),
                                    dict(score_threshold=-0.1), dict(score_threshold=math.inf), dict(worst_k=-1)])
def test_bad_options(kwargs):
    with pytest.raises(UsageError):
        InstanceOptions(**kwargs)


def test_compare_instances_with_callables_and_empty_stream():
    img = np.zeros((H, W, 3), np.uint8)

    def model(shift):
        def run(chw):
            assert chw.shape == (3, H, W) and chw.dtype == np.float32
            m = rect(shift, 0, shift + 10, 10)[None, None]
            return {"boxes": np.array([[0, shift, 10, shift + 10]], np.float32), "labels": np.array([7]),
                    "scores": np.array([0.8], np.float32), "masks": m}
        return run

    rep = compare_instances(model(0), model(5), [("x", img), ("y", img)], keep_predictions=True)
    assert rep["totals"]["matched"] == 0 and rep["totals"]["recall"] == 0.0  # IoU 5/15 < .5
    preds = rep.pop("_predictions")
    assert set(preds) == {"x", "y"}
    cmap = instances_to_class_map(preds["x"][1])
    assert cmap.shape == (H, W) and set(np.unique(cmap)) == {0, 7}
    rep2 = compare_instances(model(0), model(1), [("x", img)], InstanceOptions(iou_threshold=0.5))
    assert rep2["totals"]["matched"] == 1 and rep2["totals"]["matched_mask_iou"] == pytest.approx(90 / 110)
    with pytest.raises(DataError, match="no images"):
        compare_instances(model(0), model(0), [])
    with pytest.raises(DataError, match="HxWx3 uint8"):
        compare_instances(model(0), model(0), [("x", img.astype(np.float32))])


def _maskrcnn(seed: int):
    import torch
    import torchvision

    torch.manual_seed(seed)
    # random init predicts near-uniform scores: keep every detection (score thresh 0) but only a few of them,
    # and few proposals so the test stays fast on 2 cores
    return torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0, box_detections_per_img=8,
        min_size=96, max_size=128, rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=50,
    ).eval()


@pytest.mark.slow
def test_maskrcnn_pytorch_vs_onnxruntime(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    model = _maskrcnn(0)
    onnx_path = tmp_path / "maskrcnn.onnx"
    torch.onnx.export(
        model, ([torch.rand(3, 96, 96)],), str(onnx_path), opset_version=17, dynamo=False,
        do_constant_folding=False, input_names=["image"], output_names=["boxes", "labels", "scores", "masks"],
        dynamic_axes={"image": {1: "height", 2: "width"}, "boxes": {0: "n"}, "labels": {0: "n"},
                      "scores": {0: "n"}, "masks": {0: "n", 2: "height", 3: "width"}},
    )
    rng = np.random.default_rng(0)
    # two small synthetic images, one of them at another resolution than the traced one (dynamic H/W)
    images = [("a", rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)),
              ("b", rng.integers(0, 256, (80, 112, 3), dtype=np.uint8))]
    folder = tmp_path / "images"
    folder.mkdir()
    for stem, img in images:
        Image.fromarray(img).save(folder / f"{stem}.png")
    ref = TorchInstanceModel(model)
    # the CLI's entry point: module reference, .onnx candidate on ONNX Runtime, image folder
    rep = run_instance_check(model, onnx_path, folder, command="segdeploy check --task instance ...")
    print(format_instance_report(rep))
    t = rep["totals"]
    assert rep["num_images"] == 2
    assert t["reference"] == 16 and t["candidate"] == 16  # 8 detections per image on both sides
    assert t["recall"] >= 0.9 and t["precision"] >= 0.9
    # random-init masks are tiny (a few pixels) and their probabilities sit near the 0.5 threshold, so one
    # pixel flipped by float noise (~1e-4) costs a pair up to 1/3 IoU: the mean stays high, not exactly 1
    assert t["matched_mask_iou"] > 0.95 and t["box_iou"] > 0.99
    assert t["score_drift"]["max"] < 1e-3

    assert rep["candidate"]["kind"] == "onnxruntime" and len(rep["candidate"]["sha256"]) == 64
    assert rep["gate"]["evaluated"] is False

    # the same metrics must see a different model as different (guards against a vacuous comparison)
    other = TorchInstanceModel(_maskrcnn(1))
    rep_other = compare_instances(ref, other, open_dataset(folder), gate=InstanceGate(min_recall=90))
    assert rep_other["totals"]["recall"] < 0.5
    assert rep_other["gate"]["passed"] is False and rep_other["gate"]["failures"][0].startswith("recall ")

    # the HTML report renders the instance report: one bar row per class seen, decodable overlay strips
    html_path = write_html_report(rep_other, tmp_path / "inst.html")
    text = html_path.read_text(encoding="utf-8")
    assert 'class="verdict fail"' in text
    assert text.count('class="class-row"') == len(rep_other["per_class"])
    assert text.count('data-panel="disagreement"') == len(rep_other["worst_images"]) > 0
    assert text.count('data-panel="image"') == len(rep_other["worst_images"])  # re-read from the recorded paths

    # the same check through `segdeploy check --task instance`: report written, gate applied (exit 3)
    from segdeploy.cli import main

    pickled = tmp_path / "maskrcnn.pt"
    torch.save(model, pickled)
    base = ["check", "--task", "instance", "--reference", str(pickled), "--trust-pickle", "--candidate", str(onnx_path),
            "--data", str(folder)]
    assert main(base + ["--min-recall", "90", "--report", str(tmp_path / "inst.json")]) == 0
    assert json.loads((tmp_path / "inst.json").read_text())["totals"]["recall"] >= 0.9
    assert main(base + ["--min-mask-iou", "100"]) == 3  # random-init masks flip a few pixels: below 100 %
    assert main(base + ["--max-miou-drop", "1"]) == 2  # a semantic gate with --task instance is a usage error


def test_instance_gate():
    from segdeploy.errors import GateError
    from segdeploy.parity.instances import InstanceGate, evaluate_instance_gate, raise_for_instance_gate

    ref = make([(0, 0, 10, 10), (12, 12, 30, 30)], [1, 2], [0.9, 0.8])
    cand = make([(0, 0, 10, 10)], [1], [0.7])
    acc = InstanceAccumulator()
    acc.update("a", ref, cand)
    s = acc.summary()
    g = evaluate_instance_gate(s, InstanceGate())
    assert g["evaluated"] is False and g["passed"] is None
    raise_for_instance_gate(g)  # not evaluated: no error
    g = evaluate_instance_gate(s, InstanceGate(min_recall=90, min_precision=90, max_score_drift=0.1))
    assert g["evaluated"] and g["passed"] is False and len(g["failures"]) == 2
    assert g["failures"][0].startswith("recall 50.00 % < 90 %") and "score drift 0.2000 > 0.1" in g["failures"][1]
    with pytest.raises(GateError, match="recall 50.00 %") as ei:
        raise_for_instance_gate(g)
    assert ei.value.exit_code == 3 and "\n" not in str(ei.value)
    assert evaluate_instance_gate(s, InstanceGate(min_precision=100, min_mask_iou=99))["passed"] is True
    empty = InstanceAccumulator()
    empty.update("e", make([], [], []), make([], [], []))
    g = evaluate_instance_gate(empty.summary(), InstanceGate(min_recall=50))
    assert g["passed"] is False and "undefined" in g["failures"][0]
    with pytest.raises(UsageError):
        InstanceGate(min_recall=150)


def test_format_instance_report():
    ref = make([(0, 0, 10, 10), (12, 12, 30, 30)], [1, 2], [0.9, 0.8])
    cand = make([(0, 0, 10, 10)], [1], [0.7])
    acc = InstanceAccumulator()
    acc.update("a", ref, cand)
    s = acc.summary()
    s["gate"] = {"evaluated": True, "passed": False, "failures": ["recall 50.00 % < 90 %"]}
    text = format_instance_report(s)
    assert "recall 50.00 %" in text and "matched 1 (missed 1, extra 0)" in text
    assert "gate: FAIL -- recall 50.00 % < 90 %" in text and "a: F1 66.67 %" in text
