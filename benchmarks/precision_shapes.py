"""mIoU of a model in FP32 PyTorch, INT8 per calibration method (with and without the budget search) and
FP16, on a labelled validation split, all measured with segdeploy on the CPU. Prints JSON.

usage: python benchmarks/precision_shapes.py MODEL.pt2 CALIB_DIR VAL_DIR [--budget 0.25] [--shape 1x3x128x128]
  e.g. python benchmarks/precision_shapes.py examples/shapes_unet.pt2 calibration/shapes/calib calibration/shapes/val

The same numbers come out of `segdeploy export MODEL --int8 --calib CALIB --calib-method M [--max-miou-drop X]`
(one method per run); this script shares one export, one statistics collection (every method is computed
from the same cached histograms) and one pass over the validation split for all candidates.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("calib")
    ap.add_argument("val")
    ap.add_argument("--budget", type=float, default=0.25)
    ap.add_argument("--budget-images", type=int, default=32)
    ap.add_argument("--shape", default=None)
    ap.add_argument("--methods", default="max,percentile,entropy,mse")
    a = ap.parse_args()

    import onnx

    from segdeploy.calibration import Method, calibrate
    from segdeploy.datasets import open_dataset
    from segdeploy.errors import GateError
    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model
    from segdeploy.manifest import onnx_profile_of, preprocess_of
    from segdeploy.precision.accuracy import Evaluator, check_accuracy_many
    from segdeploy.precision.budget import search_budget
    from segdeploy.precision.fp16 import convert_fp16
    from segdeploy.precision.qdq import quantize_qdq

    t0 = time.perf_counter()
    out: dict = {"model": a.model, "calib": a.calib, "val": a.val, "budget_points": a.budget, "rows": {}}
    val_dir = Path(a.val)
    val = open_dataset(val_dir / "images", val_dir / "masks")
    with tempfile.TemporaryDirectory() as d:
        res = export_model(a.model, Path(d) / "e", ExportOptions(shape=a.shape) if a.shape else None)
        module = res.loaded.module
        pre, prof = preprocess_of(res.manifest), onnx_profile_of(res.manifest)
        k = int(res.manifest["model"]["num_classes"])
        fp32 = onnx.load(str(res.onnx_path))
        cands: dict[str, Path] = {}
        budget_info: dict = {}
        absmax = None
        ev = Evaluator(module, val, preprocess=pre, profile=prof, num_classes=k, limit=a.budget_images)
        for method in a.methods.split(","):
            cal = calibrate(res.onnx_path, a.calib, preprocess=pre, profile=prof, method=Method(method),
                            cache_dir=Path(d) / "stats")
            absmax = cal.absmax
            q = quantize_qdq(fp32, cal.ranges)
            p = Path(d) / f"int8_{method}.onnx"
            onnx.save(q.model, str(p))
            cands[f"int8_{method}"] = p
            out["calib_images"] = cal.calib_set.size
            try:
                b = search_budget(fp32, cal.ranges, ev, a.budget)
                budget_info[method] = b.to_dict()
                if b.excluded:
                    pb = Path(d) / f"int8_{method}_budget.onnx"
                    onnx.save(b.model, str(pb))
                    cands[f"int8_{method}+budget"] = pb
            except GateError as e:
                budget_info[method] = {"gate": str(e)}
        ev.close()
        f16 = convert_fp16(fp32, absmax)
        pf = Path(d) / "fp16.onnx"
        onnx.save(f16.model, str(pf))
        cands["fp16"] = pf
        reps = check_accuracy_many(cands, module, val, preprocess=pre, profile=prof, num_classes=k, batch_size=8)
        first = next(iter(reps.values()))
        out["val_images"] = first.images
        out["rows"]["fp32_pytorch"] = {"miou": round(100 * first.reference_miou, 3)}
        for name, rep in reps.items():
            row = {f"miou_{lv}": round(100 * s.miou, 3) for lv, s in rep.levels.items()}
            row.update({f"drop_{lv}": round(s.drop, 3) for lv, s in rep.levels.items()})
            row["agreement_disable"] = round(rep.levels["disable"].agreement, 5)
            row["levels_disagree"] = rep.disagree
            out["rows"][name] = row
        out["budget"] = budget_info
        out["fp16_kept_fp32"] = f16.kept_report()
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
