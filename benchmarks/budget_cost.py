"""What the INT8 budget search costs: evaluations and seconds vs quantized layers x validation images. Prints JSON.

usage: python benchmarks/budget_cost.py [--images 8 16 32 64] [--out benchmarks/results/budget_cost.json]

Two models, one export + one calibration each, then ``search_budget`` (sensitivity ``all_but_one``, greedy
fallback) on the first N validation images for each N, on the CPU with ONNX Runtime:

* ``shapes_unet``: the shipped trained example on its labelled split (``calibration/shapes/val``), budget 0.0
  points (met by keeping a few layers in float);
* ``smp_unet_r18``: smp Unet/resnet18, random init, at 128 px on the same images without masks (truth = the
  PyTorch model's own predictions), budget 1.0 point.

Per row: quantized layers N, kept-out layers k, evaluations (~N + k + 1), seconds, seconds per evaluation per
image. The escalation the precision stage adds on top (4x the images until the whole split meets the budget)
repeats this at the larger sizes, so its cost is the sum of the rows it visits.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _smp_unet():
    import segmentation_models_pytorch as smp
    import torch

    torch.manual_seed(0)
    return smp.Unet(encoder_name="resnet18", encoder_weights=None, classes=6).eval()


def _measure(name, model, shape, val, budget, sizes, work: Path) -> list[dict]:
    import onnx

    from segdeploy.calibration import Method, calibrate
    from segdeploy.errors import GateError
    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model
    from segdeploy.precision.accuracy import Evaluator
    from segdeploy.precision.budget import search_budget

    res = export_model(model, work / name, ExportOptions(shape=shape, max_batch=8))
    ed = res.manifest
    from segdeploy.manifest import onnx_profile_of, preprocess_of

    pre, prof = preprocess_of(ed), onnx_profile_of(ed)
    k = int(ed["model"]["num_classes"])
    cal = calibrate(res.onnx_path, ROOT / "calibration" / "shapes" / "calib", preprocess=pre, profile=prof,
                    method=Method("entropy"), cache_dir=work / "stats")
    fp32 = onnx.load(str(res.onnx_path))
    rows = []
    for n in sizes:
        with Evaluator(res.loaded.module, val, preprocess=pre, profile=prof, num_classes=k, limit=n) as ev:
            t0 = time.perf_counter()
            try:
                b = search_budget(fp32, cal.ranges, ev, budget)
                row = {"drop_points": round(b.drop, 4), "initial_drop_points": round(b.initial_drop, 4),
                       "kept_out": len(b.excluded), "met": True}
            except GateError as e:
                row = {"met": False, "error": e.message, "kept_out": len(getattr(e, "kept_out", []))}
            dt = time.perf_counter() - t0
            from segdeploy.precision.qdq import quantize_qdq

            layers = len(quantize_qdq(fp32, cal.ranges).quantized)
            row.update({"model": name, "images": ev.images, "quantized_layers": layers, "evaluations": ev.evaluations,
                        "seconds": round(dt, 2),
                        "ms_per_evaluation_per_image": round(1000 * dt / max(1, ev.evaluations * ev.images), 2)})
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    from segdeploy.datasets import open_dataset
    from segdeploy.load import load_model

    val_dir = ROOT / "calibration" / "shapes" / "val"
    labelled = open_dataset(val_dir / "images", val_dir / "masks")
    unlabelled = open_dataset(val_dir / "images")
    t0 = time.perf_counter()
    out = {"rows": []}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        lm = load_model(ROOT / "examples" / "shapes_unet.pt2")
        out["rows"] += _measure("shapes_unet", lm, "1x3x128x128", labelled, 0.0, a.images, work)
        out["rows"] += _measure("smp_unet_r18", _smp_unet(), "1x3x128x128", unlabelled, 1.0, a.images, work)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(out, indent=1)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
