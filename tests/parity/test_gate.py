"""Gate thresholds: units, messages, per-class floor, unlabelled definition."""

from __future__ import annotations

import pytest

from segdeploy.errors import GateError, UsageError
from segdeploy.parity.gate import GateOptions, evaluate_gate, raise_for_gate


def _report(mode="labelled", ref=0.70, cand=0.68, agree_px=0.97, agree_miou=0.9, per_class=(0.9, 0.3, None), nf=0):
    summary = lambda miou, pc: {"miou": miou, "pixel_accuracy": agree_px, "per_class_iou": list(pc)}  # noqa: E731
    metrics = {
        "agreement": summary(agree_miou, per_class),
        "reference": summary(ref, per_class) if mode == "labelled" else None,
        "candidate": summary(cand, per_class) if mode == "labelled" else None,
        "drift": {"miou_points": 100 * (ref - cand)} if mode == "labelled" else None,
    }
    return {"mode": mode, "metrics": metrics, "dataset": {"num_evaluated": 5},
            "classes": {"names": ["bg", "road", "car"]}, "nonfinite": {"images": nf, "values": 3 * nf}}


def test_no_thresholds_not_evaluated():
    g = evaluate_gate(_report(), GateOptions())
    assert not g.evaluated and g.passed is None
    raise_for_gate(g)  # does not raise


def test_miou_drop_in_points():
    assert evaluate_gate(_report(), GateOptions(max_miou_drop=2.5)).passed
    g = evaluate_gate(_report(), GateOptions(max_miou_drop=1.0))
    assert not g.passed and g.failures[0].startswith("mIoU drop 2.000 points > budget 1")
    assert "reference 70.00 %, candidate 68.00 %" in g.failures[0]
    with pytest.raises(GateError) as e:
        raise_for_gate(g)
    assert e.value.exit_code == 3


def test_unlabelled_drop_is_100_minus_agreement_miou():
    r = _report(mode="unlabelled", agree_miou=0.985)
    assert evaluate_gate(r, GateOptions(max_miou_drop=2.0)).passed
    assert not evaluate_gate(r, GateOptions(max_miou_drop=1.0)).passed


def test_agreement_and_class_floor():
    g = evaluate_gate(_report(), GateOptions(min_agreement=98, min_class_iou=50))
    assert len(g.failures) == 2
    assert "pixel agreement 97.00 % < minimum 98 %" in g.failures[0]
    assert "class 1 (road) 30.00 %" in g.failures[1] and "car" not in g.failures[1]


def test_nonfinite_always_fails():
    g = evaluate_gate(_report(nf=2), GateOptions(max_miou_drop=50))
    assert not g.passed and "NaN/Inf outputs on 2 image(s)" in g.failures[0]


def test_option_validation():
    with pytest.raises(UsageError, match="looks like a fraction"):
        GateOptions(min_agreement=0.99)
    with pytest.raises(UsageError, match="0..100"):
        GateOptions(max_miou_drop=-1)
