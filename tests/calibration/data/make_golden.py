#!/usr/bin/env python
"""Regenerate the golden calibration ranges in this folder (tests/calibration/test_golden.py reads them).

    PYTHONPATH=. python tests/calibration/data/make_golden.py            # writes golden_ranges.json

The goldens were produced ONCE with the calibration implementation before issue 18 (commit 84741c8,
one histogram per tensor for every method) and committed with the model and images they describe:

* golden_unet.onnx  -- segdeploy.zoo.unet.compact_unet(num_classes=4, base=4), torch.manual_seed(0),
                       exported by torch.onnx.export (opset 17, dynamic N/H/W); written only when missing
* golden_images/    -- 16 images of segdeploy.datasets.shapes split "calib" at 48x48; written only when missing
* golden_ranges.json -- per method: tensor -> amax, batch 4, default Preprocess, 2048 bins

Re-running it after issue 18 reproduces the file only when the new implementation matches the old one
(that is what the test checks); do not regenerate it to make a failing test pass.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = HERE / "golden_unet.onnx"
IMAGES = HERE / "golden_images"
RANGES = HERE / "golden_ranges.json"
SIZE = 48
COUNT = 16
BATCH = 4
# (label, Method keyword arguments)
METHOD_CASES = (
    ("max", {"kind": "max"}),
    ("percentile99.99", {"kind": "percentile", "percentile": 99.99}),
    ("percentile99.999", {"kind": "percentile", "percentile": 99.999}),
    ("entropy", {"kind": "entropy"}),
    ("mse", {"kind": "mse"}),
)


def spec():
    from segdeploy.spec import Preprocess, ShapeProfile

    return Preprocess(), ShapeProfile((1, 3, 16, 16), (1, 3, SIZE, SIZE), (8, 3, 64, 64))


def write_inputs() -> None:
    if not MODEL.is_file():
        import torch

        from segdeploy.zoo.unet import compact_unet

        torch.manual_seed(0)
        model = compact_unet(num_classes=4, base=4).eval()
        dyn = {0: "batch", 2: "height", 3: "width"}
        torch.onnx.export(model, torch.randn(1, 3, SIZE, SIZE), str(MODEL), input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": dyn, "logits": dyn}, dynamo=False,
                          opset_version=17)
    if not IMAGES.is_dir():
        from segdeploy.datasets import shapes

        shapes.write_split(IMAGES, COUNT, "calib", size=(SIZE, SIZE), images_only=True)


def main() -> int:
    import onnxruntime

    from segdeploy.calibration import Method, calibrate

    write_inputs()
    pre, prof = spec()
    doc = {"source": "segdeploy.calibration.calibrate at commit 84741c8 (before issue 18)",
           "onnxruntime": onnxruntime.__version__, "machine": platform.machine(), "batch_size": BATCH,
           "num_bins": 2048, "methods": {}}
    for label, kw in METHOD_CASES:
        res = calibrate(MODEL, IMAGES, preprocess=pre, profile=prof, method=Method(**kw), batch_size=BATCH)
        doc["methods"][label] = {"method": kw, "ranges": res.ranges}
        doc["bin_width"] = {n: h.bin_width for n, h in res.statistics.tensors.items()}
    RANGES.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"wrote {RANGES} ({len(doc['bin_width'])} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
