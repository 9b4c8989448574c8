#!/usr/bin/env python
"""Parity-checker costs, printed as JSON.

    python benchmarks/metrics.py                 # defaults below, JSON to stdout
    python benchmarks/metrics.py --quick         # smaller sizes (CI smoke)

1. Confusion-matrix throughput (Mpix/s): segdeploy.parity.metrics.ConfusionMatrix.update (one np.bincount
   per image) side by side with the textbook per-class loop (``calculate_iou``: for every class, boolean
   masks pred == c and target == c, intersection and union sums), accumulated over the same images.
   Both ignore the same pixels (255); the JSON says whether their per-class IoUs agree (they must).
   Sizes: 512x512 with K = 2, 21 (VOC), 150 (ADE20K), and 1024x2048 with K = 19 (Cityscapes).
2. Check-loop overhead: ``run_check`` (torch reference vs ONNX Runtime candidate, labelled mode) on
   synthetic images with masks; overhead = (loop time - reference runner time - candidate runner time) /
   runner time, with the breakdown (decode, preprocess, argmax + restore + scoring). Two models: a tiny
   2-conv net (worst case: the runners cost almost nothing) and a compact U-Net (the shipped example
   model examples/shapes_unet.pt2 when present, else segdeploy.zoo's U-Net or smp Unet(resnet18), random init).

Timings are best-of-N wall clock (perf_counter); the machine is shared, so compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segdeploy.parity.metrics import ConfusionMatrix  # noqa: E402


def calculate_iou_loop(preds, targets, num_classes, ignore_index=255):
    """The textbook per-class loop, accumulated over images (intersection/union per class)."""
    inter = np.zeros(num_classes, dtype=np.int64)
    union = np.zeros(num_classes, dtype=np.int64)
    for pred, target in zip(preds, targets):
        valid = target != ignore_index
        for c in range(num_classes):
            p = (pred == c) & valid
            t = target == c
            i = np.logical_and(p, t).sum()
            inter[c] += i
            union[c] += p.sum() + t.sum() - i
    return [float(inter[c] / union[c]) if union[c] else None for c in range(num_classes)]


def _best(fn, repeat):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_confusion(h, w, k, n_images, repeat):
    rng = np.random.default_rng(0)
    targets = [rng.integers(0, k, (h, w)).astype(np.uint8 if k < 255 else np.int64) for _ in range(n_images)]
    for t in targets:
        t[rng.random(t.shape) < 0.05] = 255
    # predictions: argmax output dtype (int64), agreeing with the truth on ~80 % of pixels
    preds = []
    for t in targets:
        p = t.astype(np.int64)
        flip = (rng.random(t.shape) < 0.2) | (t == 255)
        p[flip] = rng.integers(0, k, int(flip.sum()))
        preds.append(p)

    def ours():
        cm = ConfusionMatrix(k, 255)
        for p, t in zip(preds, targets):
            cm.update(p, t)
        return cm.summary()["per_class_iou"]

    def loop():
        return calculate_iou_loop(preds, targets, k)

    t_ours, iou_ours = _best(ours, repeat)
    t_loop, iou_loop = _best(loop, repeat)
    same = all(
        (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-12)
        for a, b in zip(iou_ours, iou_loop)
    )
    mpix = n_images * h * w / 1e6
    return {
        "size": f"{h}x{w}",
        "num_classes": k,
        "images": n_images,
        "segdeploy_bincount_mpix_s": round(mpix / t_ours, 1),
        "textbook_per_class_loop_mpix_s": round(mpix / t_loop, 1),
        "speedup": round(t_loop / t_ours, 2),
        "same_per_class_iou": same,
    }


def _tiny_model():
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    torch.manual_seed(0)
    return Tiny().eval(), "tiny 2-conv net (3->8->4)"


def _unet_model():
    import torch

    ex = Path(__file__).resolve().parents[1] / "examples" / "shapes_unet.pt2"
    if ex.is_file():
        try:
            from segdeploy.load import load_model

            lm = load_model(str(ex))
            return lm.raw, f"examples/shapes_unet.pt2 ({lm.format})"
        except Exception as e:  # fall through to a random-init model, say why
            note = f"shapes_unet.pt2 not loadable here ({type(e).__name__}); "
    else:
        note = ""
    torch.manual_seed(0)
    try:
        from segdeploy.zoo import create  # type: ignore[attr-defined]

        return create("unet", num_classes=4).eval(), note + "segdeploy.zoo unet, random init"
    except Exception:
        pass
    import segmentation_models_pytorch as smp

    return smp.Unet("resnet18", encoder_weights=None, classes=4).eval(), note + "smp Unet(resnet18), random init"


def _export(model, path):
    import torch

    dyn = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    torch.onnx.export(model, torch.zeros(1, 3, 128, 128), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes=dyn, dynamo=False)


def bench_check(model_fn, n_images, size, batch_size, tmp):
    from PIL import Image

    from segdeploy.parity.check import CheckOptions, run_check
    from segdeploy.spec import ShapeProfile

    model, desc = model_fn()
    onnx_path = Path(tmp) / f"m{abs(hash(desc))}.onnx"
    _export(model, onnx_path)
    root = Path(tmp) / f"data{size}_{n_images}"
    if not root.exists():
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
        rng = np.random.default_rng(0)
        for i in range(n_images):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "images" / f"{i:04d}.png")
            Image.fromarray(rng.integers(0, 4, (size, size)).astype(np.uint8)).save(root / "masks" / f"{i:04d}.png")
    prof = ShapeProfile((1, 3, 32, 32), (1, 3, size, size), (max(8, batch_size), 3, 2 * size, 2 * size), 32)
    r = run_check(model, str(onnx_path), root / "images", root / "masks", profile=prof,
                  options=CheckOptions(batch_size=batch_size))
    t = r.report["timing"]
    runner = t["reference"]["total_s"] + t["candidate"]["total_s"]
    return {
        "model": desc,
        "images": n_images,
        "size": f"{size}x{size}",
        "batch_size": batch_size,
        "reference_torch_s": round(t["reference"]["total_s"], 4),
        "candidate_ort_s": round(t["candidate"]["total_s"], 4),
        "decode_s": round(t["load_s"], 4),
        "preprocess_s": round(t["preprocess_s"], 4),
        "argmax_restore_score_s": round(t["metrics_s"], 4),
        "loop_s": round(t["loop_s"], 4),
        "overhead_vs_runner_time": round((t["loop_s"] - runner) / runner, 4),
        "drift_miou_points": r.metrics["drift"]["miou_points"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.quick:
        cm_cases = [(256, 256, 21, 2)]
        check_cases = [(_tiny_model, 8, 64, 4)]
    else:
        cm_cases = [(512, 512, 2, 8), (512, 512, 21, 8), (512, 512, 150, 4), (1024, 2048, 19, 2)]
        check_cases = [(_tiny_model, 32, 128, 8), (_unet_model, 32, 128, 8)]
    out = {
        "benchmark": "segdeploy.parity metrics and check loop",
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "numpy": np.__version__,
        "confusion_matrix": [bench_confusion(h, w, k, n, args.repeat) for h, w, k, n in cm_cases],
    }
    with tempfile.TemporaryDirectory() as tmp:
        out["check_loop"] = [bench_check(fn, n, s, b, tmp) for fn, n, s, b in check_cases]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
