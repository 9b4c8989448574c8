"""The committed example: examples/shapes_unet.pt2 and calibration/shapes/ (data every later stage uses)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from segdeploy.datasets import open_dataset, read_image, shapes
from segdeploy.parity.metrics import ConfusionMatrix
from segdeploy.spec import Preprocess

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "shapes_unet.pt2"
REPORT = ROOT / "examples" / "shapes_unet.json"
CALIB = ROOT / "calibration" / "shapes" / "calib"
VAL = ROOT / "calibration" / "shapes" / "val"


def _normalise(images: list[np.ndarray]) -> torch.Tensor:
    pre = Preprocess()  # the model was trained with the default preprocessing
    x = np.stack(images).astype(np.float32) * pre.scale
    x = (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def test_committed_data_layout_and_size():
    calib = sorted(CALIB.glob("*.png"))
    val_images = sorted((VAL / "images").glob("*.png"))
    val_masks = sorted((VAL / "masks").glob("*.png"))
    assert len(calib) >= 64 and len(val_images) >= 64
    assert [p.name for p in val_images] == [p.name for p in val_masks]
    total = sum(p.stat().st_size for p in (ROOT / "calibration" / "shapes").rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024, f"calibration/shapes is {total} bytes"
    assert MODEL.stat().st_size < 8 * 1024 * 1024


def test_committed_data_is_what_the_generator_makes_and_splits_are_disjoint():
    # the first val pair and the first calib image are byte-for-byte regenerable from the generator
    img, mask = shapes.make_sample(0, size=(128, 128), split="val")
    np.testing.assert_array_equal(read_image(VAL / "images" / "shapes_val_0000.png"), img)
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(VAL / "masks" / "shapes_val_0000.png")), mask)
    cimg, _ = shapes.make_sample(0, size=(128, 128), split="calib")
    np.testing.assert_array_equal(read_image(CALIB / "shapes_calib_0000.png"), cimg)
    digests = {}
    for p in list(CALIB.glob("*.png")) + list((VAL / "images").glob("*.png")):
        d = hashlib.sha256(read_image(p).tobytes()).hexdigest()
        assert d not in digests, f"{p.name} duplicates {digests[d]}"
        digests[d] = p.name


def test_report_matches_the_dataset():
    report = json.loads(REPORT.read_text())
    assert report["class_names"] == list(shapes.CLASS_NAMES)
    assert report["held_out"]["miou"] >= 0.85
    assert report["preprocess"]["mean"] == list(Preprocess().mean)
    assert report["preprocess"]["std"] == list(Preprocess().std)


def test_committed_model_reaches_085_miou_on_committed_val():
    program = torch.export.load(str(MODEL))
    model = program.module()
    ds = open_dataset(VAL / "images", VAL / "masks")
    samples = list(ds)
    assert len(samples) >= 64
    cm = ConfusionMatrix(shapes.NUM_CLASSES)
    with torch.no_grad():
        for s in range(0, len(samples), 16):
            chunk = samples[s : s + 16]
            logits = model(_normalise([c.image for c in chunk]))
            assert logits.shape[1] == shapes.NUM_CLASSES
            pred = logits.argmax(1).numpy()
            for p, c in zip(pred, chunk):
                cm.update(p, np.asarray(c.mask).astype(np.int64), name=c.stem)
    summary = cm.summary()
    assert summary["miou"] >= 0.85, summary
    assert all(v is not None and v > 0.6 for v in summary["per_class_iou"]), summary["per_class_iou"]


def test_committed_model_runs_at_other_batch_and_resolution():
    model = torch.export.load(str(MODEL)).module()
    img, _ = shapes.make_sample(3, size=(96, 160), split="val")
    x = _normalise([img, img, img])
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, shapes.NUM_CLASSES, 96, 160)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], out[2])
