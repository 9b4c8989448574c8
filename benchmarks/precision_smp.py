"""INT8 placement beyond our own model: segmentation_models_pytorch Unet, DeepLabV3Plus, PSPNet
(resnet18, random init) exported with segdeploy, calibrated on a calibration folder, quantized with
segdeploy's placer, and compared with the FP32 PyTorch model on a disjoint image folder: pixel argmax
agreement at ORT_DISABLE_ALL and ORT_ENABLE_ALL. Prints JSON.

usage: python benchmarks/precision_smp.py CALIB_DIR VAL_IMAGES_DIR [--methods max,entropy] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("calib")
    ap.add_argument("val")
    ap.add_argument("--methods", default="max,entropy")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--archs", default="Unet,DeepLabV3Plus,PSPNet")
    a = ap.parse_args()

    import onnx
    import segmentation_models_pytorch as smp
    import torch

    from segdeploy.calibration import Method, calibrate
    from segdeploy.datasets import open_dataset
    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model
    from segdeploy.manifest import onnx_profile_of, preprocess_of
    from segdeploy.precision.accuracy import check_accuracy_many
    from segdeploy.precision.qdq import check_trt_qdq, quantize_qdq

    out = {"calib": a.calib, "val": a.val, "models": {}}
    val = open_dataset(a.val)  # unlabelled: agreement is measured against the FP32 PyTorch model
    for arch in a.archs.split(","):
        torch.manual_seed(0)
        kw = {"encoder_weights": None, "classes": 6}
        if arch == "PSPNet":
            kw["encoder_depth"] = 3  # smp's default PSPNet (resnet18, depth 3, upsampling 8)
        model = getattr(smp, arch)("resnet18", **kw).eval()
        row: dict = {}
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            res = export_model(model, Path(d) / "e", ExportOptions(shape=f"1x3x{a.size}x{a.size}"))
            row["export_s"] = round(time.perf_counter() - t, 1)
            row["exporter"] = res.exporter
            pre, prof = preprocess_of(res.manifest), onnx_profile_of(res.manifest)
            fp32 = onnx.load(str(res.onnx_path))
            cands = {}
            for method in a.methods.split(","):
                cal = calibrate(res.onnx_path, a.calib, preprocess=pre, profile=prof, method=Method(method),
                                cache_dir=Path(d) / "stats")
                q = quantize_qdq(fp32, cal.ranges)
                p = Path(d) / f"int8_{method}.onnx"
                onnx.save(q.model, str(p))
                cands[method] = p
                row[f"{method}_quantized_layers"] = len(q.quantized)
                row[f"{method}_rule_violations"] = len(check_trt_qdq(q.model))
            reps = check_accuracy_many(cands, model, val, preprocess=pre, profile=prof, num_classes=6, batch_size=4)
            for method, rep in reps.items():
                for lv, s in rep.levels.items():
                    row[f"{method}_agreement_{lv}"] = round(s.agreement, 5)
                row[f"{method}_levels_disagree"] = rep.disagree
        out["models"][arch] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
