"""run_check end to end on CPU: torch reference vs ONNX Runtime candidate (tiny random-init models)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from parity_helpers import K, TinySeg, export_onnx, make_dataset
from PIL import Image

from segdeploy.datasets import open_dataset
from segdeploy.errors import ArtifactError, DataError, GateError, ModelLoadError, ShapeError, VerificationError
from segdeploy.parity.check import CheckOptions, run_check
from segdeploy.parity.gate import GateOptions
from segdeploy.parity.report_json import validate_report
from segdeploy.parity.terminal import format_report
from segdeploy.spec import Preprocess, ShapeProfile


class NaNWhereBright(torch.nn.Module):
    """The tiny model, but NaN logits wherever the first input channel is bright (a broken deployment)."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def forward(self, x):
        y = self.base(x)
        return torch.where(x[:, :1] > 2.0, torch.full_like(y, float("nan")), y)


@pytest.fixture(scope="module")
def perturbed_onnx(tiny_model, tmp_path_factory):
    m = copy.deepcopy(tiny_model)
    with torch.no_grad():
        m.b.bias[1] += 0.3  # a deployment that favours class 1
    return export_onnx(m, tmp_path_factory.mktemp("pert") / "pert.onnx")


def test_labelled_identical_model_has_zero_drift(tiny_model, tiny_onnx, data):
    images, masks = data
    r = run_check(tiny_model, tiny_onnx, images, masks, options=CheckOptions(batch_size=2,
                  gate=GateOptions(max_miou_drop=0.01, min_agreement=99.9)))
    rep = validate_report(json.loads(json.dumps(r.report)))  # JSON-serialisable and valid
    assert r.mode == "labelled" and rep["dataset"]["num_evaluated"] == 7
    assert abs(rep["metrics"]["drift"]["miou_points"]) < 1e-9
    assert rep["metrics"]["agreement"]["pixel_accuracy"] > 0.999
    assert r.passed is True and rep["gate"]["failures"] == []
    # ignore pixels (top 2 rows of each mask) are not counted
    n_px = sum(np.asarray(Image.open(p)).size - 2 * np.asarray(Image.open(p)).shape[1] for p in sorted(masks.iterdir()))
    assert rep["metrics"]["reference"]["pixels"] == n_px
    assert len(rep["worst_images"]) == 7 and rep["worst_images"][0]["reference_png"]
    assert "mIoU" in format_report(rep)


def test_labelled_drift_is_measured_and_gated(tiny_model, perturbed_onnx, data):
    images, masks = data
    r = run_check(tiny_model, perturbed_onnx, images, masks,
                  options=CheckOptions(gate=GateOptions(max_miou_drop=0.0, min_agreement=99.0)))
    m = r.metrics
    drop = m["drift"]["miou_points"]
    assert drop == pytest.approx(100 * (m["reference"]["miou"] - m["candidate"]["miou"]))
    assert m["agreement"]["pixel_accuracy"] < 0.99
    assert r.passed is False
    assert any("pixel agreement" in f for f in r.gate.failures)
    with pytest.raises(GateError) as e:
        r.raise_for_gate()
    assert e.value.exit_code == 3 and "pixel agreement" in e.value.message
    # worst images: sorted worst first by per-image mIoU drop
    drops = [w["miou_drop_points"] for w in r.worst_images]
    assert drops == sorted(drops, reverse=True)


def test_unlabelled_mode(tiny_model, perturbed_onnx, data):
    images, _ = data
    r = run_check(tiny_model, perturbed_onnx, images, options=CheckOptions(worst_k=3,
                  gate=GateOptions(max_miou_drop=1.0)))
    assert r.mode == "unlabelled" and r.reference_cm is None and r.metrics["drift"] is None
    a = r.metrics["agreement"]
    assert 0 < a["pixel_accuracy"] < 1
    assert len(r.worst_images) == 3
    agr = [w["pixel_agreement"] for w in r.worst_images]
    assert agr == sorted(agr)
    assert r.passed is False and "mIoU drop" in r.gate.failures[0]  # 100 - agreement mIoU > 1 point


