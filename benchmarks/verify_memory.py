"""Peak memory of the export verification: the max corner (the old plan) vs max batch and max H/W apart (today's).

smp Unet-resnet18 (random init, no download), segdeploy's default profile for a file without an example input
(min 1x3x256x256, opt 1x3x512x512, max 8x3x1024x1024). The ONNX is exported once; then each plan runs in its own
fresh process (so one plan's allocator state cannot hide the other's peak), comparing PyTorch and ONNX Runtime at
every shape of the plan with segdeploy's own comparison, and reports the process's peak RSS (``ru_maxrss``) and its
seconds. "corner" is min, opt, max (8x3x1024x1024) and the irregular shape (what `segdeploy export` verified
before issue 17); "separate" is :func:`segdeploy.export.verify.verification_plan`. Prints one JSON document.

    python benchmarks/verify_memory.py [--max-batch 8] [--out benchmarks/results/verify_memory.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


def _profile(max_batch: int):
    from segdeploy.spec import ShapeProfile

    return ShapeProfile((1, 3, 256, 256), (1, 3, 512, 512), (max_batch, 3, 1024, 1024), 32)


def _model():
    import segmentation_models_pytorch as smp
    import torch

    torch.manual_seed(0)
    return smp.Unet("resnet18", encoder_weights=None, classes=4).eval()


def child(plan: str, onnx_path: str, max_batch: int) -> dict:
    """One plan in this process: PyTorch vs ONNX Runtime at each shape -> peak RSS, seconds, shapes, passed."""
    import onnxruntime as ort
    import torch

    from segdeploy.export.verify import _check_shape, _input, verification_plan

    torch.set_num_threads(2)
    profile = _profile(max_batch)
    shapes = verification_plan(profile) if plan == "separate" else profile.verification_shapes()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.enable_cpu_mem_arena = False  # as verify_onnx does: the comparison is about the plan, not the arena
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    module = _model()
    t0 = time.perf_counter()
    checks = [_check_shape(module, sess, label, shape, _input(shape, i), 1e-4, 1e-5)
              for i, (label, shape) in enumerate(shapes)]
    return {"plan": plan, "shapes": {c.label: "x".join(map(str, c.shape)) for c in checks},
            "passed": all(c.passed for c in checks), "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--child", nargs=2, metavar=("PLAN", "ONNX"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.max_batch)))
        return 0
    import torch

    with tempfile.TemporaryDirectory(prefix="segdeploy-verify-mem-") as tmp:
        path = Path(tmp) / "unet.onnx"
        torch.onnx.export(_model(), (torch.randn(1, 3, 512, 512),), str(path), dynamo=False, opset_version=18,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                                        "logits": {0: "batch", 2: "height", 3: "width"}})
        runs = []
        for plan in ("corner", "separate"):
            out = subprocess.run([sys.executable, __file__, "--max-batch", str(args.max_batch), "--child", plan,
                                  str(path)], capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    doc = {"benchmark": "verify_memory", "model": "smp.Unet(resnet18, random init, 4 classes)",
           "profile": "min 1x3x256x256, opt 1x3x512x512, max %dx3x1024x1024" % args.max_batch, "runs": runs}
    text = json.dumps(doc, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