def test_nonfinite_candidate_fails_or_is_scored_wrong(tiny_model, tmp_path):
    images, masks = make_dataset(tmp_path / "d", n=3)
    bad = export_onnx(NaNWhereBright(tiny_model), tmp_path / "nan.onnx")
    with pytest.raises(VerificationError, match="NaN/Inf"):
        run_check(tiny_model, bad, images, masks)
    r = run_check(tiny_model, bad, images, masks, options=CheckOptions(on_error="skip",
                  gate=GateOptions(max_miou_drop=100.0)))
    assert r.report["nonfinite"]["images"] == 3
    assert {e.kind for e in r.errors} == {"nonfinite_candidate"}
    assert r.metrics["candidate"]["invalid_pixels"] > 0
    assert r.metrics["agreement"]["pixel_accuracy"] < 1.0  # NaN pixels never count as agreeing
    assert r.passed is False and "NaN/Inf" in r.gate.failures[0]  # even with a generous mIoU budget
    assert "NaN/Inf" in format_report(r.report)


def test_bad_files_fail_or_are_skipped(tiny_model, tiny_onnx, tmp_path):
    images, masks = make_dataset(tmp_path / "d", n=4)
    (images / "im01.png").write_bytes(b"corrupt")
    Image.fromarray(np.full((32, 40), 9, np.uint8)).save(masks / "im02.png")  # label 9 >= 4 classes
    with pytest.raises(DataError, match="cannot read image"):
        run_check(tiny_model, tiny_onnx, images, masks)
    r = run_check(tiny_model, tiny_onnx, images, masks, options=CheckOptions(on_error="skip", batch_size=4))
    kinds = {e.stem: e.kind for e in r.errors}
    assert kinds == {"im01": "data", "im02": "data"}
    assert "label 9" in [e.message for e in r.errors if e.stem == "im02"][0]
    assert r.report["dataset"]["num_evaluated"] == 2 and r.report["dataset"]["num_skipped"] == 2
    # the skipped images contributed nothing: same as checking only the good ones
    good = open_dataset(images, masks)
    good.entries = [e for e in good.entries if e.stem in ("im00", "im03")]
    r2 = run_check(tiny_model, tiny_onnx, good)
    assert np.array_equal(r.reference_cm.matrix, r2.reference_cm.matrix)


def test_model_manifest_and_class_mismatch(tiny_model, tiny_onnx, tmp_path, data):
    images, masks = data
    other = export_onnx(TinySeg(k=K + 1).eval(), tmp_path / "k5.onnx")
    with pytest.raises(ModelLoadError, match="reference outputs 4 classes but candidate outputs 5"):
        run_check(tiny_model, other, images, masks)
    with pytest.raises(Exception, match="--num-classes 3 but the model outputs 4"):
        run_check(tiny_model, tiny_onnx, images, masks, options=CheckOptions(num_classes=3))
    manifest = _manifest(num_classes=7)
    with pytest.raises(ArtifactError, match="manifest says 7 classes but the model outputs 4"):
        run_check(tiny_model, tiny_onnx, images, masks, manifest=manifest)


def test_profile_limits_and_resize_mode(tiny_model, tiny_onnx, tmp_path):
    images, masks = make_dataset(tmp_path / "d", n=3, sizes=((30, 50), (100, 20), (16, 16)))
    prof = ShapeProfile((1, 3, 16, 16), (1, 3, 32, 32), (2, 3, 64, 64), 16)
    with pytest.raises(ShapeError, match="above the model's max input"):
        run_check(tiny_model, tiny_onnx, images, masks, profile=prof)
    r = run_check(tiny_model, tiny_onnx, images, masks, profile=prof, options=CheckOptions(on_error="skip"))
    assert [e.stem for e in r.errors] == ["im01"] and r.report["dataset"]["num_evaluated"] == 2
    r = run_check(tiny_model, tiny_onnx, images, masks, profile=prof, preprocess=Preprocess(resize="resize"))
    assert r.report["dataset"]["num_evaluated"] == 3
    # metrics are at mask resolution: every non-ignore mask pixel counted
    total = sum(h * w - 2 * w for h, w in ((30, 50), (100, 20), (16, 16)))
    assert r.metrics["reference"]["pixels"] == total


def test_non_rgb_model_is_refused_up_front(tiny_model, tiny_onnx, data):
    images, masks = data
    prof = ShapeProfile((1, 1, 16, 16), (1, 1, 32, 32), (2, 1, 64, 64), 1)
    with pytest.raises(ShapeError, match="1-channel input"):
        run_check(tiny_model, tiny_onnx, images, masks, profile=prof)


def test_empty_shard_and_empty_dataset(tiny_model, tiny_onnx, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        run_check(tiny_model, tiny_onnx, tmp_path / "empty")


def _manifest(num_classes=K):
    return {
        "schema": "segdeploy.manifest", "schema_version": 2, "segdeploy_version": "0.1.0",
        "source": {"format": "module", "sha256": "0"},
        "model": {"in_channels": 3, "num_classes": num_classes, "spatial_multiple": 1, "output_selection": "tensor",
                  "class_names": [f"c{i}" for i in range(num_classes)]},
        "inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 3, "height", "width"],
                    "profile": ShapeProfile((1, 3, 8, 8), (1, 3, 32, 32), (4, 3, 64, 64), 1).to_dict()}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", num_classes, "height", "width"]}],
        "preprocess": Preprocess().to_dict(), "onnx": {"file": "model.onnx", "opset": 17, "exporter": "x", "sha256": "0"},
        "rewrites": [], "verification": {"passed": True, "shapes": []}, "versions": {},
        "files": {"model.onnx": {"kind": "onnx", "sha256": "0" * 64, "bytes": 1, "derived_from": {}}},
    }


def test_manifest_supplies_classes_and_profile(tiny_model, tiny_onnx, data):
    images, masks = data
    r = run_check(tiny_model, tiny_onnx, images, masks, manifest=_manifest())
    assert r.report["classes"]["names"] == ["c0", "c1", "c2", "c3"]
    assert r.report["profile"]["max"] == [4, 3, 64, 64]


def test_every_image_failing_is_an_error_not_a_pass(tiny_model, tiny_onnx, tmp_path):
    images, masks = make_dataset(tmp_path / "d", n=2)
    for p in images.iterdir():
        p.write_bytes(b"junk")
    with pytest.raises(DataError, match="no image could be evaluated: 2 of 2 failed"):
        run_check(tiny_model, tiny_onnx, images, masks, options=CheckOptions(on_error="skip"))


def test_empty_shard_merges(tiny_model, tiny_onnx, tmp_path):
    from segdeploy.parity.shard import merge_reports

    images, masks = make_dataset(tmp_path / "d", n=2)
    with pytest.raises(DataError, match="shard 2/3 has no images"):
        run_check(tiny_model, tiny_onnx, images, masks, options=CheckOptions(shard=(2, 3)))
    parts = [run_check(tiny_model, tiny_onnx, images, masks, options=CheckOptions(shard=(i, 3), num_classes=K)).report
             for i in range(3)]
    assert parts[2]["mode"] == "labelled" and parts[2]["dataset"]["num_entries"] == 0
    merged = merge_reports(parts)
    whole = run_check(tiny_model, tiny_onnx, images, masks).report
    assert merged["metrics"] == whole["metrics"]


def test_with_segdeploy_export_manifest(tiny_model, tmp_path):
    """The real pipeline: export_model writes ONNX + manifest; check picks the manifest up beside the ONNX."""
    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model

    res = export_model(
        tiny_model, tmp_path / "exp",
        ExportOptions(shape="1x3x32x32", spatial_multiple=8, exporter="torchscript",
                               class_names=("bg", "a", "b", "c")),
    )
    images, masks = make_dataset(tmp_path / "d", n=3, sizes=((30, 45), (32, 32), (17, 60)))
    r = run_check(tiny_model, str(res.onnx_path), images, masks, options=CheckOptions(gate=GateOptions(max_miou_drop=0.01)))
    rep = r.report
    assert rep["manifest"] == str(res.manifest_path) and rep["classes"]["names"] == ["bg", "a", "b", "c"]
    assert rep["profile"]["spatial_multiple"] == 8 and r.passed
    assert rep["metrics"]["agreement"]["pixel_accuracy"] > 0.999
    assert rep["metrics"]["reference"]["pixels"] == sum(h * w - 2 * w for h, w in ((30, 45), (32, 32), (17, 60)))


def test_progress_says_what_opens_then_counts_images_with_an_eta(tiny_model, tiny_onnx, data):
    import io

    from segdeploy.progress import Progress

    images, masks = data
    stream = io.StringIO()
    run_check(tiny_model, tiny_onnx, images, masks, options=CheckOptions(batch_size=1),
              progress=Progress(stream=stream, tty=False))
    lines = [l.split("] ", 1)[1] for l in stream.getvalue().splitlines()]
    assert lines[0].startswith("check: opening the reference, ") and lines[1].startswith("check: opening the candidate, ")
    assert any(l.startswith("check: ") and "images (" in l and "ETA" in l for l in lines[2:-1]), lines
    assert lines[-1].startswith("check: 7/7 images in ")
    quiet = io.StringIO()
    run_check(tiny_model, tiny_onnx, images, masks, progress=Progress(False, stream=quiet, tty=False))
    assert quiet.getvalue() == ""
